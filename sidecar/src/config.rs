//! The configuration file: YAML → validated [`Config`].
//!
//! The file is walked by hand (over `serde_yaml::Value`) instead of derived
//! with serde, because the one thing an operator needs from a bad config is
//! *which field* is wrong: every error here carries the dotted path of the
//! field (`checks[0].timeout`) and berth prints it as a single line before
//! exiting with 64 (EX_USAGE). `${VAR}` and `${file:/path}` are expanded in
//! every string value, after YAML parsing, so a secret containing YAML syntax
//! cannot change the document's structure.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde_yaml::{Mapping, Value};

use crate::redact::Secrets;

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

/// A configuration error: the field it is about and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

impl ConfigError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
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

type Result<T> = std::result::Result<T, ConfigError>;

/// How berth reacts to its own SIGTERM/SIGINT (DESIGN §1 "Lifecycle").
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
    pub mode: Mode,
    /// Bearer token that unlocks full error detail for non-loopback callers.
    pub token: Option<String>,
    pub checks: Vec<CheckSpec>,
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

#[derive(Debug, Clone)]
pub struct CheckSpec {
    pub name: String,
    pub target: Target,
    pub critical: bool,
    pub interval: Duration,
    pub timeout: Duration,
    pub failure_threshold: u32,
    pub success_threshold: u32,
}

impl CheckSpec {
    pub fn kind(&self) -> &'static str {
        self.target.kind()
    }
}

/// What a check talks to. URLs are kept as validated strings; the checker
/// parses them again into its client's own type.
#[derive(Debug, Clone)]
pub enum Target {
    Postgres {
        url: String,
    },
    Redis {
        url: String,
    },
    Tcp {
        address: String,
    },
    Http {
        url: http::Uri,
        expect_status: (u16, u16),
    },
    File {
        path: PathBuf,
        max_age: Option<Duration>,
    },
    Process {
        command: String,
    },
}

impl Target {
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Postgres { .. } => "postgres",
            Target::Redis { .. } => "redis",
            Target::Tcp { .. } => "tcp",
            Target::Http { .. } => "http",
            Target::File { .. } => "file",
            Target::Process { .. } => "process",
        }
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
        self.checks.iter().find_map(|c| match &c.target {
            Target::Process { command } => Some(command.as_str()),
            _ => None,
        })
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
            match &c.target {
                Target::Postgres { url } => {
                    if let Ok(cfg) = tokio_postgres::Config::from_str(url) {
                        if let Some(pw) = cfg.get_password() {
                            secrets.add(&String::from_utf8_lossy(pw));
                        }
                    }
                    secrets.add_url_userinfo(url);
                }
                Target::Redis { url } => {
                    if let Ok(info) = redis::IntoConnectionInfo::into_connection_info(url.as_str())
                    {
                        if let Some(pw) = info.redis.password {
                            secrets.add(&pw);
                        }
                    }
                    secrets.add_url_userinfo(url);
                }
                Target::Http { url, .. } => secrets.add_url_userinfo(&url.to_string()),
                _ => {}
            }
        }
        if let Notify::Http { url } = &self.drain.notify {
            secrets.add_url_userinfo(&url.to_string());
        }
        secrets
    }
}

/// Reads and validates the file at `path` (environment from the process).
pub fn load(path: &Path) -> Result<Config> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::new(
            "config",
            format!("cannot read {}: {}", path.display(), io_reason(&e)),
        )
    })?;
    let env = |name: &str| std::env::var(name).ok();
    parse(&text, &env)
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// Parses and validates a config document. `env` looks up `${VAR}`s (and
/// `BERTH_LISTEN`), injectable so tests need not mutate the process environment.
pub fn parse(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config> {
    let doc: Value = if text.trim().is_empty() {
        Value::Mapping(Mapping::new())
    } else {
        serde_yaml::from_str(text).map_err(|e| {
            let at = e
                .location()
                .map(|l| format!(" at line {} column {}", l.line(), l.column()))
                .unwrap_or_default();
            // serde_yaml's message can quote the offending text (a secret, maybe): keep only the position.
            ConfigError::new("config", format!("not valid YAML{at}"))
        })?
    };
    let doc = match doc {
        Value::Null => Value::Mapping(Mapping::new()),
        other => other,
    };
    let p = Parser { env };
    p.config(&doc)
}

struct Parser<'a> {
    env: &'a dyn Fn(&str) -> Option<String>,
}

