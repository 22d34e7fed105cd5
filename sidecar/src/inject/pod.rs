//! Adding berth to one pod spec, and taking it away again.
//!
//! The same steps, in the same order and with the same field values, as
//! `charts/berth-lib/templates/_pod.tpl` ("berth-lib.pod"), so a pod that
//! `berth inject` (or the injector) produces equals the one the chart
//! renders for the same settings (tests/tests/inject_parity.rs). Before
//! changing a value here, change the chart.

use serde_json::{json, Map, Value};

use super::settings::{Placement, PodConfig};

/// The annotation that records what inject replaced (JSON), so `--remove`
/// restores the input and a second inject starts from the original.
pub const INJECTED: &str = "berth.dev/injected";
/// The annotation that names the main container.
pub const MAIN_CONTAINER: &str = "berth.dev/main-container";
/// The pod spec fields inject may change.
const TOUCHED: &[&str] = &[
    "containers",
    "initContainers",
    "volumes",
    "terminationGracePeriodSeconds",
    "shareProcessNamespace",
];

/// Everything a pod needs besides its config.
pub struct Inputs<'a> {
    pub config: &'a PodConfig,
    pub placement: Placement,
    /// Job, CronJob or a pod that does not restart: no probes, no preStop.
    pub batch: bool,
    pub image: &'a str,
    pub token: &'a str,
    pub config_map: &'a str,
    /// Where berth.yaml comes from instead of the ConfigMap `config_map`
    /// (the injector: admission cannot create a ConfigMap, so the default
    /// config travels in a pod annotation, projected by the downward API).
    pub config_source: Option<Value>,
    pub main: &'a str,
    /// Whether the pod template had metadata before (for `--remove`).
    pub had_metadata: bool,
}

/// The first container's name (the default main container).
pub fn first_container(spec: &Value) -> Option<&str> {
    spec.get("containers")?
        .as_array()?
        .first()?
        .get("name")?
        .as_str()
}

/// The main container's first TCP port, for the default tcp check.
pub fn first_port(spec: &Value, main: &str) -> Option<u16> {
    let c = container(spec, main)?;
    c.get("ports")?.as_array()?.iter().find_map(|p| {
        let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
        if proto != "TCP" {
            return None;
        }
        p.get("containerPort")?
            .as_u64()
            .and_then(|n| u16::try_from(n).ok())
    })
}

pub fn container<'a>(spec: &'a Value, name: &str) -> Option<&'a Value> {
    spec.get("containers")?
        .as_array()?
        .iter()
        .find(|c| c.get("name").and_then(Value::as_str) == Some(name))
}

