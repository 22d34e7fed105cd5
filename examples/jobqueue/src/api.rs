//! The HTTP API (examples/jobqueue/README.md): submit, inspect, cancel and retry jobs, queue
//! depths, cron schedules (`api_schedules.rs`), plus `/healthz`, `/readyz` and `/metrics`.
//!
//! Every error is `{"error":{"code","message"}}` with a client-safe message
//! (database details are logged, not returned). Request bodies are parsed
//! by [`JsonBody`], not axum's `Json`, so malformed JSON, a wrong
//! content type or an oversized body produce the same JSON error shape.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{
    ConnectInfo, DefaultBodyLimit, FromRequest, FromRequestParts, MatchedPath, Path, Query,
    Request, State,
};
use axum::http::{header, request::Parts, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::config::{ApiConfig, DbConfig};
use crate::job::{Job, NewJob, Status};
use crate::metrics::Metrics;
use crate::queue::{ListFilter, Queue, QueueError};
use crate::ratelimit::RateLimiter;
use crate::shutdown::Shutdown;

pub mod openapi;

/// Errors returned to API clients.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("missing or invalid bearer token")]
    Unauthorized,
    #[error("{0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{0}")]
    Conflict(String),
    #[error("request body too large (limit {0} bytes)")]
    PayloadTooLarge(usize),
    #[error("rate limit exceeded; retry later")]
    RateLimited,
    #[error("{0}")]
    Unavailable(String),
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::RateLimited => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.parts();
        let body = Json(serde_json::json!({"error": {"code": code, "message": self.to_string()}}));
        let mut resp = (status, body).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if matches!(
            status,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
        ) {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> Self {
        match e {
            QueueError::NotFound => ApiError::NotFound("job not found".into()),
            QueueError::Conflict(m) => ApiError::Conflict(m),
            QueueError::Invalid(m) => ApiError::BadRequest(m),
            QueueError::Rejected(f) => {
                // The client sent something PostgreSQL cannot store that
                // validation did not catch: their fault, not an outage.
                tracing::warn!(sqlstate = f.code(), error = %f.message, "database rejected a value");
                ApiError::BadRequest(format!("a value cannot be stored: {}", f.message))
            }
            QueueError::Db(f) => {
                tracing::error!(sqlstate = f.code(), error = %f.message, "database error");
                ApiError::Unavailable("database unavailable".into())
            }
            QueueError::Pool(e) => {
                tracing::error!(error = %e, "database pool error");
                ApiError::Unavailable("database unavailable".into())
            }
        }
    }
}

/// JSON body extractor with JSON errors (400, 413). Accepts any content
/// type, so `curl -d '{…}'` works without `-H 'Content-Type: …'`.
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let limit = req
            .extensions()
            .get::<BodyLimit>()
            .map(|l| l.0)
            .unwrap_or(0);
        let bytes = Bytes::from_request(req, state).await.map_err(|rej| {
            if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge(limit)
            } else {
                ApiError::BadRequest("could not read the request body".into())
            }
        })?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Parses a body; the error names the field it is about (`jobs[2].group:
/// invalid type…`), because serde's own type errors do not.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.inner().to_string();
        let field = path.rsplit(['.', '[']).next().unwrap_or("");
        // Malformed JSON is about the body, not a field; our own messages
        // start with the field already ("priority: …").
        if e.inner().is_syntax()
            || e.inner().is_eof()
            || path == "."
            || path.is_empty()
            || inner.starts_with(&format!("{field}:"))
        {
            ApiError::BadRequest(format!("invalid JSON body: {inner}"))
        } else {
            ApiError::BadRequest(format!("{path}: {inner}"))
        }
    })
}

#[derive(Clone, Copy)]
struct BodyLimit(usize);

