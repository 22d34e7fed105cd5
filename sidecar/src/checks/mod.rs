//! Check types and the background loop that runs each check.
//!
//! A check type is one file in this folder and one line in [`TYPES`]: the
//! file defines how its keys are read ([`CheckType::parse`], serde derive
//! plus [`Cx`] for values), what it remembers ([`CheckDef`]) and how one
//! attempt runs ([`Probe`]). Everything else (intervals, jitter, timeouts,
//! thresholds, state, redaction of the answer) is shared and lives here or
//! in [`crate::state`].
//!
//! Every check runs in its own task on its own (jittered) interval, under a
//! hard `timeout`: a dependency that accepts a TCP connection and then says
//! nothing is a `timeout` failure, and the half-open connection is dropped
//! ([`Probe::reset`]) so the next run starts clean. Connection-oriented
//! probes keep one connection between runs (a health check should not cost
//! a TLS handshake and an authentication every five seconds) and reconnect
//! after any error.

mod amqp;
mod dns;
mod file;
mod grpc;
mod http;
mod https;
mod mysql;
mod nats;
mod postgres;
mod process;
mod redis;
mod tcp;
mod wire;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::{CheckSpec, ConfigError, Cx};
use crate::redact::{CheckError, Secrets};
use crate::state::{CheckCell, Health};

/// Every check type berth knows, by its `type:` name.
pub const TYPES: &[CheckType] = &[
    postgres::TYPE,
    redis::TYPE,
    tcp::TYPE,
    http::TYPE,
    https::TYPE,
    grpc::TYPE,
    file::TYPE,
    process::TYPE,
    mysql::TYPE,
    amqp::TYPE,
    nats::TYPE,
    dns::TYPE,
];