const TOP_KEYS: &[&str] = &[
    "listen",
    "mode",
    "token",
    "checks",
    "startup",
    "drain",
    "lifecycle",
];
const CHECK_COMMON: &[&str] = &[
    "name",
    "type",
    "critical",
    "interval",
    "timeout",
    "failureThreshold",
    "successThreshold",
];

impl Parser<'_> {
    fn config(&self, doc: &Value) -> Result<Config> {
        let top = as_map(doc, "config")?;
        known_keys(top, "", TOP_KEYS)?;

        let listen_text = match (self.env)("BERTH_LISTEN") {
            Some(v) if !v.is_empty() => v,
            _ => self
                .string(top, "", "listen")?
                .unwrap_or_else(|| DEFAULT_LISTEN.into()),
        };
        let listen = listen_text
            .parse::<SocketAddr>()
            .map_err(|_| ConfigError::new("listen", "must be an address like 0.0.0.0:8642"))?;

        let mode = match self.string(top, "", "mode")?.as_deref() {
            None | Some("regular") => Mode::Regular,
            Some("native") => Mode::Native,
            Some(other) => {
                return Err(ConfigError::new(
                    "mode",
                    format!("must be native or regular, not {other:?}"),
                ))
            }
        };

        let token = self.string(top, "", "token")?.filter(|t| !t.is_empty());

        let mut checks = Vec::new();
        if let Some(list) = top.get("checks") {
            let items = match list {
                Value::Sequence(s) => s.as_slice(),
                Value::Null => &[],
                _ => return Err(ConfigError::new("checks", "must be a list")),
            };
            let mut names = HashSet::new();
            for (i, item) in items.iter().enumerate() {
                let path = format!("checks[{i}]");
                let check = self.check(item, &path)?;
                if !names.insert(check.name.clone()) {
                    return Err(ConfigError::new(
                        format!("{path}.name"),
                        format!("duplicate check name {:?}", check.name),
                    ));
                }
                checks.push(check);
            }
        }
        let known: HashSet<&str> = checks.iter().map(|c| c.name.as_str()).collect();

        let mut startup_wait_for: Vec<String> = checks
            .iter()
            .filter(|c| c.critical)
            .map(|c| c.name.clone())
            .collect();
        if let Some(startup) = top.get("startup") {
            let m = as_map(startup, "startup")?;
            known_keys(m, "startup", &["waitFor"])?;
            if let Some(list) = self.names(m, "startup", "waitFor", &known)? {
                startup_wait_for = list;
            }
        }

        let drain = match top.get("drain") {
            None | Some(Value::Null) => DrainSpec {
                delay: Duration::from_secs(5),
                timeout: Duration::from_secs(45),
                notify: Notify::None,
                wait_until_down: Vec::new(),
            },
            Some(v) => self.drain(v, &known)?,
        };

        let lifecycle = match top.get("lifecycle") {
            None | Some(Value::Null) => None,
            Some(v) => Some(self.lifecycle(v, listen)?),
        };

        Ok(Config {
            listen,
            mode,
            token,
            checks,
            startup_wait_for,
            drain,
            lifecycle,
        })
    }

    fn lifecycle(&self, v: &Value, main: SocketAddr) -> Result<LifecycleSpec> {
        let m = as_map(v, "lifecycle")?;
        known_keys(m, "lifecycle", &["listen", "token"])?;
        let listen_text = match (self.env)("BERTH_LIFECYCLE_LISTEN") {
            Some(v) if !v.is_empty() => v,
            _ => self
                .string(m, "lifecycle", "listen")?
                .unwrap_or_else(|| DEFAULT_LIFECYCLE_LISTEN.into()),
        };
        let listen = listen_text.parse::<SocketAddr>().map_err(|_| {
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
        let token = self
            .string(m, "lifecycle", "token")?
            .ok_or_else(|| ConfigError::new("lifecycle.token", "is required"))?;
        // Never quote the token: name the rule only.
        if token.chars().count() < MIN_LIFECYCLE_TOKEN_LEN {
            return Err(ConfigError::new(
                "lifecycle.token",
                format!("must be at least {MIN_LIFECYCLE_TOKEN_LEN} characters"),
            ));
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ConfigError::new(
                "lifecycle.token",
                "must be printable ASCII without spaces (it travels in an HTTP header)",
            ));
        }
        Ok(LifecycleSpec { listen, token })
    }

    fn check(&self, item: &Value, path: &str) -> Result<CheckSpec> {
        let m = as_map(item, path)?;
        let name = self
            .string(m, path, "name")?
            .ok_or_else(|| ConfigError::new(format!("{path}.name"), "is required"))?;
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(ConfigError::new(
                format!("{path}.name"),
                "must be non-empty and use only letters, digits, '-', '_' and '.'",
            ));
        }
        let kind = self
            .string(m, path, "type")?
            .ok_or_else(|| ConfigError::new(format!("{path}.type"), "is required"))?;
        let specific: &[&str] = match kind.as_str() {
            "postgres" | "redis" => &["url"],
            "tcp" => &["address"],
            "http" => &["url", "expectStatus"],
            "file" => &["path", "maxAge"],
            "process" => &["command"],
            other => {
                return Err(ConfigError::new(
                    format!("{path}.type"),
                    format!(
                        "unknown check type {other:?} (expected postgres, redis, tcp, http, file or process)"
                    ),
                ))
            }
        };
        let allowed: Vec<&str> = CHECK_COMMON.iter().chain(specific).copied().collect();
        known_keys(m, path, &allowed)?;

        let required = |key: &str| -> Result<String> {
            self.string(m, path, key)?
                .filter(|v| !v.is_empty())
                .ok_or_else(|| {
                    ConfigError::new(
                        format!("{path}.{key}"),
                        format!("is required for a {kind} check"),
                    )
                })
        };
        let target = match kind.as_str() {
            "postgres" => {
                let url = required("url")?;
                validate_postgres_url(&url)
                    .map_err(|m| ConfigError::new(format!("{path}.url"), m))?;
                Target::Postgres { url }
            }
            "redis" => {
                let url = required("url")?;
                validate_redis_url(&url).map_err(|m| ConfigError::new(format!("{path}.url"), m))?;
                Target::Redis { url }
            }
            "tcp" => {
                let address = required("address")?;
                validate_host_port(&address)
                    .map_err(|m| ConfigError::new(format!("{path}.address"), m))?;
                Target::Tcp { address }
            }
            "http" => {
                let url = required("url")?;
                let url =
                    parse_http_url(&url).map_err(|m| ConfigError::new(format!("{path}.url"), m))?;
                let expect_status = match self.string(m, path, "expectStatus")? {
                    None => (200, 399),
                    Some(s) => parse_status_range(&s).ok_or_else(|| {
                        ConfigError::new(
                            format!("{path}.expectStatus"),
                            format!("must be a status or a range like 200-399, not {s:?}"),
                        )
                    })?,
                };
                Target::Http { url, expect_status }
            }
            "file" => {
                let file = required("path")?;
                let max_age = self.duration(m, path, "maxAge")?;
                Target::File {
                    path: PathBuf::from(file),
                    max_age,
                }
            }
            _ => Target::Process {
                command: required("command")?,
            },
        };

        let critical = self.boolean(m, path, "critical")?.unwrap_or(true);
        let interval = self
            .duration(m, path, "interval")?
            .unwrap_or(Duration::from_secs(5));
        let timeout = self
            .duration(m, path, "timeout")?
            .unwrap_or(Duration::from_secs(2));
        if interval.is_zero() {
            return Err(ConfigError::new(
                format!("{path}.interval"),
                "must be greater than 0",
            ));
        }
        if timeout.is_zero() || timeout >= interval {
            return Err(ConfigError::new(
                format!("{path}.timeout"),
                format!(
                    "must be greater than 0 and below interval ({} is not below {})",
                    fmt_duration(timeout),
                    fmt_duration(interval)
                ),
            ));
        }
        let failure_threshold = self.threshold(m, path, "failureThreshold")?.unwrap_or(3);
        let success_threshold = self.threshold(m, path, "successThreshold")?.unwrap_or(1);
        Ok(CheckSpec {
            name,
            target,
            critical,
            interval,
            timeout,
            failure_threshold,
            success_threshold,
        })
    }

    fn drain(&self, v: &Value, known: &HashSet<&str>) -> Result<DrainSpec> {
        let m = as_map(v, "drain")?;
        known_keys(m, "drain", &["delay", "timeout", "notify", "waitUntilDown"])?;
        let delay = self
            .duration(m, "drain", "delay")?
            .unwrap_or(Duration::from_secs(5));
        let timeout = self
            .duration(m, "drain", "timeout")?
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
        let notify = match m.get("notify") {
            None | Some(Value::Null) => Notify::None,
            Some(n) => self.notify(n)?,
        };
        let wait_until_down = self
            .names(m, "drain", "waitUntilDown", known)?
            .unwrap_or_default();
        Ok(DrainSpec {
            delay,
            timeout,
            notify,
            wait_until_down,
        })
    }

    fn notify(&self, v: &Value) -> Result<Notify> {
        let path = "drain.notify";
        let m = as_map(v, path)?;
        let kind = self
            .string(m, path, "type")?
            .ok_or_else(|| ConfigError::new("drain.notify.type", "is required"))?;
        match kind.as_str() {
            "none" => {
                known_keys(m, path, &["type"])?;
                Ok(Notify::None)
            }
            "signal" => {
                known_keys(m, path, &["type", "process", "signal", "waitForExit"])?;
                let process = self
                    .string(m, path, "process")?
                    .filter(|p| !p.is_empty())
                    .ok_or_else(|| {
                        ConfigError::new("drain.notify.process", "is required for type signal")
                    })?;
                let signal = match self.string(m, path, "signal")? {
                    None => nix::sys::signal::Signal::SIGTERM,
                    Some(s) => parse_signal(&s).ok_or_else(|| {
                        ConfigError::new(
                            "drain.notify.signal",
                            format!(
                                "unknown signal {s:?} (e.g. SIGTERM, SIGINT, SIGQUIT, SIGUSR1)"
                            ),
                        )
                    })?,
                };
                let wait_for_exit = self.boolean(m, path, "waitForExit")?.unwrap_or(false);
                Ok(Notify::Signal {
                    process,
                    signal,
                    wait_for_exit,
                })
            }
            "http" => {
                known_keys(m, path, &["type", "url"])?;
                let url = self.string(m, path, "url")?.ok_or_else(|| {
                    ConfigError::new("drain.notify.url", "is required for type http")
                })?;
                let url = parse_http_url(&url)
                    .map_err(|msg| ConfigError::new("drain.notify.url", msg))?;
                Ok(Notify::Http { url })
            }
            other => Err(ConfigError::new(
                "drain.notify.type",
                format!("must be signal, http or none, not {other:?}"),
            )),
        }
    }

    /// A scalar as a string, with `${...}` expanded. Numbers and booleans are
    /// accepted as their text (a token may well be all digits).
    fn string(&self, m: &Mapping, path: &str, key: &str) -> Result<Option<String>> {
        let field = join(path, key);
        let raw = match m.get(key) {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::Bool(b)) => b.to_string(),
            Some(_) => return Err(ConfigError::new(field, "must be a string")),
        };
        expand(&raw, self.env)
            .map(Some)
            .map_err(|msg| ConfigError::new(field, msg))
    }

    fn duration(&self, m: &Mapping, path: &str, key: &str) -> Result<Option<Duration>> {
        if let Some(Value::Number(n)) = m.get(key) {
            return Err(ConfigError::new(
                join(path, key),
                format!("bad duration {n}: give a unit, e.g. \"{n}s\""),
            ));
        }
        match self.string(m, path, key)? {
            None => Ok(None),
            Some(s) => parse_duration(&s).map(Some).ok_or_else(|| {
                ConfigError::new(
                    join(path, key),
                    format!("bad duration {s:?} (expected e.g. 500ms, 5s, 1m)"),
                )
            }),
        }
    }

    fn boolean(&self, m: &Mapping, path: &str, key: &str) -> Result<Option<bool>> {
        match m.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(_)) => match self.string(m, path, key)?.as_deref() {
                Some("true") => Ok(Some(true)),
                Some("false") => Ok(Some(false)),
                _ => Err(ConfigError::new(join(path, key), "must be true or false")),
            },
            Some(_) => Err(ConfigError::new(join(path, key), "must be true or false")),
        }
    }

    fn threshold(&self, m: &Mapping, path: &str, key: &str) -> Result<Option<u32>> {
        match self.string(m, path, key)? {
            None => Ok(None),
            Some(s) => match s.parse::<u32>() {
                Ok(n) if n >= 1 => Ok(Some(n)),
                _ => Err(ConfigError::new(
                    join(path, key),
                    format!("must be a whole number >= 1, not {s:?}"),
                )),
            },
        }
    }

    /// A list of check names that must all exist.
    fn names(
        &self,
        m: &Mapping,
        path: &str,
        key: &str,
        known: &HashSet<&str>,
    ) -> Result<Option<Vec<String>>> {
        let field = join(path, key);
        let items = match m.get(key) {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Sequence(s)) => s,
            Some(_) => return Err(ConfigError::new(field, "must be a list of check names")),
        };
        let mut out = Vec::new();
        for item in items {
            let name = match item {
                Value::String(s) => s.clone(),
                _ => return Err(ConfigError::new(field, "must be a list of check names")),
            };
            if !known.contains(name.as_str()) {
                return Err(ConfigError::new(field, format!("unknown check {name:?}")));
            }
            if !out.contains(&name) {
                out.push(name);
            }
        }
        Ok(Some(out))
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn as_map<'v>(v: &'v Value, path: &str) -> Result<&'v Mapping> {
    match v {
        Value::Mapping(m) => Ok(m),
        _ => Err(ConfigError::new(path, "must be a mapping")),
    }
}

