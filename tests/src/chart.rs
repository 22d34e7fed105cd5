//! Helpers for chart render tests (helm 3 and 4, parsed manifests).
//!
//! A test builds a [`Render`] (chart, values files, `--set`s, Kubernetes
//! version, extra API versions), runs it with a real helm binary from
//! `tools/setup.sh`, and gets either the parsed manifests ([`Manifests`]) or
//! helm's error text (to assert that a bad value fails with a message that
//! names it).
//!
//! Charts are copied into a per-process temporary directory with
//! `charts/berth-lib` placed unpacked in the chart's `charts/`: nextest runs
//! every test in its own process, and a shared `helm dependency build` into
//! the working tree would race between them.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::{tools, workspace_root};

/// The two helm major versions every render test runs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Helm {
    V3,
    V4,
}

/// Both helms, for `for helm in HELMS { ... }`.
pub const HELMS: [Helm; 2] = [Helm::V3, Helm::V4];

impl Helm {
    pub fn binary(self) -> PathBuf {
        match self {
            Helm::V3 => tools::tool("helm3"),
            Helm::V4 => tools::tool("helm4"),
        }
    }
}

/// The CRD API versions the chart looks for in `.Capabilities.APIVersions`.
pub const MONITORING_APIS: [&str; 3] = [
    "monitoring.coreos.com/v1/ServiceMonitor",
    "monitoring.coreos.com/v1/PodMonitor",
    "monitoring.coreos.com/v1/PrometheusRule",
];
pub const GATEWAY_API: &str = "gateway.networking.k8s.io/v1/HTTPRoute";

/// Which chart to render.
#[derive(Clone, Copy, Debug)]
pub enum Chart {
    /// `charts/berth`
    Berth,
    /// `examples/existing-pod/chart` (uses berth-lib)
    ExistingPod,
}

struct Copies {
    _dir: tempfile::TempDir,
    berth: PathBuf,
    existing: PathBuf,
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("dir entry");
        let path = entry.path();
        let target = to.join(entry.file_name());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).expect("copy file");
        }
    }
}

/// Copies a chart without its `charts/` folder and puts berth-lib there.
fn stage(chart: &Path, lib: &Path, into: &Path) {
    std::fs::create_dir_all(into).expect("create chart dir");
    for entry in std::fs::read_dir(chart).expect("read chart") {
        let entry = entry.expect("entry");
        if entry.file_name() == "charts" {
            continue;
        }
        let path = entry.path();
        let target = into.join(entry.file_name());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).expect("copy");
        }
    }
    copy_dir(lib, &into.join("charts/berth-lib"));
}

fn copies() -> &'static Copies {
    static COPIES: OnceLock<Copies> = OnceLock::new();
    COPIES.get_or_init(|| {
        let root = workspace_root();
        let dir = tempfile::tempdir().expect("tempdir");
        let lib = root.join("charts/berth-lib");
        let berth = dir.path().join("berth");
        let existing = dir.path().join("myapp");
        stage(&root.join("charts/berth"), &lib, &berth);
        stage(&root.join("examples/existing-pod/chart"), &lib, &existing);
        Copies {
            _dir: dir,
            berth,
            existing,
        }
    })
}

/// One `helm template` invocation.
#[derive(Clone, Debug)]
pub struct Render {
    helm: Helm,
    chart: Chart,
    values: Vec<PathBuf>,
    sets: Vec<String>,
    kube: String,
    apis: Vec<String>,
}

impl Render {
    /// `helm template rel charts/berth --namespace ns --kube-version 1.35.0`.
    pub fn berth(helm: Helm) -> Self {
        Render {
            helm,
            chart: Chart::Berth,
            values: Vec::new(),
            sets: Vec::new(),
            kube: "1.35.0".into(),
            apis: Vec::new(),
        }
    }

    pub fn chart(mut self, chart: Chart) -> Self {
        self.chart = chart;
        self
    }

    /// A values file, relative to the workspace root (e.g. `charts/berth/ci/web-values.yaml`).
    pub fn values(mut self, rel: &str) -> Self {
        self.values.push(workspace_root().join(rel));
        self
    }

