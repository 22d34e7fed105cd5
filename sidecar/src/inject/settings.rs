//! berth's configuration for one injected pod, and what the pod spec needs
//! from it (ports, drain bounds, the startup gate).
//!
//! Mirrors `charts/berth-lib/templates/_config.tpl`: the chart writes
//! `mode` from the placement, the lifecycle listener with
//! `${BERTH_LIFECYCLE_TOKEN}`, and `startup.waitFor` = the gate (critical
//! checks that are dependencies, not the pod itself) when something gates
//! the start. `berth inject` applies the same rules to the user's file so
//! the ConfigMap and the pod spec agree with what the chart would render.

use serde_yaml_ng::{Mapping, Value};

use crate::config;

/// Where the berth container goes (the chart's "berth-lib.placement").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// First init container with `restartPolicy: Always` (Kubernetes ≥ 1.29).
    Native,
    /// A regular container next to the main one (older clusters).
    Regular,
    /// No berth container (a Job below 1.29: a regular one would never exit).
    None,
}

impl Placement {
    pub fn decide(native_ok: bool, batch: bool) -> Placement {
        match (native_ok, batch) {
            (true, _) => Placement::Native,
            (false, true) => Placement::None,
            (false, false) => Placement::Regular,
        }
    }
}

/// The config file of one pod and the facts the pod spec is built from.
#[derive(Debug, Clone)]
pub struct PodConfig {
    /// berth.yaml as it goes into the ConfigMap.
    pub text: String,
    pub port: u16,
    /// `grpcListen`'s port: declared as `berth-grpc`, as the chart does.
    pub grpc_port: Option<u16>,
    pub lifecycle_port: u16,
    /// drain.delay + drain.timeout + 5 s, each rounded up to whole seconds.
    pub min_grace: u64,
    /// berth must see the main process (signal notify or a process check).
    pub need_pid: bool,
    /// Checks the startup gate waits for; empty: nothing gates the start.
    pub gate: Vec<String>,
    /// `${NAME}` references, which the berth container's env must define.
    pub env_refs: Vec<String>,
}

/// The default config when no `--config` is given: a tcp check on the
/// main container's first port (none when it declares no port).
pub fn default_config(port: Option<u16>) -> Mapping {
    let mut m = Mapping::new();
    m.insert("listen".into(), "0.0.0.0:8642".into());
    let mut checks = Vec::new();
    if let Some(p) = port {
        let mut c = Mapping::new();
        c.insert("name".into(), "app".into());
        c.insert("type".into(), "tcp".into());
        c.insert("address".into(), format!("127.0.0.1:{p}").into());
        checks.push(Value::Mapping(c));
    }
    m.insert("checks".into(), Value::Sequence(checks));
    let mut drain = Mapping::new();
    drain.insert("delay".into(), "5s".into());
    drain.insert("timeout".into(), "45s".into());
    let mut notify = Mapping::new();
    notify.insert("type".into(), "none".into());
    drain.insert("notify".into(), Value::Mapping(notify));
    m.insert("drain".into(), Value::Mapping(drain));
    m
}

/// Parses a user's `--config` file: a YAML mapping berth itself accepts.
pub fn parse_user_config(text: &str) -> Result<Mapping, String> {
    let v: Value = serde_yaml_ng::from_str(text).map_err(|e| {
        let at = e
            .location()
            .map(|l| format!(" at line {} column {}", l.line(), l.column()))
            .unwrap_or_default();
        format!("not valid YAML{at}")
    })?;
    match v {
        Value::Mapping(m) => {
            validate(&m)?;
            Ok(m)
        }
        Value::Null => Ok(Mapping::new()),
        _ => Err("not a mapping".into()),
    }
}