fn known_keys(m: &Mapping, path: &str, allowed: &[&str]) -> Result<()> {
    for key in m.keys() {
        match key {
            Value::String(k) if allowed.contains(&k.as_str()) => {}
            Value::String(k) => {
                return Err(ConfigError::new(
                    join(path, k),
                    format!("unknown key (expected one of: {})", allowed.join(", ")),
                ))
            }
            _ => return Err(ConfigError::new(path, "keys must be strings")),
        }
    }
    Ok(())
}

/// Expands `${VAR}` from the environment and `${file:/path}` from a file
/// (one trailing newline removed, as `kubectl create secret --from-file`
/// users rarely mean it). `$${` is a literal `${`. A missing variable is an
/// error, never an empty string: an empty password would fail much later
/// and far less clearly.
pub fn expand(
    raw: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> std::result::Result<String, String> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(stripped) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = stripped;
        } else if let Some(body) = after.strip_prefix("${") {
            let end = body
                .find('}')
                .ok_or_else(|| "unterminated ${ (missing })".to_string())?;
            let reference = &body[..end];
            if let Some(file) = reference.strip_prefix("file:") {
                let content = std::fs::read_to_string(file)
                    .map_err(|e| format!("cannot read ${{file:{file}}}: {}", io_reason(&e)))?;
                let content = content
                    .strip_suffix('\n')
                    .map(|c| c.strip_suffix('\r').unwrap_or(c))
                    .unwrap_or(&content);
                out.push_str(content);
            } else {
                let valid = !reference.is_empty()
                    && !reference.starts_with(|c: char| c.is_ascii_digit())
                    && reference
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !valid {
                    return Err(format!("bad reference ${{{reference}}}"));
                }
                let value = env(reference)
                    .ok_or_else(|| format!("environment variable {reference} is not set"))?;
                out.push_str(&value);
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// `500ms`, `5s`, `1m`, `1h`, `1m30s`, `1.5s`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s.is_empty() {
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
        total += Duration::from_secs_f64(part);
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

fn parse_status_range(s: &str) -> Option<(u16, u16)> {
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

// Validation messages never repeat the URL: it may hold a password.
// Both parsers also read the `sslrootcert` CA file, so a missing one is a
// configuration error rather than a check that can never pass.
fn validate_postgres_url(url: &str) -> std::result::Result<(), String> {
    berth_tls::pg::parse(url)
        .map(drop)
        .map_err(|e| e.to_string())
}

fn validate_redis_url(url: &str) -> std::result::Result<(), String> {
    berth_tls::redis_tls::client(url)
        .map(drop)
        .map_err(|e| e.to_string())
}

fn validate_host_port(address: &str) -> std::result::Result<(), String> {
    let bad = || format!("must be host:port, not {address:?}");
    let (host, port) = address.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || port.parse::<u16>().map(|p| p == 0).unwrap_or(true) {
        return Err(bad());
    }
    Ok(())
}

fn parse_http_url(url: &str) -> std::result::Result<http::Uri, String> {
    let bad = "not a valid http:// URL (http://host:port/path)";
    let uri: http::Uri = url.parse().map_err(|_| bad.to_string())?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => return Err("https is not supported (berth has no TLS client)".into()),
        _ => return Err(bad.into()),
    }
    if uri.host().map(str::is_empty).unwrap_or(true) {
        return Err(bad.into());
    }
    Ok(uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn err(yaml: &str) -> ConfigError {
        match parse(yaml, &no_env) {
            Ok(_) => panic!("expected an error for {yaml}"),
            Err(e) => e,
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("5x"), None);
        assert_eq!(parse_duration("s"), None);
    }

    #[test]
    fn defaults() {
        let c = parse(
            "checks:\n  - {name: a, type: tcp, address: 'x:1'}\n",
            &no_env,
        )
        .expect("valid");
        assert_eq!(c.listen.port(), 8642);
        assert_eq!(c.mode, Mode::Regular);
        let a = &c.checks[0];
        assert!(a.critical);
        assert_eq!(a.interval, Duration::from_secs(5));
        assert_eq!(a.timeout, Duration::from_secs(2));
        assert_eq!((a.failure_threshold, a.success_threshold), (3, 1));
        assert_eq!(c.startup_wait_for, vec!["a".to_string()]);
        assert_eq!(c.drain.delay, Duration::from_secs(5));
        assert_eq!(c.drain.timeout, Duration::from_secs(45));
    }

    #[test]
    fn expansion() {
        let env = |k: &str| (k == "A").then(|| "x$y".to_string());
        assert_eq!(expand("p-${A}-q", &env).as_deref(), Ok("p-x$y-q"));
        assert_eq!(expand("$${A}", &env).as_deref(), Ok("${A}"));
        assert_eq!(expand("a$b", &env).as_deref(), Ok("a$b"));
        assert!(expand("${B}", &env)
            .expect_err("unset")
            .contains("B is not set"));
        assert!(expand("${A", &env).is_err());
    }

    #[test]
    fn lifecycle_needs_a_long_token_and_its_own_port() {
        assert!(parse("", &no_env).expect("valid").lifecycle.is_none());
        let c = parse("lifecycle: {token: 0123456789abcdef}", &no_env).expect("valid");
        let lc = c.lifecycle.expect("lifecycle");
        assert_eq!(lc.listen.to_string(), DEFAULT_LIFECYCLE_LISTEN);
        assert_eq!(lc.token, "0123456789abcdef");
        let e = err("lifecycle: {token: short-secret}");
        assert_eq!(e.field, "lifecycle.token");
        assert!(!e.message.contains("short-secret"), "{e}");
        assert_eq!(
            err("lifecycle: {listen: 0.0.0.0:9}").field,
            "lifecycle.token"
        );
        assert_eq!(
            err("lifecycle: {listen: 0.0.0.0:8642, token: 0123456789abcdef}").field,
            "lifecycle.listen"
        );
        assert_eq!(
            err("lifecycle: {token: \"0123456789 abcdef\"}").field,
            "lifecycle.token"
        );
        assert_eq!(err("lifecycle: {tokn: x}").field, "lifecycle.tokn");
        let e = parse("lifecycle: {token: \"${T}\"}", &|v| {
            (v == "T").then(|| "tiny".to_string())
        })
        .expect_err("too short");
        assert!(!e.to_string().contains("tiny"), "{e}");
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(err("bogus: 1").field, "bogus");
        assert_eq!(
            err("checks:\n  - {name: a, type: tcp, address: 'x:1', interval: 1s, timeout: 1s}")
                .field,
            "checks[0].timeout"
        );
        assert_eq!(
            err("checks:\n  - {name: a, type: tcp, address: 'x:1', interval: 5}").field,
            "checks[0].interval"
        );
        assert_eq!(
            err("checks:\n  - {name: a, type: tcp, address: 'x:1'}\n  - {name: a, type: tcp, address: 'x:1'}").field,
            "checks[1].name"
        );
        assert_eq!(
            err("checks:\n  - {name: a, type: mongo}").field,
            "checks[0].type"
        );
        assert_eq!(
            err("checks:\n  - {name: a, type: postgres, url: 'postgres://u:secret@h:x/d'}").field,
            "checks[0].url"
        );
        assert_eq!(
            err("checks:\n  - {name: a, type: tcp, address: 'x:1'}\nstartup:\n  waitFor: [b]")
                .field,
            "startup.waitFor"
        );
        assert_eq!(
            err("drain:\n  notify: {type: signal, process: x, signal: SIGNOPE}").field,
            "drain.notify.signal"
        );
    }

    #[test]
    fn url_errors_do_not_echo_the_password() {
        let e = err("checks:\n  - {name: a, type: postgres, url: 'postgres://u:secret@h:x/d'}");
        assert!(!e.to_string().contains("secret"), "{e}");
    }
}