/// The JSON Schema of every type-specific key, for the chart's values
/// schema (`berth schema`, `charts/generate-check-schema.sh`). One table, so
/// a new key must say its shape; a test fails on a key missing here.
pub const KEY_SCHEMAS: &[(&str, &str)] = &[
    ("url", r#"{"type":"string"}"#),
    ("address", r#"{"type":"string"}"#),
    ("path", r#"{"type":"string"}"#),
    ("command", r#"{"type":"string"}"#),
    ("host", r#"{"type":"string"}"#),
    ("service", r#"{"type":"string"}"#),
    ("authority", r#"{"type":"string"}"#),
    ("caFile", r#"{"type":"string"}"#),
    ("clientCert", r#"{"type":"string"}"#),
    ("clientKey", r#"{"type":"string"}"#),
    ("insecureSkipVerify", r#"{"type":"boolean"}"#),
    ("tls", r#"{"type":"boolean"}"#),
    ("expectStatus", r#"{"type":["string","integer"]}"#),
    ("maxAge", r##"{"$ref":"#/$defs/duration"}"##),
    ("expect", r#"{"type":"array","items":{"type":"string"}}"#),
];

/// What `berth schema` prints: every check type with its keys (the first
/// is required), the common keys, and each key's JSON Schema. The chart's
/// `berth-lib.checkTypes`/`checkKeys` and its values schema are generated
/// from it, so the chart and berth accept the same checks.
pub fn schema() -> serde_json::Value {
    let types: serde_json::Map<String, serde_json::Value> = TYPES
        .iter()
        .map(|t| {
            (
                t.name.to_string(),
                serde_json::json!({"required": t.keys.first(), "keys": t.keys}),
            )
        })
        .collect();
    let keys: serde_json::Map<String, serde_json::Value> = KEY_SCHEMAS
        .iter()
        .map(|(k, s)| {
            (
                k.to_string(),
                serde_json::from_str(s).unwrap_or(serde_json::Value::Null),
            )
        })
        .collect();
    serde_json::json!({
        "common": crate::config::CHECK_COMMON,
        "types": types,
        "keys": keys,
    })
}

/// Reads a type's own keys (`fields`) of the check at `path`.
pub type ParseFn = fn(
    fields: &serde_yaml_ng::Mapping,
    path: &str,
    cx: &Cx,
) -> Result<Arc<dyn CheckDef>, ConfigError>;

/// A check type: its name, its own keys, and how to read them.
pub struct CheckType {
    pub name: &'static str,
    /// Keys besides the common ones (name, type, critical, interval, …).
    pub keys: &'static [&'static str],
    /// Reads the type's own keys (`fields`) of the check at `path`.
    pub parse: ParseFn,
}

/// A validated check definition. `Debug` output doubles as its identity
/// for config reloads (equal output = same check, state kept), so it must
/// show every setting; it is never printed.
pub trait CheckDef: fmt::Debug + Send + Sync {
    fn kind(&self) -> &'static str;
    /// A fresh client for this check; `timeout` bounds each attempt.
    fn probe(&self, timeout: Duration) -> Box<dyn Probe>;
    /// Credentials in this definition, scrubbed from every error text.
    fn add_secrets(&self, _secrets: &mut Secrets) {}
    /// The process a `process` check watches (the main container's, to signal on drain).
    fn process_name(&self) -> Option<&str> {
        None
    }
}

/// One check's client side: one attempt at a time.
pub trait Probe: Send {
    /// Runs the check once. The caller bounds it with the check's timeout.
    fn check<'a>(&'a mut self, secrets: &'a Secrets) -> BoxFuture<'a, Result<(), CheckError>>;
    /// Drops any connection after a timeout: a half-answered protocol
    /// exchange cannot be trusted for the next run.
    fn reset(&mut self) {}
}

/// The HTTP client of `http` checks and `http` drain notification.
pub type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// While draining, checks listed in `drain.waitUntilDown` run at least this often,
/// so the prestop call notices the main app going idle promptly.
pub const DRAIN_INTERVAL: Duration = Duration::from_millis(250);

pub fn http_client(connect_timeout: Duration) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(connect_timeout));
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(1)
        .build(connector)
}

/// The first `std::io::Error` in an error's source chain.
pub(crate) fn io_source<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a std::io::Error> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        cur = err.source();
    }
    None
}

/// Runs one check on its interval until `stop` turns true, writing into `cell`.
pub async fn run_checker(
    health: Arc<Health>,
    cell: Arc<CheckCell>,
    spec: CheckSpec,
    secrets: Arc<Secrets>,
    fast_when_draining: bool,
    mut stop: watch::Receiver<bool>,
) {
    let mut probe = spec.def.probe(spec.timeout);
    let mut draining = health.subscribe_draining();
    let mut jitter = Jitter::new(spec.name.len() as u64 ^ Arc::as_ptr(&cell) as u64);
    loop {
        health.beat_cell(&cell);
        let started = Instant::now();
        let result = match tokio::time::timeout(spec.timeout, probe.check(&secrets)).await {
            Ok(r) => r,
            Err(_) => {
                probe.reset();
                Err(CheckError::new(
                    "timeout",
                    format!(
                        "no answer within {}",
                        crate::config::fmt_duration(spec.timeout)
                    ),
                ))
            }
        };
        health.record_cell(&cell, result, started.elapsed());

        let fast = fast_when_draining && *draining.borrow();
        let wait = if fast {
            spec.interval.min(DRAIN_INTERVAL)
        } else {
            jitter.spread(spec.interval)
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            r = stop.wait_for(|s| *s) => { let _ = r; break; }
            // Draining just started: re-check at once, then at the fast pace.
            r = draining.changed(), if fast_when_draining && !fast => {
                if r.is_err() { break; }
            }
        }
    }
    probe.reset();
}

/// Spawns one checker task per configured check (the cells of `health`,
/// which must be in the order of `specs`).
pub fn spawn_all(
    health: &Arc<Health>,
    specs: &[CheckSpec],
    fast_when_draining: &[String],
    secrets: &Arc<Secrets>,
    stop: &watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let cells = health.cells();
    specs
        .iter()
        .zip(cells.iter())
        .map(|(spec, cell)| {
            tokio::spawn(run_checker(
                health.clone(),
                cell.clone(),
                spec.clone(),
                secrets.clone(),
                fast_when_draining.contains(&spec.name),
                stop.clone(),
            ))
        })
        .collect()
}

/// ±10 % spread of intervals so that checks (and the replicas of a
/// Deployment, all started together) do not hit a dependency in lockstep.
struct Jitter(u64);

impl Jitter {
    fn new(salt: u64) -> Jitter {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9e37_79b9);
        Jitter((nanos ^ (salt.wrapping_add(1)).wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1)
    }

    /// xorshift64: plenty for spreading timers.
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn spread(&mut self, interval: Duration) -> Duration {
        let unit = (self.next() % 10_000) as f64 / 10_000.0; // [0, 1)
        interval.mul_f64(0.9 + 0.2 * unit)
    }
}

#[cfg(test)]
mod tests;
