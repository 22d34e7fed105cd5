//! The configuration file: YAML → validated [`Config`], in two passes.
//!
//! 1. **Shape** ([`raw`]): serde derive reads the document into structs
//!    whose leaves are untyped [`Scalar`]s; `serde_path_to_error` gives the
//!    path of anything misshapen (`checks[0].drain`) and [`scalar::shape_error`]
//!    keeps serde from quoting values.
//! 2. **Values** ([`validate`]): one pass that expands `${VAR}` and
//!    `${file:/path}` ([`expand`]) and checks every value, each error naming
//!    its dotted field. A check's own keys are read by its type's module in
//!    `crate::checks` (one file per type).
//!
//! berth prints the first error as one line (`field: what is wrong`) and
//! exits 64 (EX_USAGE). An error never repeats a value that came from `${…}`:
//! it names the reference instead.

pub mod expand;
mod raw;
pub mod scalar;

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use crate::checks::{CheckDef, TYPES};
use crate::redact::Secrets;
pub use raw::CHECK_COMMON;
use raw::{RawCheck, RawConfig, RawDrain, RawLifecycle, RawNotify};
pub use scalar::{Cx, Scalar, Text};

/// Where berth looks for its config when neither `--config` nor `BERTH_CONFIG` is set.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/berth/berth.yaml";
/// The port of the contract (container port name `berth`).
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8642";
/// The lifecycle port: kubelet's preStop hook only, never on a Service.
pub const DEFAULT_LIFECYCLE_LISTEN: &str = "0.0.0.0:8643";
/// The header that carries the lifecycle token in the rendered preStop hook.
pub const LIFECYCLE_TOKEN_HEADER: &str = "berth-lifecycle-token";
/// Shorter tokens are refused: the token is the only thing that separates
/// kubelet's hook from any other caller that can reach the pod IP.
pub const MIN_LIFECYCLE_TOKEN_LEN: usize = 16;
/// A berth.yaml is a few KiB; anything this big is a mistake (or hostile).
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// A configuration error: the field it is about and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for ConfigError {}

pub type Result<T> = std::result::Result<T, ConfigError>;

/// How berth reacts to its own SIGTERM/SIGINT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Native sidecar: the main container is already gone; exit promptly.
    Native,
    /// Regular container: signalled together with the main container; keep
    /// serving (draining) until the main process is gone or `drain.timeout`.
    Regular,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Native => "native",
            Mode::Regular => "regular",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// Where `grpc.health.v1` is served, if anywhere.
    pub grpc_listen: Option<SocketAddr>,
    pub mode: Mode,
    /// Bearer token that unlocks full error detail for non-loopback callers.
    pub token: Option<String>,
    pub checks: Vec<CheckSpec>,
    /// `groups: {db: [pg, cache]}`, members in the order written.
    pub groups: BTreeMap<String, Vec<String>>,
    /// Names of the checks of the startup gate (already defaulted: every critical check).
    pub startup_wait_for: Vec<String>,
    pub drain: DrainSpec,
    /// The guarded lifecycle listener for kubelet's preStop hook; `None`:
    /// lifecycle endpoints answer loopback callers only.
    pub lifecycle: Option<LifecycleSpec>,
}

/// `lifecycle:` — where kubelet's preStop hook reaches berth from the node.
///
/// The main port serves lifecycle paths to loopback callers only (debugging
/// through `kubectl port-forward`). Kubelet calls from the node, so its hook
/// goes to this second port with the token in a header; the charts never
/// put this port on a Service, Ingress, HTTPRoute or NetworkPolicy rule.
#[derive(Debug, Clone)]
pub struct LifecycleSpec {
    pub listen: SocketAddr,
    pub token: String,
}

/// One check: the settings every type shares, and its type's definition.
#[derive(Debug, Clone)]
pub struct CheckSpec {
    pub name: String,
    pub def: Arc<dyn CheckDef>,
    pub critical: bool,
    pub interval: Duration,
    pub timeout: Duration,
    pub failure_threshold: u32,
    pub success_threshold: u32,
}

impl CheckSpec {
    pub fn kind(&self) -> &'static str {
        self.def.kind()
    }

    /// Equal specs describe the same check: a reload keeps its state.
    pub fn same_as(&self, other: &CheckSpec) -> bool {
        self.name == other.name
            && self.critical == other.critical
            && self.interval == other.interval
            && self.timeout == other.timeout
            && self.failure_threshold == other.failure_threshold
            && self.success_threshold == other.success_threshold
            && format!("{:?}", self.def) == format!("{:?}", other.def)
    }
}

