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
      groups: {{deps: [db]}}
      grpcPort: 8644
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
    // A workload the chart rendered already runs berth: inject leaves it alone.
    let again = docs(&inject_ok(
        &["inject", "--kube-version", kube, "-"],
        &serde_yaml_ng::to_string(want).expect("YAML"),
    ));
    assert_eq!(
        again,
        vec![want.clone()],
        "{kind} {kube}: the chart's render passes through"
    );
    // Not vacuous: berth is where the chart's rules put it.
    let spec = pod_spec(got).expect("spec");
    // Where berth runs as a sidecar, it declares its gRPC port.
    for f in ["initContainers", "containers"] {
        for c in spec[f].as_array().into_iter().flatten() {
            if c["name"] == "berth" {
                let grpc = c["ports"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|p| p["name"] == "berth-grpc" && p["containerPort"] == 8644);
                assert!(grpc, "{kind} {kube}: berth declares its gRPC port");
            }
        }
    }
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

/// The seed apps' own manifests (tests/inject/) and the berth.yaml each
/// is injected with (None: the default tcp check on the first port).
const SEEDS: &[(&str, Option<&str>)] = &[
    ("seed-001-projections.yaml", None),
    ("seed-003-scheduled-db.yaml", None),
    ("seed-004-upload-gc.yaml", Some("seed-004-berth.yaml")),
];

fn seed_path(name: &str) -> std::path::PathBuf {
    berth_tests::workspace_root()
        .join("tests/inject")
        .join(name)
}

fn inject_seed(name: &str, config: Option<&str>, kube: &str, extra: &[&str]) -> String {
    let input = std::fs::read_to_string(seed_path(name)).expect("seed manifest");
    let cfg = config.map(|c| seed_path(c).display().to_string());
    let mut args = vec!["inject", "--kube-version", kube];
    if let Some(c) = &cfg {
        args.extend(["--config", c.as_str()]);
    }
    args.extend(extra);
    inject_ok(&args, &input)
}

/// `kubernetes-validate --strict`; a kind without a schema is allowed only
/// for the Prometheus Operator's ServiceMonitor (a CRD seed 001 uses).
fn validate(file: &std::path::Path, kube: &str) {
    let out = Command::new(berth_tests::tools::tool("kubernetes-validate"))
        .args(["--strict", "-k", &format!("{kube}.0")])
        .arg(file)
        .output()
        .expect("kubernetes-validate (tools/setup.sh installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for line in text.lines().filter(|l| l.contains("Couldn't find schema")) {
        assert!(
            line.contains("ServiceMonitor"),
            "{}: {line}",
            file.display()
        );
    }
    assert!(
        out.status.success() || text.lines().all(|l| !l.contains("ERROR")),
        "{} at {kube} is not valid:\n{text}",
        file.display()
    );
}

#[test]
fn seeds_injected_are_valid_kubernetes_1_28_and_1_35() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, config) in SEEDS {
        for kube in ["1.28", "1.35"] {
            let out = inject_seed(name, *config, kube, &[]);
            let file = dir.path().join(format!("{kube}-{name}"));
            std::fs::write(&file, &out).expect("write");
            validate(&file, kube);
            let docs = docs(&out);
            let workload = docs
                .iter()
                .find(|d| pod_spec(d).is_some())
                .expect("a workload");
            let spec = pod_spec(workload).expect("spec");
            let all: Vec<&str> = ["initContainers", "containers"]
                .iter()
                .flat_map(|f| spec[*f].as_array().into_iter().flatten())
                .filter_map(|c| c["name"].as_str())
                .collect();
            assert!(
                all.contains(&"berth") || all.contains(&"berth-wait"),
                "{name} {kube}: berth added ({all:?})"
            );
        }
    }
}

#[test]
fn seeds_inject_is_idempotent_and_remove_restores_the_input() {
    for (name, config) in SEEDS {
        let input = std::fs::read_to_string(seed_path(name)).expect("seed");
        for kube in ["1.28", "1.35"] {
            let once = inject_seed(name, *config, kube, &[]);
            // No token given: the second run finds the first run's.
            let cfg = config.map(|c| seed_path(c).display().to_string());
            let mut args = vec!["inject", "--kube-version", kube];
            if let Some(c) = &cfg {
                args.extend(["--config", c.as_str()]);
            }
            let twice = inject_ok(&args, &once);
            assert_eq!(once, twice, "{name} {kube}: injecting twice equals once");
            let removed = inject_ok(&["inject", "--remove"], &once);
            assert_eq!(
                docs(&removed),
                docs(&input),
                "{name} {kube}: --remove gives back the input"
            );
            // Moving a manifest between cluster versions: 1.28 over 1.35.
            let other = if kube == "1.28" { "1.35" } else { "1.28" };
            let moved = inject_ok(
                &[
                    "inject",
                    "--kube-version",
                    other,
                    "--lifecycle-token",
                    TOKEN,
                ],
                &once,
            );
            let direct = inject_seed(name, *config, other, &["--lifecycle-token", TOKEN]);
            if config.is_none() {
                assert_eq!(
                    moved, direct,
                    "{name}: re-injecting for {other} equals injecting for {other}"
                );
            }
        }
    }
}