/// Path extractor with JSON errors: axum's `Path` answers a segment that
/// is not UTF-8 (`/api/v1/jobs/%FF`) with a text/plain 400, which breaks
/// the `{"error":…}` contract (and the OpenAPI document).
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| ApiPath(v))
            .map_err(|rej| ApiError::BadRequest(rej.body_text()))
    }
}

/// Who is submitting (for rate limiting): the peer address.
pub struct ClientKey(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ClientKey {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_string())
            .unwrap_or_else(|| "local".into());
        Ok(ClientKey(ip))
    }
}

/// Shared state of the API handlers.
#[derive(Clone)]
pub struct ApiState {
    pub queue: Queue,
    pub metrics: Arc<Metrics>,
    pub limiter: Arc<RateLimiter>,
    pub secret_key: Option<Arc<str>>,
    pub max_batch: usize,
    /// `API_REQUEST_TIMEOUT_SECONDS`: `?wait=` ends before it.
    pub request_timeout: Duration,
    /// Set once shutdown starts: `/readyz` answers 503.
    pub draining: Arc<AtomicBool>,
    /// Result of the background database ping.
    pub db_ok: Arc<AtomicBool>,
}

impl ApiState {
    pub fn new(queue: Queue, cfg: &ApiConfig) -> Self {
        let metrics = Arc::new(Metrics::default());
        let limiter = RateLimiter::new(
            cfg.rate_limit_per_minute,
            cfg.redis_url.as_deref(),
            metrics.clone(),
        );
        ApiState {
            queue,
            metrics,
            limiter,
            secret_key: cfg.secret_key.as_deref().map(Arc::from),
            max_batch: cfg.max_batch,
            request_timeout: cfg.request_timeout,
            draining: Arc::new(AtomicBool::new(false)),
            db_ok: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// Constant-time comparison (the length is not secret).
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn require_auth(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    if let Some(key) = &state.secret_key {
        let presented = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim);
        match presented {
            Some(token) if ct_eq(token.as_bytes(), key.as_bytes()) => {}
            _ => return ApiError::Unauthorized.into_response(),
        }
    }
    next.run(req).await
}

async fn record_latency(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let resp = next.run(req).await;
    metrics
        .http_request_duration_seconds
        .observe(&[&method, &route, resp.status().as_str()], start.elapsed());
    resp
}

/// The full router. `body_limit` bytes per request, `timeout` per request.
pub fn router(state: ApiState, body_limit: usize, timeout: Duration) -> Router {
    let api = Router::new()
        .route("/api/v1/jobs", post(create_job).get(list_jobs))
        .route("/api/v1/jobs/batch", post(create_batch))
        .route("/api/v1/jobs/{id}", get(get_job))
        .route("/api/v1/jobs/{id}/cancel", post(cancel_job))
        .route("/api/v1/jobs/{id}/retry", post(retry_job))
        .route("/api/v1/queues", get(queues))
        .route("/api/v1/queues/{queue}/pause", post(pause_queue))
        .route("/api/v1/queues/{queue}/resume", post(resume_queue))
        .merge(crate::api_schedules::routes())
        .route_layer(middleware::from_fn_with_state(state.clone(), require_auth));
    let ops = Router::new()
        .route("/", get(crate::dashboard::page))
        .route("/dashboard", get(crate::dashboard::page))
        .route("/healthz", get(crate::ops::healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_handler))
        .route("/api/v1/openapi.json", get(openapi::openapi_json));
    let metrics = state.metrics.clone();
    api.merge(ops)
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state)
        .layer(middleware::from_fn_with_state(metrics, record_latency))
        .layer(axum::Extension(BodyLimit(body_limit)))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                .layer(PropagateRequestIdLayer::x_request_id())
                .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
                    let id = req
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("");
                    tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
                }))
                .layer(HandleErrorLayer::new(|_: tower::BoxError| async {
                    ApiError::Unavailable("request timed out".into())
                }))
                .timeout(timeout),
        )
}

