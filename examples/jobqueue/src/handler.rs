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

use std::sync::Mutex;

use serde::Deserialize;

use crate::queue::Queue;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A handler's JSON as PostgreSQL can store it: NUL characters (which
/// jsonb refuses, and the write would fail for ever) become U+FFFD, and a
/// document over [`MAX_OUTPUT_BYTES`] is replaced by a marker.
fn storable(v: serde_json::Value) -> serde_json::Value {
    let text = v.to_string();
    if text.len() > MAX_OUTPUT_BYTES {
        return serde_json::json!({"truncated": true, "bytes": text.len()});
    }
    if !text.contains("\\u0000") {
        return v;
    }
    fn clean(v: serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        match v {
            Value::String(s) => Value::String(s.replace('\0', "\u{FFFD}")),
            Value::Array(a) => Value::Array(a.into_iter().map(clean).collect()),
            Value::Object(m) => Value::Object(
                m.into_iter()
                    .map(|(k, v)| (k.replace('\0', "\u{FFFD}"), clean(v)))
                    .collect(),
            ),
            other => other,
        }
    }
    clean(v)
}

/// What a handler gets to know about its job, and how it reports back:
/// [`JobContext::set_output`] (stored with the success) and
/// [`JobContext::set_progress`] (stored at once).
#[derive(Debug, Clone)]
pub struct JobContext {
    pub id: i64,
    pub queue: String,
    pub kind: String,
    pub payload: serde_json::Value,
    /// 1 for the first attempt.
    pub attempt: i32,
    pub max_attempts: i32,
    io: Arc<JobIo>,
}

/// The handler's channel back to the worker. Shared by the clones of one
/// context, so a handler may hand clones to its own tasks.
#[derive(Debug, Default)]
struct JobIo {
    output: Mutex<Option<serde_json::Value>>,
    /// Where progress goes: the job's row, fenced by the lease token.
    /// `None` outside a worker (`jobqueue::testing`): progress is kept in
    /// memory only.
    sink: Option<(Queue, i64)>,
    last_progress: Mutex<Option<serde_json::Value>>,
}

/// Reads a context's output once its handler is done.
pub(crate) struct OutputHandle(Arc<JobIo>);

impl OutputHandle {
    pub(crate) fn take(&self) -> Option<serde_json::Value> {
        lock(&self.0.output).take()
    }
}

/// The largest output or progress document stored (serialised bytes).
/// Larger ones are replaced by `{"truncated": true, "bytes": n}`: a job
/// row is read by every dashboard refresh and API call.
pub const MAX_OUTPUT_BYTES: usize = 256 * 1024;

impl JobContext {
    /// A context outside a worker: for handlers' unit tests (see
    /// [`crate::testing`]).
    pub fn new(id: i64, kind: impl Into<String>, payload: serde_json::Value) -> Self {
        JobContext {
            id,
            queue: "default".into(),
            kind: kind.into(),
            payload,
            attempt: 1,
            max_attempts: 5,
            io: Arc::new(JobIo::default()),
        }
    }

    /// The worker's context: progress is written to the job's row. Takes
    /// the payload (no copy on the hot path).
    pub(crate) fn for_claim(
        job: &crate::queue::ClaimedJob,
        payload: serde_json::Value,
        queue: Queue,
    ) -> Self {
        JobContext {
            id: job.id,
            queue: job.queue.clone(),
            kind: job.kind.clone(),
            payload,
            attempt: job.attempt,
            max_attempts: job.max_attempts,
            io: Arc::new(JobIo {
                sink: Some((queue, job.lease_token)),
                ..Default::default()
            }),
        }
    }

    /// What the worker keeps to read the output after the handler took
    /// the context.
    pub(crate) fn output_handle(&self) -> OutputHandle {
        OutputHandle(self.io.clone())
    }

    /// This attempt's result document, stored as the job's `output` when it
    /// succeeds (the last call wins).
    pub fn set_output(&self, output: serde_json::Value) {
        *lock(&self.io.output) = Some(storable(output));
    }

    /// What [`JobContext::set_output`] set.
    pub fn output(&self) -> Option<serde_json::Value> {
        lock(&self.io.output).clone()
    }

    /// Reports progress (any JSON, e.g. `{"done": 40, "total": 100}`):
    /// written to the job's `progress` at once, where the API and the
    /// dashboard show it. Fenced by the lease: once the job was taken from
    /// this worker, the write is dropped. A database error is returned as
    /// a retryable [`JobError`], so `?` works in a handler.
    pub async fn set_progress(&self, progress: serde_json::Value) -> Result<(), JobError> {
        let progress = storable(progress);
        *lock(&self.io.last_progress) = Some(progress.clone());
        if let Some((queue, token)) = &self.io.sink {
            queue
                .set_progress(self.id, *token, &progress)
                .await
                .map_err(|e| JobError::retry(format!("storing progress failed: {e}")))?;
        }
        Ok(())
    }

    /// The last progress reported by this attempt.
    pub fn progress(&self) -> Option<serde_json::Value> {
        lock(&self.io.last_progress).clone()
    }

    /// Deserialises the payload; a mismatch is a permanent failure (retrying
    /// the same bytes cannot help).
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, JobError> {
        serde_json::from_value(self.payload.clone())
            .map_err(|e| JobError::permanent(format!("invalid payload for {}: {e}", self.kind)))
    }
}

/// A failed attempt. Its message is stored as the job's `last_error`;
/// the worker's own failures start with their kind (`timeout: …`).
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
    /// The handler ran past the job's `timeout_seconds` and was aborted
    /// (error kind `timeout`; retried like any failure).
    pub fn timeout(seconds: i32) -> Self {
        JobError::retry(format!(
            "timeout: the handler did not finish within {seconds} s and was aborted"
        ))
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

    /// The built-in kinds: `noop`, `sleep`, `fail`, `http`, `echo`.
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
            .register_returning("echo", |ctx: JobContext| async move { Ok(ctx.payload) })
    }

    /// Adds a handler that returns its output: the value is stored as the
    /// job's `output` when it succeeds.
    pub fn register_returning<F, Fut>(self, kind: impl Into<String>, handler: F) -> Self
    where
        F: Fn(JobContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<serde_json::Value, JobError>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        self.register(kind, move |ctx: JobContext| {
            let handler = handler.clone();
            async move {
                let output = handler(ctx.clone()).await?;
                ctx.set_output(output);
                Ok(())
            }
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
        let mut c = JobContext::new(1, kind, payload);
        c.attempt = attempt;
        c
    }

    #[tokio::test]
    async fn echo_returns_its_payload_and_output_is_storable() {
        let r = Registry::with_builtins();
        let c = ctx("echo", serde_json::json!({"a": [1, "x\u{0}y"]}), 1);
        r.get("echo")
            .expect("echo")
            .run(c.clone())
            .await
            .expect("ok");
        assert_eq!(
            c.output(),
            Some(serde_json::json!({"a": [1, "x\u{FFFD}y"]}))
        );
        let big = serde_json::Value::String("x".repeat(MAX_OUTPUT_BYTES + 1));
        c.set_output(big);
        assert_eq!(
            c.output().and_then(|o| o.get("truncated").cloned()),
            Some(serde_json::json!(true))
        );
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
        assert_eq!(r.kinds(), vec!["echo", "fail", "http", "noop", "sleep"]);
    }
}