/// Names of the pod's containers, for error messages.
pub fn container_names(spec: &Value) -> Vec<String> {
    spec.get("containers")
        .and_then(Value::as_array)
        .map(|l| {
            l.iter()
                .filter_map(|c| c.get("name").and_then(Value::as_str).map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// True when berth already runs in the pod without inject's record (a pod
/// the chart rendered): inject leaves such a pod alone.
pub fn has_foreign_berth(spec: &Value) -> bool {
    ["containers", "initContainers"].iter().any(|f| {
        spec.get(*f)
            .and_then(Value::as_array)
            .map(|l| {
                l.iter().any(|c| {
                    matches!(
                        c.get("name").and_then(Value::as_str),
                        Some("berth" | "berth-wait")
                    )
                })
            })
            .unwrap_or(false)
    })
}

/// The lifecycle token of a pod berth was injected into, if any.
pub fn token_of(spec: &Value) -> Option<String> {
    ["initContainers", "containers"].iter().find_map(|f| {
        spec.get(*f)?.as_array()?.iter().find_map(|c| {
            if !matches!(c.get("name")?.as_str()?, "berth" | "berth-wait") {
                return None;
            }
            c.get("env")?.as_array()?.iter().find_map(|e| {
                if e.get("name")?.as_str()? == "BERTH_LIFECYCLE_TOKEN" {
                    e.get("value")?.as_str().map(String::from)
                } else {
                    None
                }
            })
        })
    })
}

/// Restores a pod template (metadata + spec) that carries inject's
/// record and returns the record; `Ok(None)` when there is none. The record is ours but lives in
/// user data, so a damaged one is an error, not a panic.
pub fn remove(metadata: &mut Value, spec: &mut Value) -> Result<Option<Value>, String> {
    let Some(raw) = metadata
        .get("annotations")
        .and_then(|a| a.get(INJECTED))
        .and_then(Value::as_str)
    else {
        return Ok(None);
    };
    let record: Value = serde_json::from_str(raw)
        .map_err(|_| format!("annotation {INJECTED} is not the JSON berth inject wrote"))?;
    let (Some(saved), Some(spec_map)) = (
        record.get("spec").and_then(Value::as_object),
        spec.as_object_mut(),
    ) else {
        return Err(format!(
            "annotation {INJECTED} is not the JSON berth inject wrote"
        ));
    };
    for field in TOUCHED {
        match saved.get(*field) {
            Some(Value::Null) | None => {
                spec_map.remove(*field);
            }
            Some(v) => {
                spec_map.insert((*field).to_string(), v.clone());
            }
        }
    }
    let had_annotations = record
        .get("annotations")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    if let Some(ann) = metadata
        .get_mut("annotations")
        .and_then(Value::as_object_mut)
    {
        ann.remove(INJECTED);
        if ann.is_empty() && !had_annotations {
            if let Some(m) = metadata.as_object_mut() {
                m.remove("annotations");
            }
        }
    }
    Ok(Some(record))
}

/// Adds berth to `spec` (a pod spec) and records what it replaced in
/// `metadata` (the pod template's metadata). Returns false when nothing
/// was added (a Job below 1.29 with nothing to wait for).
pub fn inject(metadata: &mut Value, spec: &mut Value, i: &Inputs) -> Result<bool, String> {
    let sidecar = i.placement != Placement::None;
    let long_running = !i.batch;
    let wait = i.batch && !i.config.gate.is_empty();
    if !sidecar && !wait {
        return Ok(false);
    }
    let envs = main_env(spec, i.main);
    let Some(spec_map) = spec.as_object_mut() else {
        return Err("the pod spec is not a mapping".into());
    };
    let mut record = Map::new();
    for field in TOUCHED {
        record.insert(
            (*field).to_string(),
            spec_map.get(*field).cloned().unwrap_or(Value::Null),
        );
    }

    // 1. volumes
    let mut volumes = array_of(spec_map, "volumes");
    for v in volumes_for(i.config_map, i.config_source.as_ref()) {
        let name = v.get("name").cloned();
        if !volumes.iter().any(|x| x.get("name") == name.as_ref()) {
            volumes.push(v);
        }
    }
    spec_map.insert("volumes".into(), Value::Array(volumes));

    // 2. the main container
    let mut containers = array_of(spec_map, "containers");
    let mut found = false;
    let mut berth_hook = false;
    for c in containers.iter_mut() {
        if c.get("name").and_then(Value::as_str) != Some(i.main) {
            continue;
        }
        found = true;
        let Some(c) = c.as_object_mut() else {
            return Err(format!("container {:?} is not a mapping", i.main));
        };
        let mut mounts = array_of(c, "volumeMounts");
        if !mounts
            .iter()
            .any(|m| m.get("name").and_then(Value::as_str) == Some("berth-run"))
        {
            mounts.push(json!({"name": "berth-run", "mountPath": "/var/run/berth"}));
        }
        c.insert("volumeMounts".into(), Value::Array(mounts));
        if sidecar && long_running {
            // berth-lib.defaults mainProbes; the app's own probes stay.
            for (key, endpoint, period, failures) in [
                ("startupProbe", "startup", 5, 30),
                ("livenessProbe", "live", 10, 3),
                ("readinessProbe", "ready", 5, 3),
            ] {
                if !c.contains_key(key) {
                    c.insert(
                        key.into(),
                        json!({
                            "httpGet": {"path": format!("/api/v1/health/{endpoint}"), "port": i.config.port, "scheme": "HTTP"},
                            "periodSeconds": period,
                            "timeoutSeconds": 3,
                            "failureThreshold": failures,
                            "successThreshold": 1,
                        }),
                    );
                }
            }
            let mut lc = match c.get("lifecycle") {
                Some(Value::Object(m)) => m.clone(),
                Some(Value::Null) | None => Map::new(),
                Some(_) => {
                    return Err(format!(
                        "container {:?}: lifecycle is not a mapping",
                        i.main
                    ))
                }
            };
            if !lc.contains_key("preStop") {
                lc.insert(
                    "preStop".into(),
                    json!({"httpGet": {
                        "path": "/api/v1/lifecycle/prestop",
                        "port": i.config.lifecycle_port,
                        "scheme": "HTTP",
                        "httpHeaders": [{"name": "berth-lifecycle-token", "value": i.token}],
                    }}),
                );
                berth_hook = true;
            }
            c.insert("lifecycle".into(), Value::Object(lc));
        }
    }
    if !found {
        return Err(format!("no container named {:?}", i.main));
    }

    // 3 + 4. berth's own containers
    let mut inits = Vec::new();
    if i.placement == Placement::Native {
        inits.push(berth_container(i, &envs, true));
    }
    if wait {
        inits.push(wait_container(i, &envs));
    }
    inits.extend(array_of(spec_map, "initContainers"));
    if !inits.is_empty() {
        spec_map.insert("initContainers".into(), Value::Array(inits));
    }
    if i.placement == Placement::Regular {
        containers.push(berth_container(i, &envs, false));
    }
    spec_map.insert("containers".into(), Value::Array(containers));

    // 5. grace period: the chart fails on a shorter explicit one; a
    // command that edits someone's manifest raises it instead (the old
    // value is in the record).
    if sidecar && long_running && berth_hook {
        let current = spec_map
            .get("terminationGracePeriodSeconds")
            .and_then(Value::as_u64);
        if current.is_none_or(|g| g < i.config.min_grace) {
            spec_map.insert(
                "terminationGracePeriodSeconds".into(),
                json!(i.config.min_grace),
            );
        }
    }
    // 6. shared PID namespace when berth must see or signal the main process
    if sidecar && i.config.need_pid && !spec_map.contains_key("shareProcessNamespace") {
        spec_map.insert("shareProcessNamespace".into(), json!(true));
    }

    // the record
    let Some(meta) = metadata.as_object_mut() else {
        return Err("the pod metadata is not a mapping".into());
    };
    let had = matches!(meta.get("annotations"), Some(Value::Object(_)));
    let record = json!({"spec": record, "annotations": had, "metadata": i.had_metadata});
    let mut ann = match meta.get("annotations") {
        Some(Value::Object(a)) => a.clone(),
        _ => Map::new(),
    };
    ann.insert(INJECTED.into(), Value::String(record.to_string()));
    meta.insert("annotations".into(), Value::Object(ann));
    Ok(true)
}

fn array_of(m: &Map<String, Value>, key: &str) -> Vec<Value> {
    match m.get(key) {
        Some(Value::Array(a)) => a.clone(),
        _ => Vec::new(),
    }
}

/// "berth-lib.volumes" without secretFiles.
fn volumes_for(config_map: &str, source: Option<&Value>) -> Vec<Value> {
    let source = source.cloned().unwrap_or_else(|| {
        json!({"configMap": {"name": config_map, "items": [{"key": "berth.yaml", "path": "berth.yaml"}]}})
    });
    vec![
        json!({"name": "berth-config", "projected": {
            "sources": [source],
            "defaultMode": 292,
        }}),
        json!({"name": "berth-run", "emptyDir": {"sizeLimit": "16Mi"}}),
        json!({"name": "berth-tmp", "emptyDir": {"sizeLimit": "16Mi"}}),
    ]
}

/// "berth-lib.containerEnv": the log settings, the lifecycle token, and
/// the variables the config references, copied from the main container.
fn env(i: &Inputs, main_env: &[Value]) -> Vec<Value> {
    let mut env = vec![
        json!({"name": "BERTH_LOG_FORMAT", "value": "json"}),
        json!({"name": "BERTH_LOG", "value": "info"}),
        json!({"name": "BERTH_LIFECYCLE_TOKEN", "value": i.token}),
    ];
    for name in &i.config.env_refs {
        if let Some(e) = main_env
            .iter()
            .find(|e| e.get("name").and_then(Value::as_str) == Some(name.as_str()))
        {
            env.push(e.clone());
        }
    }
    env
}

/// The main container's env and envFrom, where `${VAR}`s come from.
pub fn main_env(spec: &Value, main: &str) -> (Vec<Value>, Vec<Value>) {
    let c = container(spec, main);
    let list = |k: &str| {
        c.and_then(|c| c.get(k))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    (list("env"), list("envFrom"))
}

fn mounts() -> Value {
    json!([
        {"name": "berth-config", "mountPath": "/etc/berth", "readOnly": true},
        {"name": "berth-run", "mountPath": "/var/run/berth"},
        {"name": "berth-tmp", "mountPath": "/tmp"},
    ])
}

fn resources() -> Value {
    json!({
        "requests": {"cpu": "10m", "memory": "16Mi", "ephemeral-storage": "16Mi"},
        "limits": {"cpu": "200m", "memory": "64Mi", "ephemeral-storage": "64Mi"},
    })
}

fn security_context() -> Value {
    json!({
        "runAsNonRoot": true,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "allowPrivilegeEscalation": false,
        "readOnlyRootFilesystem": true,
        "privileged": false,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    })
}

/// "berth-lib.containerPorts": health, and gRPC health when served; never
/// the lifecycle port.
fn berth_ports(i: &Inputs) -> Value {
    let mut ports =
        vec![json!({"name": "berth", "containerPort": i.config.port, "protocol": "TCP"})];
    if let Some(p) = i.config.grpc_port {
        ports.push(json!({"name": "berth-grpc", "containerPort": p, "protocol": "TCP"}));
    }
    Value::Array(ports)
}

/// "berth-lib.container".
fn berth_container(i: &Inputs, envs: &(Vec<Value>, Vec<Value>), native: bool) -> Value {
    let (main_env, main_env_from) = envs;
    let startup = if native && !i.config.gate.is_empty() {
        "/api/v1/health/startup"
    } else {
        "/api/v1/health/live"
    };
    let mut c = json!({
        "name": "berth",
        "image": i.image,
        "imagePullPolicy": "IfNotPresent",
        "args": ["serve", "--config", "/etc/berth/berth.yaml"],
        "ports": berth_ports(i),
        "env": env(i, main_env),
        "volumeMounts": mounts(),
        "resources": resources(),
        "securityContext": security_context(),
        "startupProbe": {"httpGet": {"path": startup, "port": "berth"}, "periodSeconds": 2, "timeoutSeconds": 1, "failureThreshold": 150},
        "livenessProbe": {"httpGet": {"path": "/api/v1/health/live", "port": "berth"}, "periodSeconds": 10, "timeoutSeconds": 3, "failureThreshold": 3},
        "readinessProbe": {"httpGet": {"path": "/api/v1/health/live", "port": "berth"}, "periodSeconds": 10, "timeoutSeconds": 3, "failureThreshold": 3},
    });
    if let Some(m) = c.as_object_mut() {
        if !main_env_from.is_empty() && i.needs_env_from(main_env) {
            m.insert("envFrom".into(), Value::Array(main_env_from.clone()));
        }
        if native {
            m.insert("restartPolicy".into(), json!("Always"));
        }
    }
    c
}

/// "berth-lib.waitContainer".
fn wait_container(i: &Inputs, envs: &(Vec<Value>, Vec<Value>)) -> Value {
    let (main_env, main_env_from) = envs;
    let mut c = json!({
        "name": "berth-wait",
        "image": i.image,
        "imagePullPolicy": "IfNotPresent",
        "args": ["wait", "--config", "/etc/berth/berth.yaml", "--timeout", "60s"],
        "env": env(i, main_env),
        "volumeMounts": mounts(),
        "resources": resources(),
        "securityContext": security_context(),
    });
    if let Some(m) = c.as_object_mut() {
        if !main_env_from.is_empty() && i.needs_env_from(main_env) {
            m.insert("envFrom".into(), Value::Array(main_env_from.clone()));
        }
    }
    c
}

impl Inputs<'_> {
    /// A referenced variable the main container's env lacks may come from
    /// its envFrom: then berth gets the same envFrom.
    fn needs_env_from(&self, main_env: &[Value]) -> bool {
        self.config.env_refs.iter().any(|r| {
            !main_env
                .iter()
                .any(|e| e.get("name").and_then(Value::as_str) == Some(r.as_str()))
        })
    }
}