/// Prometheus metrics of the API process.
#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses((status = 200, description = "Prometheus text exposition format 0.0.4", content_type = "text/plain", body = String)))]
async fn metrics_handler(State(state): State<ApiState>) -> Response {
    crate::ops::render_metrics(&state.metrics)
}

/// Readiness: the database answered within the last 2 s and not draining.
#[utoipa::path(get, path = "/readyz", tag = "ops", responses(
    (status = 200, description = "Ready", body = openapi::Ready),
    (status = 503, description = "Draining or database unavailable", body = openapi::Ready)))]
async fn readyz(State(state): State<ApiState>) -> Response {
    let (code, status) = if state.draining.load(Ordering::SeqCst) {
        (StatusCode::SERVICE_UNAVAILABLE, "draining")
    } else if !state.db_ok.load(Ordering::SeqCst) {
        (StatusCode::SERVICE_UNAVAILABLE, "database unavailable")
    } else {
        (StatusCode::OK, "ready")
    };
    (
        code,
        [(header::CACHE_CONTROL, "no-store")],
        Json(serde_json::json!({"status": status})),
    )
        .into_response()
}

fn parse_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>().ok().filter(|id| *id > 0).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "invalid job id {raw:?}: expected a positive integer"
        ))
    })
}

/// Submit a job.
#[utoipa::path(post, path = "/api/v1/jobs", tag = "jobs", request_body = NewJob, responses(
    (status = 201, description = "Created", body = Job,
        headers(("location" = String, description = "`/api/v1/jobs/{id}`"))),
    (status = 200, description = "A job with this idempotency_key exists already (the same job): that job", body = Job,
        headers(("location" = String, description = "`/api/v1/jobs/{id}`"))),
    (status = 409, description = "A different job holds this idempotency_key", body = openapi::ErrorBody),
    (status = 429, description = "Rate limited (API_RATE_LIMIT_PER_MINUTE)", body = openapi::ErrorBody)))]
async fn create_job(
    State(state): State<ApiState>,
    ClientKey(client): ClientKey,
    JsonBody(job): JsonBody<NewJob>,
) -> Result<Response, ApiError> {
    if !state.limiter.allow(&client, 1).await {
        state.metrics.api_rate_limited_total.inc(&[]);
        return Err(ApiError::RateLimited);
    }
    let (job, created) = state.queue.enqueue(&job).await?;
    let status = if created {
        state.metrics.job_created_total.inc(&[&job.queue]);
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let location = format!("/api/v1/jobs/{}", job.id);
    Ok((status, [(header::LOCATION, location)], Json(job)).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct BatchRequest {
    /// 1 to `API_MAX_BATCH` jobs (default 1000), enqueued in one transaction.
    #[schema(min_items = 1)]
    jobs: Vec<NewJob>,
}

/// Submit jobs in one transaction (all or none).
#[utoipa::path(post, path = "/api/v1/jobs/batch", tag = "jobs", request_body = BatchRequest, responses(
    (status = 201, description = "Created; ids in input order", body = openapi::BatchCreated),
    (status = 409, description = "A different job holds an idempotency_key", body = openapi::ErrorBody),
    (status = 429, description = "Rate limited (API_RATE_LIMIT_PER_MINUTE)", body = openapi::ErrorBody)))]
async fn create_batch(
    State(state): State<ApiState>,
    ClientKey(client): ClientKey,
    JsonBody(batch): JsonBody<BatchRequest>,
) -> Result<Response, ApiError> {
    if batch.jobs.is_empty() {
        return Err(ApiError::BadRequest("jobs: must not be empty".into()));
    }
    if batch.jobs.len() > state.max_batch {
        return Err(ApiError::BadRequest(format!(
            "jobs: at most {} jobs per batch, got {}",
            state.max_batch,
            batch.jobs.len()
        )));
    }
    if !state.limiter.allow(&client, 1).await {
        state.metrics.api_rate_limited_total.inc(&[]);
        return Err(ApiError::RateLimited);
    }
    let ids = state.queue.enqueue_batch(&batch.jobs).await?;
    let mut per_queue: HashMap<&str, u64> = HashMap::new();
    for j in &batch.jobs {
        *per_queue.entry(j.queue.as_str()).or_default() += 1;
    }
    for (q, n) in per_queue {
        state.metrics.job_created_total.inc_by(&[q], n);
    }
    Ok((StatusCode::CREATED, Json(openapi::BatchCreated { ids })).into_response())
}