    /// A values file written from a YAML string (kept alive for the process).
    pub fn values_yaml(mut self, yaml: &str) -> Self {
        static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
        let dir = DIR.get_or_init(|| tempfile::tempdir().expect("tempdir"));
        let n = std::fs::read_dir(dir.path())
            .map(|d| d.count())
            .unwrap_or(0);
        let path = dir.path().join(format!("values-{n}.yaml"));
        std::fs::write(&path, yaml).expect("write values");
        self.values.push(path);
        self
    }

    /// `--set key=value`
    pub fn set(mut self, kv: &str) -> Self {
        self.sets.push(kv.into());
        self
    }

    /// `--kube-version`
    pub fn kube(mut self, version: &str) -> Self {
        self.kube = version.into();
        self
    }

    /// `--api-versions` (e.g. [`GATEWAY_API`])
    pub fn api(mut self, api: &str) -> Self {
        self.apis.push(api.into());
        self
    }

    /// Runs helm; `Ok(stdout)` or `Err(stderr)`.
    pub fn output(&self) -> Result<String, String> {
        let c = copies();
        let chart = match self.chart {
            Chart::Berth => &c.berth,
            Chart::ExistingPod => &c.existing,
        };
        let mut cmd = Command::new(self.helm.binary());
        cmd.arg("template").arg("rel").arg(chart).args([
            "--namespace",
            "ns",
            "--kube-version",
            &self.kube,
        ]);
        for v in &self.values {
            cmd.arg("-f").arg(v);
        }
        for s in &self.sets {
            cmd.arg("--set").arg(s);
        }
        for a in &self.apis {
            cmd.arg("--api-versions").arg(a);
        }
        let home = c._dir.path().join("helm-home");
        cmd.env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_DATA_HOME", home.join("data"));
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("run {:?}: {e}", self.helm.binary()));
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Renders and parses; panics with helm's error if the render fails.
    pub fn ok(&self) -> Manifests {
        match self.output() {
            Ok(text) => Manifests::parse(&text),
            Err(e) => panic!("{:?} render failed ({self:?}):\n{e}", self.helm),
        }
    }

    /// Expects the render to fail; returns helm's error text.
    pub fn err(&self) -> String {
        match self.output() {
            Ok(_) => panic!("{:?} render succeeded but should fail: {self:?}", self.helm),
            Err(e) => e,
        }
    }
}

/// The parsed documents of a render (empty documents dropped).
#[derive(Clone, Debug)]
pub struct Manifests {
    pub docs: Vec<Value>,
    pub text: String,
}

impl Manifests {
    pub fn parse(text: &str) -> Self {
        // helm separates documents with a line that is exactly `---`.
        let mut docs = Vec::new();
        let mut chunk = String::new();
        let lines = text.lines().chain(std::iter::once("---"));
        for line in lines {
            if line.trim_end() == "---" {
                let v: serde_yaml::Value = serde_yaml::from_str(&chunk)
                    .unwrap_or_else(|e| panic!("rendered YAML parses: {e}\n{chunk}"));
                if !v.is_null() {
                    docs.push(serde_json::to_value(v).expect("YAML to JSON"));
                }
                chunk.clear();
            } else {
                chunk.push_str(line);
                chunk.push('\n');
            }
        }
        Manifests {
            docs,
            text: text.into(),
        }
    }

    pub fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.docs.iter().filter(|d| d["kind"] == kind).collect()
    }

    pub fn find(&self, kind: &str, name: &str) -> Option<&Value> {
        self.docs
            .iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
    }

    /// The object, or a panic listing what the render holds.
    pub fn get(&self, kind: &str, name: &str) -> &Value {
        self.find(kind, name).unwrap_or_else(|| {
            let have: Vec<String> = self
                .docs
                .iter()
                .map(|d| format!("{}/{}", d["kind"], d["metadata"]["name"]))
                .collect();
            panic!("no {kind} {name} in render; have {have:?}")
        })
    }

    /// Every object that carries a pod template (or is a Pod), with its pod spec.
    pub fn pod_specs(&self) -> Vec<(&Value, &Value)> {
        self.docs
            .iter()
            .filter_map(|d| pod_spec(d).map(|s| (d, s)))
            .collect()
    }
}

/// The pod spec of a Pod, Deployment, StatefulSet, DaemonSet, Job or CronJob.
pub fn pod_spec(obj: &Value) -> Option<&Value> {
    match obj["kind"].as_str()? {
        "Pod" => Some(&obj["spec"]),
        "Deployment" | "StatefulSet" | "DaemonSet" | "Job" => {
            Some(&obj["spec"]["template"]["spec"])
        }
        "CronJob" => Some(&obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]),
        _ => None,
    }
}

