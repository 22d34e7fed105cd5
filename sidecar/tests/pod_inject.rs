//! `berth inject` in the pod harness: the job-queue API as a Deployment
//! without berth (the chart rendered with `berth.enabled=false`, so only
//! the app's own manifest), injected by `berth inject` with a PostgreSQL
//! check, runs under the mini-kubelet (tests/pods/kubelet.py): berth's
//! startup gate holds the API until the database answers, and deleting the
//! pod drains through the injected preStop hook (lifecycle port + token)
//! before SIGTERM, nothing killed. Needs podman and the images
//! (`scripts/build-images.sh`); skipped otherwise, like the other pod tests.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use berth_tests::pod::{
    pod_environment_ready, random_prefix, render_chart, repo_path, BridgePostgres, Kubelet,
    KubeletOptions,
};
use serde_json::Value;

const API: &str = "jq-api";
const UP_TIMEOUT: Duration = Duration::from_secs(300);

fn inject(input: &str, args: &[&str]) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("inject")
        .args(args)
        .env_remove("BERTH_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("berth inject");
    let mut stdin = child.stdin.take().expect("stdin");
    let text = input.to_string();
    let w = std::thread::spawn(move || {
        let _ = stdin.write_all(text.as_bytes());
    });
    let out = child.wait_with_output().expect("berth inject");
    let _ = w.join();
    assert!(
        out.status.success(),
        "berth inject: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

fn container<'a>(pod: &'a Value, name: &str) -> &'a Value {
    pod["containers"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no container {name} in {pod}"))
}

#[test]
fn serial_pod_injected_plain_deployment_drains_through_berth() {
    if !pod_environment_ready() {
        return;
    }
    for kube in ["1.35", "1.28"] {
        let db = BridgePostgres::start();
        db.pg.create_database("jobqueue");
        let args: Vec<String> = [
            "--set".to_string(),
            "workloads.postgresql.enabled=false".into(),
            "--set".into(),
            "secrets.postgresql.enabled=false".into(),
            "--set".into(),
            "berth.enabled=false".into(),
            "--set".into(),
            "tests.enabled=false".into(),
            "--set-string".into(),
            format!(
                "secrets.jobqueue.stringData.DATABASE_URL={}",
                db.url_via("db-host", "jobqueue")
            ),
        ]
        .to_vec();
        let plain = render_chart(
            "jq",
            &[repo_path("examples/jobqueue/values.yaml")],
            &args,
            &format!("{kube}.0"),
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("berth.yaml");
        std::fs::write(
            &config,
            "checks:\n  - {name: db, type: postgres, url: \"${DATABASE_URL}\"}\n  - {name: api, type: tcp, address: \"127.0.0.1:8000\"}\ndrain: {delay: 2s, timeout: 20s}\n",
        )
        .expect("write");
        let injected = inject(
            &plain,
            &[
                "--kube-version",
                kube,
                "--config",
                config.to_str().expect("path"),
                "-",
            ],
        );
        assert!(
            injected.contains("berth.dev/injected"),
            "berth inject added berth to the plain Deployment"
        );
        let opts = KubeletOptions {
            scale: vec![(API.into(), 1)],
            add_hosts: vec![("db-host".into(), db.gateway.clone())],
            skip: vec!["jq-worker".into(), "jq-reaper".into(), "jq-migrate".into()],
            ..Default::default()
        };
        let k = Kubelet::start(&random_prefix(), &injected, &opts);
        k.wait_all_ready(&[API], UP_TIMEOUT);
        let pod = k.pods_of(API)[0].clone();
        let name = pod["name"].as_str().expect("pod name").to_string();
        let pod_ip = pod["ip"].as_str().expect("pod ip").to_string();
        // Traffic through the drain, as an endpoint controller / load
        // balancer following readiness sees it: a request may go to the pod
        // while it is ready and for up to drain.delay (2 s) after readiness
        // turned 503 (the time an LB takes to notice). None of those may fail.
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let traffic = {
            let stop = stop.clone();
            let ip = pod_ip.clone();
            std::thread::spawn(move || {
                let (mut sent, mut failed) = (0u32, Vec::new());
                let mut unready_since: Option<std::time::Instant> = None;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let ready = berth_tests::pod::http(
                        "GET",
                        &format!("http://{ip}:8642/api/v1/health/ready"),
                        &[],
                        None,
                    )
                    .map(|(c, _)| c == 200)
                    .unwrap_or(false);
                    if !ready && unready_since.is_none() {
                        unready_since = Some(std::time::Instant::now());
                    }
                    let routable = unready_since
                        .is_none_or(|t| t.elapsed() < std::time::Duration::from_millis(1900));
                    if !routable {
                        break;
                    }
                    sent += 1;
                    match berth_tests::pod::http(
                        "GET",
                        &format!("http://{ip}:8000/api/v1/queues"),
                        &[],
                        None,
                    ) {
                        Ok((c, _)) if c < 500 => {}
                        other => failed.push(format!("{other:?}")),
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                (sent, failed, unready_since.is_some())
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(500));
        k.delete_pod(&name);
        let gone = k.wait_for("API pod terminated", UP_TIMEOUT, |s| {
            s["pods"]
                .as_array()?
                .iter()
                .find(|p| p["name"] == name.as_str() && p["phase"] == "Terminated")
                .cloned()
        });
        let api = container(&gone, "api");
        let prestop: Value = serde_json::from_str(
            api["termination"]["prestop"]["body"]
                .as_str()
                .unwrap_or("{}"),
        )
        .unwrap_or(Value::Null);
        assert_eq!(
            prestop["status"], "drained",
            "{kube}: the injected preStop hook drained through berth: {gone}"
        );
        assert_eq!(api["termination"]["killed"], false, "{kube}: {gone}");
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (sent, failed, saw_unready) = traffic.join().expect("traffic thread");
        assert!(saw_unready, "{kube}: readiness turned 503 during the drain");
        assert!(sent > 20, "{kube}: only {sent} requests sent");
        assert!(
            failed.is_empty(),
            "{kube}: {} of {sent} requests failed while the pod was routable: {failed:?}",
            failed.len()
        );
        eprintln!("{kube}: {sent} requests through the drain, 0 failed");
        assert_eq!(
            container(&gone, "berth")["termination"]["killed"],
            false,
            "{kube}: berth exits by itself: {gone}"
        );
        k.shutdown();
    }
}