/// The longest `?wait=` on `GET /api/v1/jobs/{id}`.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// `30s`, `500ms`, `1m` or a number of seconds; capped at [`MAX_WAIT`].
fn parse_wait(raw: &str) -> Result<Duration, ApiError> {
    let bad = || {
        ApiError::BadRequest(format!(
            "wait: expected a duration like 30s, 500ms or 1m (at most 60 s), got {raw:?}"
        ))
    };
    let (number, unit) = match raw.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => raw.split_at(i),
        None => (raw, "s"),
    };
    let n: f64 = number.parse().map_err(|_| bad())?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(bad()),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(secs.min(MAX_WAIT.as_secs_f64())))
}

/// `GET /api/v1/jobs/{id}[?wait=30s]`: with `wait`, answers as soon as the
/// job is finished (succeeded, dead or cancelled) or when the wait ends
/// (then with the job as it is). The wait also ends before the API's
/// request timeout (`API_REQUEST_TIMEOUT_SECONDS`).
#[utoipa::path(get, path = "/api/v1/jobs/{id}", tag = "jobs", params(
    ("id" = i64, Path, minimum = 1, description = "Job id"),
    ("wait" = Option<String>, Query, pattern = "^([0-9]+(\\.[0-9]*)?|\\.[0-9]+)(ms|s|m)?$", max_length = 32,
        description = "Wait up to this long for the job to finish: `30s`, `500ms`, `1m` or seconds; at most 60 s and less than API_REQUEST_TIMEOUT_SECONDS")),
    responses(
    (status = 200, description = "The job", body = Job),
    (status = 404, description = "No such job", body = openapi::ErrorBody)))]
async fn get_job(
    State(state): State<ApiState>,
    ApiPath(id): ApiPath<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let mut wait = Duration::ZERO;
    for (k, v) in &params {
        match k.as_str() {
            "wait" => wait = parse_wait(v)?,
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown query parameter {other:?}"
                )))
            }
        }
    }
    let wait = wait.min(
        state
            .request_timeout
            .saturating_sub(Duration::from_millis(250)),
    );
    let deadline = tokio::time::Instant::now() + wait;
    let mut poll = Duration::from_millis(20);
    loop {
        let job = state.queue.get(id).await?;
        let finished = matches!(
            job.status,
            Status::Succeeded | Status::Dead | Status::Cancelled
        );
        let now = tokio::time::Instant::now();
        if finished || now >= deadline {
            return Ok(Json(job).into_response());
        }
        // A primary-key read every 20 ms at first, backing off to 250 ms:
        // short jobs answer fast, long waits cost little.
        tokio::time::sleep(poll.min(deadline - now)).await;
        poll = (poll * 2).min(Duration::from_millis(250));
    }
}

/// Jobs, newest first.
#[utoipa::path(get, path = "/api/v1/jobs", tag = "jobs", params(
    ("status" = Option<Status>, Query, description = "Only jobs in this status"),
    ("queue" = Option<String>, Query, pattern = "^[A-Za-z0-9_.:-]{1,128}$", description = "Only jobs of this queue"),
    ("kind" = Option<String>, Query, pattern = "^[A-Za-z0-9_.:-]{1,128}$", description = "Only jobs of this kind"),
    ("limit" = Option<i64>, Query, minimum = 1, maximum = 500, description = "Page size (default 50)"),
    ("cursor" = Option<i64>, Query, description = "`next_cursor` of the previous page")),
    responses((status = 200, description = "A page of jobs", body = openapi::JobList)))]
