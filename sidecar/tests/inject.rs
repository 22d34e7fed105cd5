//! `berth inject`: parity with charts/berth, the command line (documents,
//! `kind: List`, errors, idempotence, `--remove`), and golden tests on the
//! seed apps' own manifests (tests/inject/).

use std::io::Write;

use std::process::{Command, Output, Stdio};

use berth_tests::chart::{pod_metadata, pod_spec, Helm, Manifests, Render};
use serde_json::Value;

const TOKEN: &str = "parity-token-0123456789abcdef";

fn berth() -> Command {
    Command::new(env!("CARGO_BIN_EXE_berth"))
}

/// Runs `berth <args>` with `input` on stdin.
fn run(args: &[&str], input: &str) -> Output {
    let mut child = berth()
        .args(args)
        .env_remove("BERTH_CONFIG")
        .env_remove("BERTH_INJECT_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn berth");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_string();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(input.as_bytes());
    });
    let out = child.wait_with_output().expect("berth runs");
    let _ = writer.join();
    out
}

fn inject_ok(args: &[&str], input: &str) -> String {
    let out = run(args, input);
    assert!(
        out.status.success(),
        "berth {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

fn docs(text: &str) -> Vec<Value> {
    Manifests::parse(text).docs
}

/// Pod template annotations that only one side writes, and why:
/// - `checksum/config` (chart): a hash of the rendered berth.yaml so that
///   `helm upgrade` rolls the pods when the config changes; inject's
///   ConfigMap is applied with the workload and has no release to diff.
/// - `berth.dev/injected` (inject): what inject replaced, for `--remove`
///   and idempotence; the chart renders from values and needs no record.
const ONE_SIDED_ANNOTATIONS: &[&str] = &["checksum/config", "berth.dev/injected"];

fn without_one_sided(meta: &Value) -> Value {
    let mut m = meta.clone();
    if let Some(a) = m.get_mut("annotations").and_then(Value::as_object_mut) {
        for k in ONE_SIDED_ANNOTATIONS {
            a.remove(*k);
        }
        if a.is_empty() {
            m.as_object_mut().map(|o| o.remove("annotations"));
        }
    }
    m
}

fn parity_values(kind: &str) -> String {
    format!(
        r#"
workloads:
  web:
    kind: {kind}
    image: {{registry: docker.io, repository: example/web, tag: "1.0"}}
    ports: {{http: {{port: 8080}}, metrics: {{port: 9090}}}}
    env:
      DATABASE_URL: {{valueFrom: {{secretKeyRef: {{name: db, key: url}}}}}}
      LOG_LEVEL: debug
    cronJob: {{schedule: "17 3 * * *"}}
    berth:
      env:
        DATABASE_URL: {{valueFrom: {{secretKeyRef: {{name: db, key: url}}}}}}
      checks:
        app: {{type: tcp, address: "127.0.0.1:8080"}}
        db: {{type: postgres, url: "${{DATABASE_URL}}"}}
        heartbeat: {{type: process, command: web, critical: false}}
      drain: {{delay: 3s, timeout: 20s}}
      lifecycle: {{token: {TOKEN}}}
"#
    )
}

/// Renders the chart with and without berth, injects berth into the
/// plain render with the chart's own berth.yaml, and compares.
fn parity(kind: &str, kube: &str) {
    let values = parity_values(kind);
    let chart = Render::berth(Helm::V4)
        .values_yaml(&values)
        .kube(&format!("{kube}.0"))
        .ok();
    let plain = Render::berth(Helm::V4)
        .values_yaml(&values)
        .set("workloads.web.berth.enabled=false")
        .kube(&format!("{kube}.0"))
        .ok();
    let want = chart.get(kind, "rel-web");
    let before = plain.get(kind, "rel-web");
    assert!(
        pod_spec(before).expect("pod spec")["initContainers"].is_null(),
        "the berth-disabled render is plain"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("berth.yaml");
    let cm = chart.get("ConfigMap", "rel-web-berth");
    std::fs::write(
        &config,
        cm["data"]["berth.yaml"].as_str().expect("berth.yaml"),
    )
    .expect("write");
    let input = serde_yaml_ng::to_string(before).expect("YAML");
    let out = inject_ok(
        &[
            "inject",
            "--config",
            config.to_str().expect("path"),
            "--kube-version",
            kube,
            "--lifecycle-token",
            TOKEN,
            "-",
        ],
        &input,
    );
    let out = docs(&out);
    let got = out
        .iter()
        .find(|d| d["kind"] == kind)
        .expect("the workload is in the output");
    assert_eq!(
        serde_json::to_string_pretty(pod_spec(got).expect("spec")).expect("json"),
        serde_json::to_string_pretty(pod_spec(want).expect("spec")).expect("json"),
        "{kind} at {kube}: berth inject's pod spec differs from the chart's"
    );
    assert_eq!(
        without_one_sided(pod_metadata(got)),
        without_one_sided(pod_metadata(want)),
        "{kind} at {kube}: pod template metadata"
    );
    // Not vacuous: berth is where the chart's rules put it.
    let spec = pod_spec(got).expect("spec");
    let names = |f: &str| -> Vec<String> {
        spec[f]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str().map(String::from))
            .collect()
    };
    let batch = kind == "Job" || kind == "CronJob";
    match (kube, batch) {
        ("1.35", _) => assert_eq!(names("initContainers")[0], "berth", "{kind} {kube}"),
        ("1.28", false) => assert!(
            names("containers").contains(&"berth".to_string()),
            "{kind} {kube}"
        ),
        _ => assert_eq!(names("initContainers"), ["berth-wait"], "{kind} {kube}"),
    }
    if !(batch && kube == "1.28") {
        assert_eq!(
            spec["shareProcessNamespace"], true,
            "a process check needs the PID namespace"
        );
    }
    if !batch {
        assert_eq!(spec["terminationGracePeriodSeconds"], 28);
    }
    // The ConfigMap carries the same berth.yaml (inject keeps the text).
    let cm_out = out
        .iter()
        .find(|d| d["kind"] == "ConfigMap")
        .expect("a ConfigMap");
    assert_eq!(cm_out["metadata"]["name"], "rel-web-berth");
    assert_eq!(cm_out["data"]["berth.yaml"], cm["data"]["berth.yaml"]);
    // Everything outside the pod template is the input's.
    let strip = |v: &Value| {
        let mut v = v.clone();
        let ptr = if kind == "CronJob" {
            "/spec/jobTemplate/spec"
        } else {
            "/spec"
        };
        if let Some(s) = v.pointer_mut(ptr).and_then(Value::as_object_mut) {
            s.remove("template");
        }
        v
    };
    assert_eq!(
        strip(got),
        strip(before),
        "{kind}: only the pod template changes"
    );
}

#[test]
fn parity_deployment_regular_1_28() {
    parity("Deployment", "1.28");
}

#[test]
fn parity_deployment_native_1_35() {
    parity("Deployment", "1.35");
}

#[test]
fn parity_statefulset_both() {
    parity("StatefulSet", "1.28");
    parity("StatefulSet", "1.35");
}

#[test]
fn parity_job_and_cronjob_both() {
    for kind in ["Job", "CronJob"] {
        parity(kind, "1.28");
        parity(kind, "1.35");
    }
}
