//! One source of truth for berth's configuration rules: every rule that
//! `berth check-config` enforces, the chart enforces at `helm template`
//! time too, so a render that passes never makes berth exit 64 and
//! crash-loop. Each case is the same mistake written twice (berth.yaml and
//! the chart's values); both must refuse it, the chart naming the value.
//! The chart's check types and keys are generated from `berth schema`
//! (charts/generate-check-schema.sh); that they are up to date is checked
//! here too. The number of cases is the "N rules" of the chart README.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use berth_tests::chart::{berth_config, Helm, Render};

const BERTH: &str = env!("CARGO_BIN_EXE_berth");

/// The rules: (what, berth.yaml, chart values for workload `web`'s berth, text the chart's error names).
fn rules() -> Vec<(String, String, String, String)> {
    let mut out: Vec<(String, String, String, String)> = Vec::new();
    let mut rule = |what: &str, yaml: &str, values: &str, names: &str| {
        out.push((what.into(), yaml.into(), values.into(), names.into()));
    };
    let schema: serde_json::Value =
        serde_json::from_slice(&Command::new(BERTH).arg("schema").output().unwrap().stdout)
            .unwrap();
    let types = schema["types"].as_object().unwrap();
    for (ty, spec) in types {
        let required = spec["required"].as_str().unwrap();
        rule(
            &format!("a {ty} check without {required}"),
            &format!("checks:\n  - {{name: c, type: {ty}}}\n"),
            &format!("checks:\n  c: {{type: {ty}}}\n"),
            "checks.c",
        );
        rule(
            &format!("a {ty} check with a key it does not take"),
            &format!("checks:\n  - {{name: c, type: {ty}, {required}: x, bogusKey: 1}}\n"),
            &format!("checks:\n  c: {{type: {ty}, {required}: x, bogusKey: 1}}\n"),
            "bogusKey",
        );
    }
    rule(
        "an unknown check type",
        "checks:\n  - {name: c, type: mongodb, url: x}\n",
        "checks:\n  c: {type: mongodb, url: x}\n",
        "type",
    );
    rule(
        "a timeout not below the interval",
        "checks:\n  - {name: c, type: tcp, address: 'h:1', interval: 1s, timeout: 1s}\n",
        "checks:\n  c: {type: tcp, address: 'h:1', interval: 1s, timeout: 1s}\n",
        "checks.c",
    );
    rule(
        "a duration without a unit",
        "checks:\n  - {name: c, type: tcp, address: 'h:1', interval: 5}\n",
        "checks:\n  c: {type: tcp, address: 'h:1', interval: 5}\n",
        "interval",
    );
    rule(
        "a check name with a space",
        "checks:\n  - {name: 'a b', type: tcp, address: 'h:1'}\n",
        "checks:\n  'a b': {type: tcp, address: 'h:1'}\n",
        "a b",
    );
    rule(
        "a failureThreshold of 0",
        "checks:\n  - {name: c, type: tcp, address: 'h:1', failureThreshold: 0}\n",
        "checks:\n  c: {type: tcp, address: 'h:1', failureThreshold: 0}\n",
        "failureThreshold",
    );
    rule(
        "drain.timeout not above drain.delay",
        "drain: {delay: 10s, timeout: 10s}\n",
        "drain: {delay: 10s, timeout: 10s}\n",
        "drain",
    );
    rule(
        "an unknown notify type",
        "drain: {notify: {type: carrier-pigeon}}\n",
        "drain: {notify: {type: carrier-pigeon}}\n",
        "notify",
    );
    rule(
        "a signal notify without a process",
        "drain: {notify: {type: signal}}\n",
        "drain: {notify: {type: signal}}\n",
        "process",
    );
    rule(
        "an http notify without a url",
        "drain: {notify: {type: http}}\n",
        "drain: {notify: {type: http}}\n",
        "url",
    );
    rule(
        "startup.waitFor naming no check",
        "checks:\n  - {name: c, type: tcp, address: 'h:1'}\nstartup: {waitFor: [nope]}\n",
        "checks:\n  c: {type: tcp, address: 'h:1'}\nstartup: {waitFor: [nope]}\n",
        "waitFor",
    );
    rule(
        "drain.waitUntilDown naming no check",
        "checks:\n  - {name: c, type: tcp, address: 'h:1'}\ndrain: {waitUntilDown: [nope]}\n",
        "checks:\n  c: {type: tcp, address: 'h:1'}\ndrain: {waitUntilDown: [nope]}\n",
        "waitUntilDown",
    );
    rule(
        "an https:// URL in an http check",
        "checks:\n  - {name: c, type: http, url: 'https://h/'}\n",
        "checks:\n  c: {type: http, url: 'https://h/'}\n",
        "checks.c",
    );
    rule(
        "a non-PostgreSQL URL in a postgres check",
        "checks:\n  - {name: c, type: postgres, url: 'mysql://u@h/d'}\n",
        "checks:\n  c: {type: postgres, url: 'mysql://u@h/d'}\n",
        "checks.c",
    );
    rule(
        "a lifecycle token shorter than 16 characters",
        "lifecycle: {token: short}\n",
        "lifecycle: {token: short}\n",
        "lifecycle.token",
    );
    rule(
        "the lifecycle port equal to the health port",
        "lifecycle: {listen: '0.0.0.0:8642', token: 0123456789abcdef0123}\n",
        "lifecycle: {port: 8642}\n",
        "lifecycle.port",
    );
    out
}