async fn list_jobs(
    State(state): State<ApiState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let mut filter = ListFilter {
        limit: 50,
        ..Default::default()
    };
    for (k, v) in &params {
        match k.as_str() {
            "status" if !v.is_empty() => {
                filter.status = Some(Status::parse(v).ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "status: expected one of queued, running, succeeded, dead, cancelled; got {v:?}"
                    ))
                })?)
            }
            "queue" if !v.is_empty() => {
                crate::job::validate_name(v).map_err(|m| ApiError::BadRequest(format!("queue: {m}")))?;
                filter.queue = Some(v.clone());
            }
            "limit" => {
                filter.limit = v
                    .parse::<i64>()
                    .ok()
                    .filter(|l| (1..=500).contains(l))
                    .ok_or_else(|| ApiError::BadRequest("limit: must be between 1 and 500".into()))?
            }
            "cursor" if !v.is_empty() => {
                filter.before = Some(
                    v.parse::<i64>()
                        .map_err(|_| ApiError::BadRequest("cursor: invalid cursor".into()))?,
                )
            }
            "kind" if !v.is_empty() => {
                crate::job::validate_name(v).map_err(|m| ApiError::BadRequest(format!("kind: {m}")))?;
                filter.kind = Some(v.clone());
            }
            "status" | "queue" | "cursor" | "kind" => {}
            other => return Err(ApiError::BadRequest(format!("unknown query parameter {other:?}"))),
        }
    }
    let jobs = state.queue.list(&filter).await?;
    let next_cursor = (jobs.len() as i64 == filter.limit)
        .then(|| jobs.last().map(|j| j.id.to_string()))
        .flatten();
    Ok(Json(openapi::JobList { jobs, next_cursor }).into_response())
}

/// Cancel a queued or running job (cancelling a cancelled job is a no-op).
#[utoipa::path(post, path = "/api/v1/jobs/{id}/cancel", tag = "jobs",
    params(("id" = i64, Path, minimum = 1, description = "Job id")), responses(
    (status = 200, description = "The cancelled job", body = Job),
    (status = 404, description = "No such job", body = openapi::ErrorBody),
    (status = 409, description = "The job finished already", body = openapi::ErrorBody)))]
async fn cancel_job(
    State(state): State<ApiState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let job = state.queue.cancel(parse_id(&id)?).await?;
    Ok(Json(job).into_response())
}

/// Put a dead or cancelled job back in the queue with its attempts reset.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/retry", tag = "jobs",
    params(("id" = i64, Path, minimum = 1, description = "Job id")), responses(
    (status = 200, description = "The queued job", body = Job),
    (status = 404, description = "No such job", body = openapi::ErrorBody),
    (status = 409, description = "The job is neither dead nor cancelled", body = openapi::ErrorBody)))]
async fn retry_job(
    State(state): State<ApiState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let job = state.queue.retry(parse_id(&id)?).await?;
    Ok(Json(job).into_response())
}

/// Workers stop claiming from the queue (idempotent; the queue need not exist).
#[utoipa::path(post, path = "/api/v1/queues/{queue}/pause", tag = "queues",
    params(("queue" = String, Path, pattern = "^[A-Za-z0-9_.-]{1,128}$", description = "Queue name")),
    responses((status = 200, description = "Paused", body = openapi::QueuePaused)))]
async fn pause_queue(
    State(state): State<ApiState>,
    ApiPath(queue): ApiPath<String>,
) -> Result<Response, ApiError> {
    state.queue.pause(&queue).await?;
    tracing::info!(queue = %queue, "queue paused");
    Ok(Json(openapi::QueuePaused {
        queue,
        paused: true,
    })
    .into_response())
}