/// The pod template metadata of a workload.
pub fn pod_metadata(obj: &Value) -> &Value {
    match obj["kind"].as_str() {
        Some("CronJob") => &obj["spec"]["jobTemplate"]["spec"]["template"]["metadata"],
        Some("Pod") => &obj["metadata"],
        _ => &obj["spec"]["template"]["metadata"],
    }
}

/// Containers of a pod spec (`containers` or `initContainers`).
pub fn list<'a>(spec: &'a Value, field: &str) -> Vec<&'a Value> {
    spec[field]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

/// Every container of a pod spec: init containers first.
pub fn all_containers(spec: &Value) -> Vec<&Value> {
    let mut v = list(spec, "initContainers");
    v.extend(list(spec, "containers"));
    v
}

/// The container called `name` in `containers` or `initContainers`.
pub fn container<'a>(spec: &'a Value, name: &str) -> Option<&'a Value> {
    all_containers(spec).into_iter().find(|c| c["name"] == name)
}

/// The `berth.yaml` text of a ConfigMap, parsed.
pub fn berth_config(cm: &Value) -> Value {
    let text = cm["data"]["berth.yaml"]
        .as_str()
        .expect("ConfigMap has data.berth.yaml");
    let v: serde_yaml::Value = serde_yaml::from_str(text).expect("berth.yaml parses");
    serde_json::to_value(v).expect("to JSON")
}

/// Every `charts/berth/ci/*-values.yaml` scenario plus the job-queue
/// example, rendered for Kubernetes 1.28 and 1.35: `(label, manifests)`.
pub fn all_scenario_renders(helm: Helm) -> Vec<(String, Manifests)> {
    let mut out = Vec::new();
    let mut files = vec!["examples/jobqueue/values.yaml".to_string()];
    let ci = crate::workspace_root().join("charts/berth/ci");
    let mut ci_files: Vec<String> = std::fs::read_dir(ci)
        .expect("ci dir")
        .filter_map(|e| e.ok())
        // ci/jobqueue-values.yaml is a symlink to the example, rendered above.
        .filter(|e| e.file_type().is_ok_and(|t| !t.is_symlink()))
        .map(|e| format!("charts/berth/ci/{}", e.file_name().to_string_lossy()))
        .filter(|n| n.ends_with("-values.yaml"))
        .collect();
    ci_files.sort();
    assert!(ci_files.len() >= 5, "ci scenarios present: {ci_files:?}");
    files.extend(ci_files);
    let mut cases: Vec<Vec<String>> = files.into_iter().map(|f| vec![f]).collect();
    cases.extend(scenario_overlays());
    for case in &cases {
        for kube in ["1.28.0", "1.35.0"] {
            let mut r = Render::berth(helm).kube(kube);
            for f in case {
                r = r.values(f);
            }
            out.push((format!("{}@{kube}", case.join("+")), r.ok()));
        }
    }
    out
}

/// Overlays of a ci scenario: `charts/berth/ci/<scenario>/<overlay>.yaml`,
/// each given after `charts/berth/ci/<scenario>-values.yaml` (as
/// `helm template -f base -f overlay` would), sorted.
pub fn scenario_overlays() -> Vec<Vec<String>> {
    let ci = crate::workspace_root().join("charts/berth/ci");
    let mut out = Vec::new();
    for dir in std::fs::read_dir(&ci)
        .expect("ci dir")
        .filter_map(|e| e.ok())
    {
        if !dir.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let scenario = dir.file_name().to_string_lossy().into_owned();
        let base = format!("charts/berth/ci/{scenario}-values.yaml");
        assert!(
            ci.join(format!("{scenario}-values.yaml")).is_file(),
            "overlay directory ci/{scenario} has no ci/{scenario}-values.yaml"
        );
        for f in std::fs::read_dir(dir.path())
            .expect("overlay dir")
            .filter_map(|e| e.ok())
        {
            let name = f.file_name().to_string_lossy().into_owned();
            if name.ends_with(".yaml") {
                out.push(vec![
                    base.clone(),
                    format!("charts/berth/ci/{scenario}/{name}"),
                ]);
            }
        }
    }
    out.sort();
    out
}