#[derive(Debug, Clone)]
pub struct DrainSpec {
    pub delay: Duration,
    pub timeout: Duration,
    pub notify: Notify,
    pub wait_until_down: Vec<String>,
}

#[derive(Debug, Clone)]
pub enum Notify {
    None,
    Signal {
        process: String,
        signal: nix::sys::signal::Signal,
        /// Also wait (bounded by `drain.timeout`) until the signalled processes exit.
        wait_for_exit: bool,
    },
    Http {
        url: http::Uri,
    },
}

impl Notify {
    pub fn kind(&self) -> &'static str {
        match self {
            Notify::None => "none",
            Notify::Signal { .. } => "signal",
            Notify::Http { .. } => "http",
        }
    }
}

impl Config {
    /// The main container's process name, if berth can know it: the signal
    /// target, else the first `process` check's command.
    pub fn main_process(&self) -> Option<&str> {
        if let Notify::Signal { process, .. } = &self.drain.notify {
            return Some(process);
        }
        self.checks.iter().find_map(|c| c.def.process_name())
    }

    /// Every credential that appears in the configuration, so that error
    /// text can be scrubbed of it even where a library echoes it back.
    pub fn secrets(&self) -> Secrets {
        let mut secrets = Secrets::default();
        if let Some(t) = &self.token {
            secrets.add(t);
        }
        if let Some(lc) = &self.lifecycle {
            secrets.add(&lc.token);
        }
        for c in &self.checks {
            c.def.add_secrets(&mut secrets);
        }
        if let Notify::Http { url } = &self.drain.notify {
            secrets.add_url_userinfo(&url.to_string());
        }
        secrets
    }
}

/// Reads and validates the file at `path` (environment from the process).
pub fn load(path: &Path) -> Result<Config> {
    let text = read(path)?;
    let env = |name: &str| std::env::var(name).ok();
    parse(&text, &env)
}

/// Reads a config file; bounded: a config is never more than [`MAX_CONFIG_BYTES`].
pub fn read(path: &Path) -> Result<String> {
    let cannot =
        |why: String| ConfigError::new("config", format!("cannot read {}: {why}", path.display()));
    let meta = std::fs::metadata(path).map_err(|e| cannot(io_reason(&e)))?;
    if !meta.is_file() {
        return Err(cannot("not a regular file".into()));
    }
    let file = std::fs::File::open(path).map_err(|e| cannot(io_reason(&e)))?;
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| cannot(io_reason(&e)))?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(cannot(format!("larger than {MAX_CONFIG_BYTES} bytes")));
    }
    String::from_utf8(bytes).map_err(|_| cannot("not UTF-8 text".into()))
}

