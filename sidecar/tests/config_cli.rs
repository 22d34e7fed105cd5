//! Configuration rules, through the real binary: every bad config exits 64
//! (EX_USAGE) with exactly one line on stderr that names the bad field.
#![allow(clippy::unwrap_used)]

mod harness;

use harness::{check_config, BERTH};

/// Asserts exit 64, one stderr line, naming `field`, and returns the line.
fn rejected(yaml: &str, env: &[(&str, &str)], field: &str) -> String {
    let out = check_config(yaml, env);
    assert_eq!(
        out.code,
        Some(64),
        "expected exit 64 for:\n{yaml}\nstdout: {}\nstderr: {}",
        out.stdout,
        out.stderr
    );
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one line: {:?}", out.stderr);
    assert!(
        lines[0].contains(field),
        "the line must name {field}: {}",
        lines[0]
    );
    lines[0].to_string()
}

const TCP: &str = "{name: dep, type: tcp, address: \"127.0.0.1:9\"}";

#[test]
fn valid_config_passes() {
    let out = check_config(
        &format!(
            "mode: native\nchecks:\n  - {TCP}\n  - {{name: hb, type: file, path: /tmp/x, maxAge: 30s, critical: false}}\n\
             startup:\n  waitFor: [dep]\ndrain:\n  delay: 1s\n  timeout: 10s\n  \
             notify: {{type: signal, process: app, signal: SIGTERM}}\n  waitUntilDown: [dep]\n"
        ),
        &[],
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stdout.contains("ok (2 checks"), "{}", out.stdout);
}

#[test]
fn unknown_key_is_named() {
    let line = rejected(
        "checks:\n  - {name: dep, type: tcp, address: \"h:1\", intervall: 5s}\n",
        &[],
        "checks[0].intervall",
    );
    assert!(line.contains("unknown key"), "{line}");
    rejected("listen: 0.0.0.0:1\nprobes: {}\n", &[], "probes");
}

#[test]
fn bad_duration_is_named() {
    let line = rejected(
        "checks:\n  - {name: dep, type: tcp, address: \"h:1\", interval: 5 seconds}\n",
        &[],
        "checks[0].interval",
    );
    assert!(line.contains("duration"), "{line}");
    rejected("drain:\n  delay: 5\n", &[], "drain.delay");
}

#[test]
fn timeout_must_be_below_interval() {
    let line = rejected(
        "checks:\n  - {name: dep, type: tcp, address: \"h:1\", interval: 2s, timeout: 2s}\n",
        &[],
        "checks[0].timeout",
    );
    assert!(line.contains("below interval"), "{line}");
}

#[test]
fn duplicate_check_name_is_named() {
    let line = rejected(
        &format!("checks:\n  - {TCP}\n  - {TCP}\n"),
        &[],
        "checks[1].name",
    );
    assert!(line.contains("duplicate") && line.contains("dep"), "{line}");
}

#[test]
fn unknown_check_type_is_named() {
    let line = rejected(
        "checks:\n  - {name: dep, type: mongodb, url: \"x\"}\n",
        &[],
        "checks[0].type",
    );
    assert!(line.contains("mongodb"), "{line}");
}

#[test]
fn missing_env_var_is_an_error_not_an_empty_string() {
    let yaml = "checks:\n  - {name: db, type: postgres, url: \"${BERTH_TEST_DB_URL_UNSET}\"}\n";
    let line = rejected(yaml, &[], "checks[0].url");
    assert!(line.contains("BERTH_TEST_DB_URL_UNSET"), "{line}");
    // Set, it expands (and the URL then validates).
    let out = check_config(
        yaml.replace("_UNSET", "").as_str(),
        &[("BERTH_TEST_DB_URL", "postgres://u:pw@127.0.0.1:5432/db")],
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
}

#[test]
fn file_reference_expands_and_a_missing_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("token");
    std::fs::write(&secret, "s3cret-token\n").unwrap();
    let ok = check_config(&format!("token: \"${{file:{}}}\"\n", secret.display()), &[]);
    assert_eq!(ok.code, Some(0), "{}", ok.stderr);
    assert!(!ok.stdout.contains("s3cret"), "{}", ok.stdout);
    let line = rejected(
        &format!("token: \"${{file:{}/nope}}\"\n", dir.path().display()),
        &[],
        "token",
    );
    assert!(line.contains("cannot read"), "{line}");
}

#[test]
fn unparseable_url_is_named_without_echoing_the_password() {
    let line = rejected(
        "checks:\n  - {name: db, type: postgres, url: \"postgres://app:hunter2secret@db:notaport/app\"}\n",
        &[],
        "checks[0].url",
    );
    assert!(!line.contains("hunter2secret"), "{line}");
    rejected(
        "checks:\n  - {name: c, type: redis, url: \"mongo://x\"}\n",
        &[],
        "checks[0].url",
    );
    rejected(
        "checks:\n  - {name: h, type: http, url: \"not a url\"}\n",
        &[],
        "checks[0].url",
    );
    rejected(
        "drain:\n  notify: {type: http, url: \"ftp://x/y\"}\n",
        &[],
        "drain.notify.url",
    );
}

#[test]
fn wait_for_naming_an_unknown_check_is_named() {
    let line = rejected(
        &format!("checks:\n  - {TCP}\nstartup:\n  waitFor: [db]\n"),
        &[],
        "startup.waitFor",
    );
    assert!(line.contains("\"db\""), "{line}");
    rejected(
        &format!("checks:\n  - {TCP}\ndrain:\n  waitUntilDown: [app]\n"),
        &[],
        "drain.waitUntilDown",
    );
}

#[test]
fn missing_config_file_and_bad_flags_exit_64() {
    let out = std::process::Command::new(BERTH)
        .args(["serve", "--config", "/nonexistent/berth.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("config"), "{err}");

    let out = std::process::Command::new(BERTH)
        .args(["wait", "--timeout", "soon"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--timeout"));

    let out = std::process::Command::new(BERTH)
        .arg("--no-such-flag")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
}

#[test]
fn version_prints_the_crate_version() {
    let out = std::process::Command::new(BERTH)
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("berth {}", env!("CARGO_PKG_VERSION"))
    );
}