fn indent(s: &str, n: usize) -> String {
    s.lines()
        .map(|l| format!("{}{l}\n", " ".repeat(n)))
        .collect()
}

#[test]
fn every_rule_of_berth_holds_at_helm_template_time() {
    let dir = tempfile::tempdir().unwrap();
    let rules = rules();
    for (i, (what, yaml, values, names)) in rules.iter().enumerate() {
        let path = dir.path().join(format!("r{i}.yaml"));
        std::fs::write(&path, yaml).unwrap();
        let out = Command::new(BERTH)
            .arg("check-config")
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(64),
            "berth accepted {what}:\n{yaml}{}",
            String::from_utf8_lossy(&out.stdout)
        );
        for helm in [Helm::V3, Helm::V4] {
            let err = Render::berth(helm)
                .values("charts/berth/ci/web-values.yaml")
                .values_yaml(&format!(
                    "workloads:\n  web:\n    berth:\n{}",
                    indent(values, 6)
                ))
                .err();
            assert!(
                err.contains(names),
                "the chart must refuse {what} naming {names:?} ({helm:?}):\n{err}"
            );
        }
    }
    eprintln!(
        "{} rules, enforced by both berth and the chart",
        rules.len()
    );
}

/// The other direction: every check type berth knows renders through the
/// chart, and the rendered berth.yaml passes `berth check-config`.
#[test]
fn every_check_type_renders_and_the_render_passes_check_config() {
    let values = "workloads:\n  web:\n    berth:\n      env:\n        DB_PASSWORD: {valueFrom: {secretKeyRef: {name: db, key: password}}}\n      checks:\n        app: null\n        app-port: null\n        pg: {type: postgres, url: 'postgresql+asyncpg://app:${DB_PASSWORD}@db:5432/app'}\n        cache: {type: redis, url: 'redis://cache:6379/0', critical: false}\n        sql: {type: mysql, url: 'mysql://app@mysql:3306/app'}\n        mq: {type: amqp, url: 'amqp://rabbitmq:5672/%2f', critical: false}\n        bus: {type: nats, url: 'nats://nats:4222'}\n        name: {type: dns, host: db.internal, expect: [10.0.0.5]}\n        api: {type: https, url: 'https://api:8443/healthz', insecureSkipVerify: true}\n        rpc: {type: grpc, address: 'rpc:50051', service: users.v1}\n        port: {type: tcp, address: '127.0.0.1:8080'}\n        web: {type: http, url: 'http://127.0.0.1:8080/'}\n        beat: {type: file, path: /tmp/beat, maxAge: 30s}\n        worker: {type: process, command: nginx}\n";
    let dir = tempfile::tempdir().unwrap();
    for helm in [Helm::V3, Helm::V4] {
        let m = Render::berth(helm)
            .values("charts/berth/ci/web-values.yaml")
            .values_yaml(values)
            .ok();
        let cfg = berth_config(m.get("ConfigMap", "rel-web-berth"));
        let text = serde_json::to_string(&cfg).unwrap();
        let path = dir.path().join("berth.yaml");
        std::fs::write(&path, &text).unwrap();
        let out = Command::new(BERTH)
            .arg("check-config")
            .arg(&path)
            .env("DB_PASSWORD", "stand-in")
            .env("BERTH_LIFECYCLE_TOKEN", "stand-in-lifecycle-token-0123")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}\n{text}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("(12 checks"),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

#[test]
fn the_charts_check_schema_is_generated_from_berth() {
    let root = berth_tests::workspace_root();
    let out = Command::new(root.join("charts/generate-check-schema.sh"))
        .arg("--check")
        .env("BERTH_BIN", BERTH)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