/// Workers claim from the queue again (idempotent).
#[utoipa::path(post, path = "/api/v1/queues/{queue}/resume", tag = "queues",
    params(("queue" = String, Path, pattern = "^[A-Za-z0-9_.-]{1,128}$", description = "Queue name")),
    responses((status = 200, description = "Resumed", body = openapi::QueuePaused)))]
async fn resume_queue(
    State(state): State<ApiState>,
    ApiPath(queue): ApiPath<String>,
) -> Result<Response, ApiError> {
    state.queue.resume(&queue).await?;
    tracing::info!(queue = %queue, "queue resumed");
    Ok(Json(openapi::QueuePaused {
        queue,
        paused: false,
    })
    .into_response())
}

/// Counts per queue and status, every queue with jobs or paused.
#[utoipa::path(get, path = "/api/v1/queues", tag = "queues",
    responses((status = 200, description = "Queues", body = openapi::QueueList)))]
async fn queues(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let stats = state.queue.stats().await?;
    Ok(Json(openapi::QueueList { queues: stats }).into_response())
}

/// Pings the database every 2 s for `/readyz` (probes never query).
pub fn spawn_db_watch(queue: Queue, db_ok: Arc<AtomicBool>, mut shutdown: Shutdown) {
    tokio::spawn(async move {
        loop {
            let ok = tokio::time::timeout(Duration::from_secs(2), async {
                let client = queue.pool().get().await.ok()?;
                client.simple_query("SELECT 1").await.ok()
            })
            .await
            .ok()
            .flatten()
            .is_some();
            if db_ok.swap(ok, Ordering::SeqCst) != ok {
                if ok {
                    tracing::info!("database reachable");
                } else {
                    tracing::warn!("database unreachable: /readyz answers 503");
                }
            }
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            }
        }
    });
}

/// Serves the API on an already-bound listener until `shutdown`; in-flight
/// requests finish first.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    cfg: &ApiConfig,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    let draining = state.draining.clone();
    state.limiter.spawn_connector();
    spawn_db_watch(state.queue.clone(), state.db_ok.clone(), shutdown.clone());
    let app = router(state, cfg.body_limit, cfg.request_timeout);
    let mut sd = shutdown.clone();
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        sd.wait().await;
        draining.store(true, Ordering::SeqCst);
        tracing::info!("API draining: not accepting new connections, finishing in-flight requests");
    })
    .await
}

/// `jobqueue api`.
pub async fn run(db: &DbConfig, cfg: &ApiConfig, shutdown: Shutdown) -> crate::error::Result<()> {
    let pool = crate::db::pool(&db.url, db.pool_size)?;
    let state = ApiState::new(Queue::new(pool), cfg);
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| crate::Error::Io {
            context: format!("API_LISTEN {}", cfg.listen),
            source,
        })?;
    tracing::info!(listen = %cfg.listen, auth = cfg.secret_key.is_some(), redis = cfg.redis_url.is_some(), "API listening");
    serve(listener, state, cfg, shutdown)
        .await
        .map_err(|source| crate::Error::Io {
            context: "serving the API".into(),
            source,
        })?;
    tracing::info!("API stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_durations() {
        assert_eq!(parse_wait("30s").ok(), Some(Duration::from_secs(30)));
        assert_eq!(parse_wait("30").ok(), Some(Duration::from_secs(30)));
        assert_eq!(parse_wait("500ms").ok(), Some(Duration::from_millis(500)));
        assert_eq!(parse_wait("1m").ok(), Some(MAX_WAIT));
        assert_eq!(parse_wait("1e9s").ok(), None);
        assert_eq!(parse_wait("999999999999").ok(), Some(MAX_WAIT));
        for bad in ["", "-1s", "x", "1h", "1.2.3s", "NaN", "inf"] {
            assert!(parse_wait(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn constant_time_compare() {
        assert!(ct_eq(b"secret", b"secret"));
        assert!(!ct_eq(b"secret", b"secreT"));
        assert!(!ct_eq(b"secret", b"secret2"));
    }
}