pub(crate) fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// Parses and validates a config document. `env` looks up `${VAR}`s (and
/// `BERTH_LISTEN`), injectable so tests need not mutate the process environment.
pub fn parse(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config> {
    let doc: serde_yaml_ng::Value = if text.trim().is_empty() {
        serde_yaml_ng::Value::Null
    } else {
        serde_yaml_ng::from_str(text).map_err(|e| {
            let at = e
                .location()
                .map(|l| format!(" at line {} column {}", l.line(), l.column()))
                .unwrap_or_default();
            // The YAML error may quote the offending text (a secret, maybe): keep only the position.
            let why = if e.to_string().contains("recursion limit") {
                "nested too deeply"
            } else {
                "not valid YAML"
            };
            ConfigError::new("config", format!("{why}{at}"))
        })?
    };
    let raw: RawConfig = match doc {
        serde_yaml_ng::Value::Null => RawConfig::default(),
        doc => serde_path_to_error::deserialize(doc).map_err(|e| scalar::shape_error("", &e))?,
    };
    let cx = Cx::new(env);
    validate(&raw, &cx).map_err(|e| cx.scrub(e))
}

/// The one validation pass over a document of the right shape.
fn validate(raw: &RawConfig, cx: &Cx) -> Result<Config> {
    let listen = match (cx.env)("BERTH_LISTEN") {
        Some(v) if !v.is_empty() => v,
        _ => cx
            .opt_text("listen", &raw.listen)?
            .map(|t| t.value)
            .unwrap_or_else(|| DEFAULT_LISTEN.into()),
    };
    let listen = listen
        .parse::<SocketAddr>()
        .map_err(|_| ConfigError::new("listen", "must be an address like 0.0.0.0:8642"))?;

    let grpc_listen = match cx.opt_text("grpcListen", &raw.grpc_listen)? {
        None => None,
        Some(t) => {
            let addr = t.value.parse::<SocketAddr>().map_err(|_| {
                ConfigError::new("grpcListen", "must be an address like 0.0.0.0:8644")
            })?;
            if addr.port() != 0 && addr.port() == listen.port() {
                return Err(ConfigError::new(
                    "grpcListen",
                    format!(
                        "port {} is the HTTP port (listen): use another",
                        addr.port()
                    ),
                ));
            }
            Some(addr)
        }
    };

    let mode = match cx.opt_text("mode", &raw.mode)? {
        None => Mode::Regular,
        Some(t) if t.value == "regular" => Mode::Regular,
        Some(t) if t.value == "native" => Mode::Native,
        Some(t) => {
            return Err(ConfigError::new(
                "mode",
                format!("must be native or regular, not {}", t.describe()),
            ))
        }
    };

    let token = cx
        .opt_text("token", &raw.token)?
        .map(|t| t.value)
        .filter(|t| !t.is_empty());

    let mut checks = Vec::new();
    let mut names = HashSet::new();
    for (i, item) in raw.checks.iter().flatten().enumerate() {
        let path = format!("checks[{i}]");
        let check = check(item, &path, cx)?;
        if !names.insert(check.name.clone()) {
            return Err(ConfigError::new(
                format!("{path}.name"),
                format!("duplicate check name {:?}", check.name),
            ));
        }
        checks.push(check);
    }
    let known: HashSet<&str> = checks.iter().map(|c| c.name.as_str()).collect();

    let mut groups = BTreeMap::new();
    for (name, members) in raw.groups.iter().flatten() {
        let path = format!("groups.{name}");
        if !valid_name(name) {
            return Err(ConfigError::new(
                path,
                "group names use only letters, digits, '-', '_' and '.'",
            ));
        }
        if known.contains(name.as_str()) {
            return Err(ConfigError::new(
                path,
                format!("{name:?} is also a check name: a gRPC service name must mean one thing"),
            ));
        }
        let list = names_list(cx, &path, members.as_deref().unwrap_or(&[]), &known)?;
        if list.is_empty() {
            return Err(ConfigError::new(path, "must list at least one check"));
        }
        groups.insert(name.clone(), list);
    }

    let mut startup_wait_for: Vec<String> = checks
        .iter()
        .filter(|c| c.critical)
        .map(|c| c.name.clone())
        .collect();
    if let Some(list) = raw.startup.as_ref().and_then(|s| s.wait_for.as_ref()) {
        startup_wait_for = names_list(cx, "startup.waitFor", list, &known)?;
    }

    let drain = match &raw.drain {
        None => DrainSpec {
            delay: Duration::from_secs(5),
            timeout: Duration::from_secs(45),
            notify: Notify::None,
            wait_until_down: Vec::new(),
        },
        Some(d) => drain(d, cx, &known)?,
    };

    let lifecycle = match &raw.lifecycle {
        None => None,
        Some(lc) => Some(lifecycle(lc, cx, listen)?),
    };

    Ok(Config {
        listen,
        grpc_listen,
        mode,
        token,
        checks,
        groups,
        startup_wait_for,
        drain,
        lifecycle,
    })
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn check(item: &RawCheck, path: &str, cx: &Cx) -> Result<CheckSpec> {
    let field = |key: &str| format!("{path}.{key}");
    let name = cx.required(&field("name"), &item.name, "")?;
    if !valid_name(&name.value) {
        return Err(ConfigError::new(
            field("name"),
            "must be non-empty and use only letters, digits, '-', '_' and '.'",
        ));
    }
    let kind = cx.required(&field("type"), &item.kind, "")?;
    let Some(ty) = TYPES.iter().find(|t| t.name == kind.value) else {
        let all: Vec<&str> = TYPES.iter().map(|t| t.name).collect();
        return Err(ConfigError::new(
            field("type"),
            format!(
                "unknown check type {} (expected one of: {})",
                kind.describe(),
                all.join(", ")
            ),
        ));
    };
    for key in item.rest.keys() {
        let key = key.as_str().unwrap_or("?");
        if !ty.keys.contains(&key) {
            let allowed: Vec<&str> = CHECK_COMMON.iter().chain(ty.keys).copied().collect();
            return Err(ConfigError::new(
                field(key),
                format!(
                    "unknown key for a {} check (expected one of: {})",
                    ty.name,
                    allowed.join(", ")
                ),
            ));
        }
    }
    let def = (ty.parse)(&item.rest, path, cx)?;

    let critical = cx
        .boolean(&field("critical"), &item.critical)?
        .unwrap_or(true);
    let interval = cx
        .duration(&field("interval"), &item.interval)?
        .unwrap_or(Duration::from_secs(5));
    let timeout = cx
        .duration(&field("timeout"), &item.timeout)?
        .unwrap_or(Duration::from_secs(2));
    if interval.is_zero() {
        return Err(ConfigError::new(
            field("interval"),
            "must be greater than 0",
        ));
    }
    if timeout.is_zero() || timeout >= interval {
        return Err(ConfigError::new(
            field("timeout"),
            format!(
                "must be greater than 0 and below interval ({} is not below {})",
                fmt_duration(timeout),
                fmt_duration(interval)
            ),
        ));
    }
    let failure_threshold = cx
        .threshold(&field("failureThreshold"), &item.failure_threshold)?
        .unwrap_or(3);
    let success_threshold = cx
        .threshold(&field("successThreshold"), &item.success_threshold)?
        .unwrap_or(1);
    Ok(CheckSpec {
        name: name.value,
        def,
        critical,
        interval,
        timeout,
        failure_threshold,
        success_threshold,
    })
}

/// A list of check names that must all exist (duplicates dropped).
fn names_list(
    cx: &Cx,
    field: &str,
    items: &[Scalar],
    known: &HashSet<&str>,
) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for item in items {
        let name = cx.text(field, item)?;
        if !known.contains(name.as_str()) {
            return Err(ConfigError::new(
                field,
                format!("unknown check {}", name.describe()),
            ));
        }
        if !out.contains(&name.value) {
            out.push(name.value);
        }
    }
    Ok(out)
}

fn drain(d: &RawDrain, cx: &Cx, known: &HashSet<&str>) -> Result<DrainSpec> {
    let delay = cx
        .duration("drain.delay", &d.delay)?
        .unwrap_or(Duration::from_secs(5));
    let timeout = cx
        .duration("drain.timeout", &d.timeout)?
        .unwrap_or(Duration::from_secs(45));
    if timeout.is_zero() || delay >= timeout {
        return Err(ConfigError::new(
            "drain.timeout",
            format!(
                "must be greater than drain.delay ({} is not above {})",
                fmt_duration(timeout),
                fmt_duration(delay)
            ),
        ));
    }
    let notify = match &d.notify {
        None => Notify::None,
        Some(n) => notify(n, cx)?,
    };
    let wait_until_down = match &d.wait_until_down {
        None => Vec::new(),
        Some(list) => names_list(cx, "drain.waitUntilDown", list, known)?,
    };
    Ok(DrainSpec {
        delay,
        timeout,
        notify,
        wait_until_down,
    })
}

fn notify(n: &RawNotify, cx: &Cx) -> Result<Notify> {
    let kind = cx.required("drain.notify.type", &n.kind, "")?;
    // Keys that belong to another notify type are mistakes, not no-ops.
    let stray = |allowed: &[&str]| -> Result<()> {
        for (key, set) in [
            ("process", n.process.is_some()),
            ("signal", n.signal.is_some()),
            ("waitForExit", n.wait_for_exit.is_some()),
            ("url", n.url.is_some()),
        ] {
            if set && !allowed.contains(&key) {
                return Err(ConfigError::new(
                    format!("drain.notify.{key}"),
                    format!("unknown key for notify type {}", kind.value),
                ));
            }
        }
        Ok(())
    };
    match kind.value.as_str() {
        "none" => {
            stray(&[])?;
            Ok(Notify::None)
        }
        "signal" => {
            stray(&["process", "signal", "waitForExit"])?;
            let process = cx.required("drain.notify.process", &n.process, " for type signal")?;
            let signal = match cx.opt_text("drain.notify.signal", &n.signal)? {
                None => nix::sys::signal::Signal::SIGTERM,
                Some(s) => parse_signal(&s.value).ok_or_else(|| {
                    ConfigError::new(
                        "drain.notify.signal",
                        format!(
                            "unknown signal {} (e.g. SIGTERM, SIGINT, SIGQUIT, SIGUSR1)",
                            s.describe()
                        ),
                    )
                })?,
            };
            let wait_for_exit = cx
                .boolean("drain.notify.waitForExit", &n.wait_for_exit)?
                .unwrap_or(false);
            Ok(Notify::Signal {
                process: process.value,
                signal,
                wait_for_exit,
            })
        }
        "http" => {
            stray(&["url"])?;
            let url = cx.required("drain.notify.url", &n.url, " for type http")?;
            let url = parse_http_url(&url.value, false)
                .map_err(|msg| ConfigError::new("drain.notify.url", msg))?;
            Ok(Notify::Http { url })
        }
        _ => Err(ConfigError::new(
            "drain.notify.type",
            format!("must be signal, http or none, not {}", kind.describe()),
        )),
    }
}

fn lifecycle(lc: &RawLifecycle, cx: &Cx, main: SocketAddr) -> Result<LifecycleSpec> {
    let listen = match (cx.env)("BERTH_LIFECYCLE_LISTEN") {
        Some(v) if !v.is_empty() => v,
        _ => cx
            .opt_text("lifecycle.listen", &lc.listen)?
            .map(|t| t.value)
            .unwrap_or_else(|| DEFAULT_LIFECYCLE_LISTEN.into()),
    };
    let listen = listen.parse::<SocketAddr>().map_err(|_| {
        ConfigError::new("lifecycle.listen", "must be an address like 0.0.0.0:8643")
    })?;
    if listen.port() == main.port() && listen.port() != 0 {
        return Err(ConfigError::new(
            "lifecycle.listen",
            format!(
                "port {} is the health port (listen): the lifecycle port must differ",
                listen.port()
            ),
        ));
    }
    let token = cx.required("lifecycle.token", &lc.token, "")?;
    // Never quote the token: name the rule only.
    if token.value.chars().count() < MIN_LIFECYCLE_TOKEN_LEN {
        return Err(ConfigError::new(
            "lifecycle.token",
            format!("must be at least {MIN_LIFECYCLE_TOKEN_LEN} characters"),
        ));
    }
    if !token.value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ConfigError::new(
            "lifecycle.token",
            "must be printable ASCII without spaces (it travels in an HTTP header)",
        ));
    }
    Ok(LifecycleSpec {
        listen,
        token: token.value,
    })
}