/// The pod's config: `base` with the chart's rules for `placement`
/// applied, validated by berth's own parser.
pub fn for_pod(
    base: &Mapping,
    base_text: Option<&str>,
    placement: Placement,
    batch: bool,
) -> Result<PodConfig, String> {
    let mut m = base.clone();
    let mode = if placement == Placement::Native {
        "native"
    } else {
        "regular"
    };
    m.insert("mode".into(), mode.into());
    if placement != Placement::None {
        // The hook carries the token; berth reads it from its env. Any
        // other token here (a literal would sit in a ConfigMap) is replaced.
        let mut lc = match m.get("lifecycle") {
            Some(Value::Mapping(lc)) => lc.clone(),
            _ => Mapping::new(),
        };
        if !lc.contains_key("listen") {
            lc.insert("listen".into(), "0.0.0.0:8643".into());
        }
        lc.insert("token".into(), "${BERTH_LIFECYCLE_TOKEN}".into());
        m.insert("lifecycle".into(), Value::Mapping(lc));
    }
    // The gate: as the chart computes it (berth-lib.gate). A native
    // sidecar's startupProbe is the gate; Jobs gate with `berth wait`.
    let gated = placement == Placement::Native || batch;
    let explicit = m
        .get("startup")
        .and_then(|s| s.get("waitFor"))
        .and_then(Value::as_sequence)
        .map(|l| {
            l.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect::<Vec<_>>()
        })
        .filter(|l| !l.is_empty());
    let checks: Vec<&Mapping> = m
        .get("checks")
        .and_then(Value::as_sequence)
        .map(|l| l.iter().filter_map(Value::as_mapping).collect())
        .unwrap_or_default();
    let mut gate = Vec::new();
    if gated {
        match &explicit {
            Some(list) => {
                for c in &checks {
                    let name = str_of(c, "name");
                    if list.contains(&name) && is_local(c) {
                        return Err(format!(
                            "startup.waitFor names {name:?}, a check on the pod itself: the startup gate holds the main container until it passes, so the pod would never start; list only dependencies there"
                        ));
                    }
                }
                gate = list.clone();
            }
            None => {
                for c in &checks {
                    if critical(c) && !is_local(c) {
                        gate.push(str_of(c, "name"));
                    }
                }
            }
        }
    }
    if !gate.is_empty() {
        let mut startup = match m.get("startup") {
            Some(Value::Mapping(s)) => s.clone(),
            _ => Mapping::new(),
        };
        startup.insert(
            "waitFor".into(),
            Value::Sequence(gate.iter().map(|g| Value::from(g.as_str())).collect()),
        );
        m.insert("startup".into(), Value::Mapping(startup));
    }
    let parsed = validate(&m)?;
    let lifecycle_port = parsed
        .lifecycle
        .as_ref()
        .map(|l| l.listen.port())
        .unwrap_or(8643);
    let secs = |d: std::time::Duration| d.as_millis().div_ceil(1000) as u64;
    let need_pid = parsed.drain.notify.kind() == "signal"
        || parsed.checks.iter().any(|c| c.kind() == "process");
    let mut env_refs = Vec::new();
    collect_refs(&Value::Mapping(m.clone()), &mut env_refs);
    env_refs.retain(|r| r != "BERTH_LIFECYCLE_TOKEN");
    env_refs.sort();
    env_refs.dedup();
    // Keep the user's text (comments, order) when the rules changed nothing.
    let text = match base_text {
        Some(t) if &m == base => t.to_string(),
        _ => serde_yaml_ng::to_string(&m).map_err(|e| format!("cannot write berth.yaml: {e}"))?,
    };
    Ok(PodConfig {
        text,
        port: parsed.listen.port(),
        grpc_port: parsed.grpc_listen.map(|a| a.port()),
        lifecycle_port,
        min_grace: secs(parsed.drain.delay) + secs(parsed.drain.timeout) + 5,
        need_pid,
        gate,
        env_refs,
    })
}

fn str_of(m: &Mapping, key: &str) -> String {
    match m.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => String::new(),
    }
}

fn critical(c: &Mapping) -> bool {
    str_of(c, "critical") != "false"
}