/// checkov findings per (file, resource): check ids that failed.
fn checkov(dir: &std::path::Path) -> std::collections::BTreeSet<(String, String, String)> {
    let skips_text = std::fs::read_to_string(
        berth_tests::workspace_root().join("tests/charts/checkov-skips.yaml"),
    )
    .expect("checkov-skips.yaml");
    let skips: Vec<String> = skips_text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- id:").map(|s| s.trim().to_string()))
        .collect();
    let out = Command::new(berth_tests::tools::tool("checkov"))
        .arg("-d")
        .arg(dir)
        .args([
            "--framework",
            "kubernetes",
            "--skip-download",
            "--compact",
            "--quiet",
            "-o",
            "json",
            "--skip-check",
            &skips.join(","),
        ])
        .output()
        .expect("checkov (tools/setup.sh installs it)");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "checkov JSON: {e}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let reports = match v {
        Value::Array(a) => a,
        other => vec![other],
    };
    let mut failed = std::collections::BTreeSet::new();
    for r in reports {
        for f in r["results"]["failed_checks"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let file = f["file_path"]
                .as_str()
                .unwrap_or("")
                .rsplit('/')
                .next()
                .unwrap_or("")
                .to_string();
            failed.insert((
                file,
                f["resource"].as_str().unwrap_or("").to_string(),
                f["check_id"].as_str().unwrap_or("").to_string(),
            ));
        }
    }
    failed
}

#[test]
fn seeds_injected_add_no_checkov_finding() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (before, after) = (dir.path().join("before"), dir.path().join("after"));
    std::fs::create_dir_all(&before).expect("mkdir");
    std::fs::create_dir_all(&after).expect("mkdir");
    for (name, config) in SEEDS {
        for kube in ["1.28", "1.35"] {
            let file = format!("{kube}-{name}");
            std::fs::copy(seed_path(name), before.join(&file)).expect("copy");
            std::fs::write(after.join(&file), inject_seed(name, *config, kube, &[]))
                .expect("write");
        }
    }
    let was = checkov(&before);
    let now = checkov(&after);
    // The seeds' own findings (their containers' settings) stay theirs;
    // berth's container, hook, probes and volumes add none.
    let added: Vec<_> = now.difference(&was).collect();
    assert!(
        added.is_empty(),
        "checkov findings berth inject added: {added:?}"
    );
}

/// A main container that passes checkov with the chart's skips: after
/// inject (both placements, a Deployment and a CronJob), still zero.
#[test]
fn hardened_workloads_stay_clean_under_checkov() {
    let hardened = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: shop}
spec:
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      automountServiceAccountToken: false
      securityContext: {runAsNonRoot: true, runAsUser: 10001, runAsGroup: 10001, seccompProfile: {type: RuntimeDefault}}
      containers:
        - name: api
          image: example/api:1.0
          imagePullPolicy: IfNotPresent
          ports: [{containerPort: 8080}]
          resources: {requests: {cpu: 100m, memory: 64Mi}, limits: {cpu: 500m, memory: 128Mi}}
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            runAsNonRoot: true
            runAsUser: 10001
            capabilities: {drop: [ALL]}
            seccompProfile: {type: RuntimeDefault}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: api, namespace: shop}
spec:
  podSelector: {matchLabels: {app: api}}
  policyTypes: [Ingress]
  ingress: [{ports: [{port: 8080}]}]
"#;
    let dir = tempfile::tempdir().expect("tempdir");
    for kube in ["1.28", "1.35"] {
        let out = inject_ok(&["inject", "--kube-version", kube], hardened);
        std::fs::write(dir.path().join(format!("{kube}.yaml")), out).expect("write");
    }
    let found = checkov(dir.path());
    assert!(
        found.is_empty(),
        "checkov findings on injected hardened workloads: {found:?}"
    );
}