/// `500ms`, `5s`, `1m`, `1h`, `1m30s`, `1.5s`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s.is_empty() || s.len() > 64 {
        return None;
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let number: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit_secs = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        let part = number * unit_secs;
        if !part.is_finite() || part > 1.0e9 {
            return None;
        }
        total = total.checked_add(Duration::from_secs_f64(part))?;
    }
    Some(total)
}

pub fn fmt_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// `200`, `200-399`: an inclusive range of HTTP status codes.
pub fn parse_status_range(s: &str) -> Option<(u16, u16)> {
    let valid = |n: u16| (100..=599).contains(&n);
    let (lo, hi) = match s.split_once('-') {
        Some((a, b)) => (a.trim().parse().ok()?, b.trim().parse().ok()?),
        None => {
            let n = s.trim().parse().ok()?;
            (n, n)
        }
    };
    (valid(lo) && valid(hi) && lo <= hi).then_some((lo, hi))
}

pub fn parse_signal(s: &str) -> Option<nix::sys::signal::Signal> {
    let upper = s.trim().to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    nix::sys::signal::Signal::from_str(&name).ok()
}

/// `host:port` with a non-zero port. Never repeats the value (it may have
/// come from a secret): the caller names the field.
pub fn validate_host_port(address: &str) -> std::result::Result<(), String> {
    let bad = || "must be host:port".to_string();
    let (host, port) = address.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || port.parse::<u16>().map(|p| p == 0).unwrap_or(true) {
        return Err(bad());
    }
    Ok(())
}

/// An `http://` (or, with `https_ok`, `https://`) URL with a host.
pub fn parse_http_url(url: &str, https_ok: bool) -> std::result::Result<http::Uri, String> {
    let want = if https_ok {
        "http:// or https://"
    } else {
        "http://"
    };
    let bad = || format!("not a valid {want} URL (scheme://host:port/path)");
    let uri: http::Uri = url.parse().map_err(|_| bad())?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") if https_ok => {}
        Some("https") => {
            return Err("https:// needs a check of type https (TLS), not http".into());
        }
        _ => return Err(bad()),
    }
    if uri.host().map(str::is_empty).unwrap_or(true) {
        return Err(bad());
    }
    Ok(uri)
}

#[cfg(test)]
mod tests;
