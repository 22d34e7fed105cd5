//! berth's `/metrics` passes `promtool check metrics`, scraped from the real
//! binary running against a private PostgreSQL with every series populated
//! (a check up, a check down, a file check failing).

use berth_tests::scrape::{eventually, get, promtool_check, Proc};
use berth_tests::{free_port, wait_for_port, Postgres};
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn berth_metrics_pass_promtool_check_metrics() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let config = dir.path().join("berth.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:{port}\nchecks:\n  - {{name: db, type: postgres, url: \"{}\"}}\n  - {{name: down, type: tcp, address: \"127.0.0.1:1\", critical: false}}\n  - {{name: beat, type: file, path: {}, maxAge: 30s, critical: false}}\n",
            pg.url("postgres"),
            dir.path().join("missing-heartbeat").display()
        ),
    )
    .expect("write config");
    let log = std::fs::File::create(dir.path().join("berth.log")).expect("log");
    let _berth = Proc(
        Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(["serve", "--config"])
            .arg(&config)
            .stdout(Stdio::from(log))
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn berth"),
    );
    assert!(
        wait_for_port(port, Duration::from_secs(20)),
        "berth listens"
    );
    assert!(
        eventually(Duration::from_secs(20), || get(
            port,
            "/api/v1/health/ready"
        )
        .0 == 200),
        "berth ready (PostgreSQL check up)"
    );
    // Every check has run at least once (the down ones have failed).
    assert!(eventually(Duration::from_secs(20), || {
        let m = get(port, "/metrics").1;
        m.contains(r#"berth_check_failures_total{check="down"} "#)
            && !m.contains(r#"berth_check_failures_total{check="down"} 0"#)
    }));
    let (status, text) = get(port, "/metrics");
    assert_eq!(status, 200);
    assert!(
        text.contains(r#"berth_check_up{check="db",type="postgres",critical="true"} 1"#),
        "{text}"
    );
    assert!(text.contains("berth_ready 1"));
    if let Err(report) = promtool_check(&text) {
        panic!("promtool check metrics rejects berth's /metrics:\n{report}\n---\n{text}");
    }
}