/// A check on the pod itself (its own port, a heartbeat file, a process),
/// which can only pass once the main container runs ("berth-lib.isLocal").
fn is_local(c: &Mapping) -> bool {
    let kind = str_of(c, "type");
    if kind == "file" || kind == "process" {
        return true;
    }
    let target = [str_of(c, "url"), str_of(c, "address")]
        .into_iter()
        .find(|t| !t.is_empty())
        .unwrap_or_default();
    let rest = match target.find("://") {
        Some(i) => &target[i + 3..],
        None => target.as_str(),
    };
    let rest = match rest.find('@') {
        Some(i) if !rest[..i].contains('/') => &rest[i + 1..],
        _ => rest,
    };
    let host_end = |prefix: &str| {
        rest.strip_prefix(prefix)
            .map(|after| after.is_empty() || after.starts_with([':', '/']))
            .unwrap_or(false)
    };
    if host_end("localhost") || host_end("[::1]") || host_end("0.0.0.0") {
        return true;
    }
    rest.strip_prefix("127.")
        .map(|r| {
            let end = r.find([':', '/']).unwrap_or(r.len());
            r[..end].chars().all(|ch| ch.is_ascii_digit() || ch == '.')
        })
        .unwrap_or(false)
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => {
            let mut rest = s.as_str();
            while let Some(pos) = rest.find("${") {
                if pos > 0 && rest.as_bytes()[pos - 1] == b'$' {
                    rest = &rest[pos + 2..];
                    continue;
                }
                let body = &rest[pos + 2..];
                let Some(end) = body.find('}') else { break };
                let name = &body[..end];
                if !name.starts_with("file:") && !name.is_empty() {
                    out.push(name.to_string());
                }
                rest = &body[end..];
            }
        }
        Value::Sequence(l) => l.iter().for_each(|x| collect_refs(x, out)),
        Value::Mapping(m) => m.values().for_each(|x| collect_refs(x, out)),
        Value::Tagged(t) => collect_refs(&t.value, out),
        _ => {}
    }
}

/// Validates with berth's own parser. Values that come from `${VAR}` or
/// `${file:}` exist only in the pod, so they are replaced by a value of
/// the right shape first; TLS file settings are read by berth at start
/// and cannot be checked here either.
fn validate(m: &Mapping) -> Result<config::Config, String> {
    let mut copy = Value::Mapping(m.clone());
    placeholders(&mut copy, None, "");
    let text =
        serde_yaml_ng::to_string(&copy).map_err(|e| format!("cannot write berth.yaml: {e}"))?;
    let no_env = |_: &str| None;
    config::parse(&text, &no_env).map_err(|e| format!("invalid berth config: {e}"))
}

fn placeholders(v: &mut Value, check_type: Option<&str>, key: &str) {
    match v {
        Value::String(s) if s.contains("${") => {
            *s = match (key, check_type) {
                ("url", Some("postgres")) => "postgresql://u@127.0.0.1:5432/d",
                ("url", Some("redis")) => "redis://127.0.0.1:6379",
                ("url", Some("mysql")) => "mysql://u@127.0.0.1:3306/d",
                ("url", Some("amqp")) => "amqp://127.0.0.1:5672/",
                ("url", Some("nats")) => "nats://127.0.0.1:4222",
                ("url", Some("https")) => "https://127.0.0.1:1/",
                ("url", _) => "http://127.0.0.1:1/",
                ("address", _) => "127.0.0.1:1",
                ("token", _) => "placeholder-token-0123456789",
                _ => "placeholder",
            }
            .to_string();
        }
        Value::Sequence(l) => {
            for x in l {
                placeholders(x, check_type, key);
            }
        }
        Value::Mapping(map) => {
            let own_type = map.get("type").and_then(Value::as_str).map(String::from);
            let t = if key == "checks" {
                own_type.as_deref()
            } else {
                check_type
            };
            if key == "checks" {
                for k in ["caFile", "clientCert", "clientKey"] {
                    map.remove(k);
                }
            }
            for (k, x) in map.iter_mut() {
                let k = k.as_str().unwrap_or("").to_string();
                placeholders(x, t, &k);
            }
        }
        _ => {}
    }
}