fn fails(args: &[&str], input: &str) -> String {
    let out = run(args, input);
    assert_eq!(out.status.code(), Some(64), "berth {args:?} should exit 64");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(out.stdout.is_empty(), "nothing on stdout on bad input");
    err
}

#[test]
fn bad_input_exits_64_naming_the_document() {
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: a, image: x}]}\n";
    let err = fails(&["inject"], &format!("{pod}---\nkey: [unclosed\n"));
    assert!(
        err.contains("document 2") && err.contains("not YAML"),
        "{err}"
    );
    let err = fails(&["inject"], &format!("{pod}---\njust: a mapping\n"));
    assert!(
        err.contains("document 2") && err.contains("not a Kubernetes object"),
        "{err}"
    );
    let err = fails(
        &["inject"],
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {template: {spec: {containers: []}}}\n",
    );
    assert!(
        err.contains("document 1 (Deployment web)") && err.contains("without containers"),
        "{err}"
    );
    let err = fails(&["inject", "--container", "nope"], pod);
    assert!(
        err.contains("document 1 (Pod p)") && err.contains("\"nope\""),
        "{err}"
    );
    let list = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Pod\n  metadata: {name: q}\n  spec: {containers: [{name: a, image: x}]}\n- {apiVersion: v1, kind: Pod, metadata: {name: r}, spec: {}}\n";
    let err = fails(&["inject"], list);
    assert!(err.contains("document 1 item 2 (Pod r)"), "{err}");
    // A secret in a broken document is never echoed.
    let err = fails(
        &["inject"],
        "apiVersion: v1\nkind: Secret\nstringData: {password: \"hunter2-secret\n",
    );
    assert!(!err.contains("hunter2"), "{err}");
    // Too much input.
    let big = "#".repeat(17 * 1024 * 1024);
    let err = fails(&["inject"], &big);
    assert!(err.contains("larger than"), "{err}");
}

#[test]
fn lists_several_documents_and_passthrough() {
    let input = r#"
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {ports: [{port: 80}]}
---
apiVersion: v1
kind: List
items:
  - apiVersion: apps/v1
    kind: DaemonSet
    metadata: {name: agent}
    spec:
      selector: {matchLabels: {app: agent}}
      template:
        metadata: {labels: {app: agent}}
        spec: {containers: [{name: agent, image: agent:1, ports: [{containerPort: 9100}]}]}
  - apiVersion: apps/v1
    kind: ReplicaSet
    metadata: {name: rs, annotations: {berth.dev/main-container: main}}
    spec:
      selector: {matchLabels: {app: rs}}
      template:
        metadata: {labels: {app: rs}}
        spec: {containers: [{name: helper, image: h}, {name: main, image: m}]}
"#;
    let out = inject_ok(&["inject", "--kube-version", "1.28"], input);
    let d = docs(&out);
    let kinds: Vec<&str> = d.iter().filter_map(|x| x["kind"].as_str()).collect();
    assert_eq!(
        kinds,
        ["Service", "ConfigMap", "ConfigMap", "List"],
        "{out}"
    );
    assert_eq!(d[0], docs(input)[0], "the Service passes through unchanged");
    assert_eq!(d[1]["metadata"]["name"], "agent-berth");
    assert!(d[1]["data"]["berth.yaml"]
        .as_str()
        .unwrap_or("")
        .contains("127.0.0.1:9100"));
    let rs = &d[3]["items"][1];
    let containers = rs["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers");
    let names: Vec<&str> = containers
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["helper", "main", "berth"], "regular berth at 1.28");
    assert!(
        containers[1]["lifecycle"]["preStop"].is_object(),
        "the annotated main container gets the hook"
    );
    assert!(containers[0]["lifecycle"].is_null());
    let removed = inject_ok(&["inject", "--remove"], &out);
    assert_eq!(docs(&removed), docs(input));
}

#[test]
fn the_token_is_random_per_run_unless_given_or_found() {
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: a, image: x}]}\n";
    let token = |out: &str| {
        let d = docs(out);
        let spec = pod_spec(&d[1]).expect("spec").clone();
        spec["initContainers"][0]["env"][2]["value"]
            .as_str()
            .expect("token")
            .to_string()
    };
    let a = token(&inject_ok(&["inject"], pod));
    let b = token(&inject_ok(&["inject"], pod));
    assert_ne!(a, b);
    assert_eq!(a.len(), 40);
    assert_eq!(
        token(&inject_ok(&["inject", "--lifecycle-token", TOKEN], pod)),
        TOKEN
    );
    let err = fails(&["inject", "--lifecycle-token", "short"], pod);
    assert!(err.contains("16"), "{err}");
}
