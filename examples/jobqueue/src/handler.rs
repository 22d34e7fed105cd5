//! Job kinds: the [`Registry`] maps a kind name to a [`Handler`], and the
//! built-in kinds `noop`, `sleep`, `fail` and `http`.
//!
//! A handler is any `Fn(JobContext) -> impl Future<Output = Result<(), JobError>>`.
//! Handlers may be dropped mid-way (the worker lost the lease, the job was
//! cancelled, or shutdown timed out): delivery is at-least-once, so a
//! handler with side effects should be idempotent (e.g. key them on
//! [`JobContext::id`]).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

/// What a handler gets to know about its job.
#[derive(Debug, Clone)]
pub struct JobContext {
    pub id: i64,
    pub queue: String,
    pub kind: String,
    pub payload: serde_json::Value,
    /// 1 for the first attempt.
    pub attempt: i32,
    pub max_attempts: i32,
}

impl JobContext {
    /// Deserialises the payload; a mismatch is a permanent failure (retrying
    /// the same bytes cannot help).
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, JobError> {
        serde_json::from_value(self.payload.clone())
            .map_err(|e| JobError::permanent(format!("invalid payload for {}: {e}", self.kind)))
    }
}

/// A failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobError {
    pub message: String,
    /// `false`: go `dead` now instead of retrying.
    pub retryable: bool,
}

impl JobError {
    /// Retried with backoff until `max_attempts`.
    pub fn retry(message: impl Into<String>) -> Self {
        JobError {
            message: message.into(),
            retryable: true,
        }
    }
    /// Not retried: the job goes `dead`.
    pub fn permanent(message: impl Into<String>) -> Self {
        JobError {
            message: message.into(),
            retryable: false,
        }
    }
}

impl std::fmt::Display for JobError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl<E: std::error::Error> From<E> for JobError {
    fn from(e: E) -> Self {
        JobError::retry(e.to_string())
    }
}

pub type JobResult = Result<(), JobError>;
pub type BoxFuture = Pin<Box<dyn Future<Output = JobResult> + Send + 'static>>;

/// Runs one kind of job.
pub trait Handler: Send + Sync + 'static {
    fn run(&self, ctx: JobContext) -> BoxFuture;
}

impl<F, Fut> Handler for F
where
    F: Fn(JobContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = JobResult> + Send + 'static,
{
    fn run(&self, ctx: JobContext) -> BoxFuture {
        Box::pin(self(ctx))
    }
}

/// Kind name → handler.
#[derive(Clone, Default)]
pub struct Registry {
    handlers: HashMap<String, Arc<dyn Handler>>,
}

impl Registry {
    /// An empty registry (no built-ins).
    pub fn new() -> Self {
        Registry::default()
    }

    /// The built-in kinds: `noop`, `sleep`, `fail`, `http`.
    pub fn with_builtins() -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        Registry::new()
            .register("noop", |_ctx: JobContext| async { Ok(()) })
            .register("sleep", sleep)
            .register("fail", fail)
            .register("http", move |ctx: JobContext| {
                http_delivery(http.clone(), ctx)
            })
    }

    /// Adds (or replaces) the handler for `kind`.
    pub fn register(mut self, kind: impl Into<String>, handler: impl Handler) -> Self {
        self.handlers.insert(kind.into(), Arc::new(handler));
        self
    }

    pub fn get(&self, kind: &str) -> Option<Arc<dyn Handler>> {
        self.handlers.get(kind).cloned()
    }

    pub fn kinds(&self) -> Vec<String> {
        let mut k: Vec<String> = self.handlers.keys().cloned().collect();
        k.sort();
        k
    }
}

#[derive(Deserialize)]
struct SleepPayload {
    #[serde(default)]
    ms: u64,
}

async fn sleep(ctx: JobContext) -> JobResult {
    let p: SleepPayload = ctx.parse()?;
    tokio::time::sleep(Duration::from_millis(p.ms)).await;
    Ok(())
}

#[derive(Deserialize)]
struct FailPayload {
    #[serde(default)]
    times: i64,
}

/// Fails the first `times` attempts, then succeeds.
async fn fail(ctx: JobContext) -> JobResult {
    let p: FailPayload = ctx.parse()?;
    if i64::from(ctx.attempt) <= p.times {
        return Err(JobError::retry(format!(
            "failing on purpose (attempt {} of the first {})",
            ctx.attempt, p.times
        )));
    }
    Ok(())
}

#[derive(Deserialize)]
struct HttpPayload {
    url: String,
    #[serde(default = "default_method")]
    method: String,
    #[serde(default)]
    headers: HashMap<String, String>,
    #[serde(default)]
    body: Option<serde_json::Value>,
}

fn default_method() -> String {
    "POST".into()
}

/// Webhook delivery: 2xx = success, 4xx (except 408/429) = permanent
/// failure, anything else = retry.
async fn http_delivery(client: reqwest::Client, ctx: JobContext) -> JobResult {
    let p: HttpPayload = ctx.parse()?;
    let method = reqwest::Method::from_bytes(p.method.to_ascii_uppercase().as_bytes())
        .map_err(|_| JobError::permanent(format!("invalid method {:?}", p.method)))?;
    if !(p.url.starts_with("http://") || p.url.starts_with("https://")) {
        return Err(JobError::permanent("url must be http:// or https://"));
    }
    let mut req = client.request(method, &p.url);
    for (k, v) in &p.headers {
        req = req.header(k, v);
    }
    req = req.header("x-jobqueue-job-id", ctx.id.to_string());
    match &p.body {
        Some(serde_json::Value::String(s)) => req = req.body(s.clone()),
        Some(v) => req = req.json(v),
        None => {}
    }
    let resp = req
        .send()
        .await
        .map_err(|e| JobError::retry(format!("request failed: {}", error_chain(&e))))?;
    let status = resp.status();
    if status.is_success() {
        Ok(())
    } else if status.is_client_error() && status.as_u16() != 408 && status.as_u16() != 429 {
        Err(JobError::permanent(format!("endpoint answered {status}")))
    } else {
        Err(JobError::retry(format!("endpoint answered {status}")))
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(kind: &str, payload: serde_json::Value, attempt: i32) -> JobContext {
        JobContext {
            id: 1,
            queue: "default".into(),
            kind: kind.into(),
            payload,
            attempt,
            max_attempts: 5,
        }
    }

    #[tokio::test]
    async fn fail_kind_fails_first_n_attempts() {
        let r = Registry::with_builtins();
        let h = r.get("fail").expect("fail kind");
        let p = serde_json::json!({"times": 2});
        assert!(h.run(ctx("fail", p.clone(), 1)).await.is_err());
        assert!(h.run(ctx("fail", p.clone(), 2)).await.is_err());
        assert!(h.run(ctx("fail", p, 3)).await.is_ok());
        let bad = h
            .run(ctx("fail", serde_json::json!({"times": "x"}), 1))
            .await;
        assert!(!bad.expect_err("bad payload").retryable);
    }

    #[tokio::test(start_paused = true)]
    async fn sleep_kind_sleeps() {
        let r = Registry::with_builtins();
        let start = tokio::time::Instant::now();
        r.get("sleep")
            .expect("sleep kind")
            .run(ctx("sleep", serde_json::json!({"ms": 1500}), 1))
            .await
            .expect("sleep ok");
        assert_eq!(start.elapsed(), Duration::from_millis(1500));
        assert_eq!(r.kinds(), vec!["fail", "http", "noop", "sleep"]);
    }
}
