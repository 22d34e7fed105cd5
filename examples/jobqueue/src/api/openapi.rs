//! `GET /api/v1/openapi.json`: the OpenAPI 3.1 description of the HTTP API.
//!
//! Why it is built this way: the document is *generated from the code*, so
//! it cannot drift from it unnoticed. The request and response types
//! ([`NewJob`], [`Job`], [`Status`], [`QueueStats`] and the small response
//! bodies below, which the handlers serialise) derive `utoipa::ToSchema`;
//! every handler carries a `#[utoipa::path]`; the validation bounds come
//! from the same constants `NewJob::validate` uses (the `*_schema`
//! functions below). What JSON Schema cannot say (no NUL character inside
//! `payload`, `unique_while` needs `idempotency_key`, `idempotency_key` is
//! counted in bytes) is said in the schema's `description`. Everything the
//! document allows is accepted; tests/openapi.rs checks that with a table
//! of requests and with schemathesis against the real binary.
//!
//! The route needs no auth: it holds no data. `API_MAX_BATCH` is a runtime
//! setting, so the batch size limit is filled in per request.
//!
//! To document a new route: put `#[utoipa::path(...)]` on its handler, add
//! the handler to `paths(...)` of [`ApiDoc`] and its body types to
//! `components(schemas(...))`; use [`super::ApiPath`] for path segments.
//! [`Common`] then adds what every operation shares: the bearer
//! requirement and 401 under `/api/v1/` (except this document), 400 when
//! it takes parameters or a body, 413 with a body, 503 everywhere
//! (timeouts), and `x-request-id` on every response.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::schema::{
    ArrayBuilder, KnownFormat, ObjectBuilder, Schema, SchemaFormat, SchemaType, Type,
};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, OpenApi as OpenApiDoc, RefOr, ResponseBuilder, SecurityRequirement,
};
use utoipa::{Modify, OpenApi, ToSchema};

use super::ApiState;
use crate::job::{
    Job, NewJob, Status, MAX_ATTEMPTS_LIMIT, MAX_PRIORITY, MAX_TIMEOUT_SECONDS,
    MAX_UNIQUE_FOR_SECONDS,
};
use crate::queue::QueueStats;

/// The document's paths and components. Add new handlers to `paths(...)`.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "jobqueue",
        description = "A PostgreSQL job-queue runtime (examples/jobqueue/README.md). \
            Errors are always `{\"error\":{\"code\",\"message\"}}`; every response \
            carries `x-request-id`. Unknown query parameters and unknown body fields are \
            rejected with 400."
    ),
    paths(
        super::create_job,
        super::list_jobs,
        super::create_batch,
        super::get_job,
        super::cancel_job,
        super::retry_job,
        super::queues,
        super::pause_queue,
        super::resume_queue,
        openapi_json,
        dashboard_root,
        dashboard_page,
        healthz,
        super::readyz,
        super::metrics_handler,
        crate::api_schedules::put_schedule,
        crate::api_schedules::get_schedule,
        crate::api_schedules::list_schedules,
        crate::api_schedules::delete_schedule,
    ),
    components(schemas(
        NewJob, Job, Status, QueueStats, super::BatchRequest, BatchCreated, JobList, QueueList,
        QueuePaused, ErrorBody, ErrorDetail, ErrorCode, Health, Ready,
        ScheduleRequest, ScheduleJobRequest, crate::schedule::Schedule,
        crate::schedule::ScheduleJob, ScheduleList
    )),
    modifiers(&Common),
    tags(
        (name = "jobs", description = "Submit, list, inspect, cancel and retry jobs"),
        (name = "queues", description = "Queue depths; pause and resume"),
        (name = "ops", description = "Health, readiness, metrics, dashboard, this document"),
    )
)]
pub struct ApiDoc;

/// The document as served: `max_batch` is `API_MAX_BATCH`.
pub fn document(max_batch: usize) -> OpenApiDoc {
    let mut doc = ApiDoc::openapi();
    if let Some(RefOr::T(Schema::Object(batch))) = doc
        .components
        .as_mut()
        .and_then(|c| c.schemas.get_mut("BatchRequest"))
    {
        if let Some(RefOr::T(Schema::Array(jobs))) = batch.properties.get_mut("jobs") {
            jobs.max_items = Some(max_batch);
        }
    }
    doc
}

/// `GET /api/v1/openapi.json`.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "ops",
    responses((status = 200, description = "This OpenAPI 3.1 document", content_type = "application/json", body = Object))
)]
pub(crate) async fn openapi_json(State(state): State<ApiState>) -> Response {
    match document(state.max_batch).to_json() {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "serialising the OpenAPI document");
            super::ApiError::Unavailable("OpenAPI document unavailable".into()).into_response()
        }
    }
}

// Routes whose handlers live elsewhere (ops.rs, dashboard/): described here.

/// The dashboard (HTML; it reads the JSON API with the key the user types).
#[utoipa::path(get, path = "/", tag = "ops",
    responses((status = 200, description = "The dashboard page", content_type = "text/html", body = String)))]
#[allow(dead_code)]
fn dashboard_root() {}

/// The dashboard (same page as `/`).
#[utoipa::path(get, path = "/dashboard", tag = "ops",
    responses((status = 200, description = "The dashboard page", content_type = "text/html", body = String)))]
#[allow(dead_code)]
fn dashboard_page() {}

/// Liveness: 200 while the process lives; never touches the database.
#[utoipa::path(get, path = "/healthz", tag = "ops",
    responses((status = 200, description = "Alive", body = Health)))]
#[allow(dead_code)]
fn healthz() {}

// ---- bodies ----------------------------------------------------------------

/// The new jobs' ids, in input order.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchCreated {
    pub ids: Vec<i64>,
}

/// A page of jobs, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobList {
    pub jobs: Vec<Job>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// Every queue with jobs or paused.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueueList {
    pub queues: Vec<QueueStats>,
}

/// The body of `PUT /api/v1/schedules/{name}`. `schedule::parse_request`
/// reads it field by field (so every message names its field); this type
/// is its description.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct ScheduleRequest {
    /// Cron expression: 5 fields (minute hour day-of-month month
    /// day-of-week), or 6 with seconds first; names, `L`, `W`, `#` and
    /// `@hourly`-style macros as croner reads them; no year field.
    #[schema(
        max_length = 256,
        min_length = 1,
        examples("*/5 * * * * *", "0 9 * * 1-5")
    )]
    pub cron: String,
    /// IANA time zone the cron is read in.
    #[schema(max_length = 64, default = "UTC", examples("Europe/Paris"))]
    pub timezone: Option<String>,
    pub job: ScheduleJobRequest,
}

/// The job a schedule enqueues at each fire time (the same rules as
/// `POST /api/v1/jobs`; no `run_at`, no `idempotency_key`: the fire time
/// and `schedule:{name}:{fire time}` are used).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct ScheduleJobRequest {
    #[schema(schema_with = kind_schema)]
    pub kind: String,
    #[schema(schema_with = payload_schema)]
    pub payload: Option<serde_json::Value>,
    #[schema(schema_with = queue_schema)]
    pub queue: Option<String>,
    #[schema(schema_with = priority_schema)]
    pub priority: Option<i32>,
    #[schema(schema_with = max_attempts_schema)]
    pub max_attempts: Option<i32>,
}

/// `GET /api/v1/schedules`.
#[derive(Serialize, ToSchema)]
pub struct ScheduleList {
    pub schedules: Vec<crate::schedule::Schedule>,
}

/// Answer of pause and resume.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueuePaused {
    pub queue: String,
    pub paused: bool,
}

/// Every error response.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    /// Client-safe; a 400 names the offending field.
    #[schema(min_length = 1)]
    pub message: String,
}

/// `ApiError`'s codes (one per status: 400 … 503).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    Unauthorized,
    NotFound,
    MethodNotAllowed,
    Conflict,
    PayloadTooLarge,
    RateLimited,
    Unavailable,
}

/// `GET /healthz`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Health {
    #[schema(pattern = "^ok$")]
    pub status: String,
}

/// `GET /readyz`: `ready` (200); `draining` or `database unavailable` (503).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Ready {
    #[schema(pattern = "^(ready|draining|database unavailable)$")]
    pub status: String,
}

// ---- NewJob field schemas: bounds from the constants validate() uses ----------

fn int(min: i64, max: i64, nullable: bool, description: &str) -> ObjectBuilder {
    let ty = if nullable {
        SchemaType::from_iter([Type::Integer, Type::Null])
    } else {
        SchemaType::Type(Type::Integer)
    };
    ObjectBuilder::new()
        .schema_type(ty)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int32)))
        .minimum(Some(min))
        .maximum(Some(max))
        .description(Some(description))
}

/// The pattern of kind and group names (`job::validate_name`).
pub const NAME_PATTERN: &str = "^[A-Za-z0-9_.:-]{1,128}$";
/// The pattern of queue names (`job::validate_queue_name`): no ':'.
pub const QUEUE_PATTERN: &str = "^[A-Za-z0-9_.-]{1,128}$";

fn name(pattern: &str, nullable: bool, description: &str) -> ObjectBuilder {
    let ty = if nullable {
        SchemaType::from_iter([Type::String, Type::Null])
    } else {
        SchemaType::Type(Type::String)
    };
    ObjectBuilder::new()
        .schema_type(ty)
        .min_length(Some(1))
        .max_length(Some(128))
        .pattern(Some(pattern))
        .description(Some(description))
}

pub(crate) fn kind_schema() -> Schema {
    name(
        NAME_PATTERN,
        false,
        "Handler name: 1 to 128 of `A-Z a-z 0-9 _ . : -`.",
    )
    .examples(["noop"])
    .into()
}

pub(crate) fn queue_schema() -> Schema {
    name(
        QUEUE_PATTERN,
        false,
        "Queue name: 1 to 128 of `A-Z a-z 0-9 _ . -` (no ':').",
    )
    .default(Some("default".into()))
    .into()
}

pub(crate) fn group_schema() -> Schema {
    name(
        NAME_PATTERN,
        true,
        "Jobs of one group never run more at once than the workers' \
         `WORKER_GROUP_CONCURRENCY` (default 1). 1 to 128 of `A-Z a-z 0-9 _ . : -`.",
    )
    .into()
}

pub(crate) fn payload_schema() -> Schema {
    ObjectBuilder::new()
        .schema_type(SchemaType::AnyValue)
        .description(Some(
            "Any JSON value, handed to the handler. No string and no object key anywhere \
             inside may contain the NUL character (\\u0000): PostgreSQL cannot store it (400).",
        ))
        .default(Some(serde_json::json!({})))
        .into()
}

pub(crate) fn priority_schema() -> Schema {
    int(
        -i64::from(MAX_PRIORITY),
        i64::from(MAX_PRIORITY),
        false,
        "Higher runs first.",
    )
    .default(Some(0.into()))
    .into()
}

pub(crate) fn max_attempts_schema() -> Schema {
    int(
        1,
        i64::from(MAX_ATTEMPTS_LIMIT),
        false,
        "Attempts before the job is `dead`.",
    )
    .default(Some(5.into()))
    .into()
}

pub(crate) fn run_at_schema() -> Schema {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
        .description(Some(
            "Not before this time (RFC 3339); default now. Must lie between \
             0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z once converted to UTC.",
        ))
        .examples(["2030-01-01T09:00:00Z"])
        .into()
}

pub(crate) fn idempotency_key_schema() -> Schema {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .min_length(Some(1))
        .max_length(Some(255))
        .pattern(Some("^[^\\u0000]+$"))
        .description(Some(
            "Submitting the same key again answers 200 with the first job (409 if the \
             job differs). 1 to 255 bytes of UTF-8 (so fewer characters when they are \
             not ASCII), no NUL character.",
        ))
        .into()
}

pub(crate) fn timeout_seconds_schema() -> Schema {
    int(
        1,
        i64::from(MAX_TIMEOUT_SECONDS),
        true,
        "Abort the handler after this many seconds; the attempt fails with error kind `timeout`.",
    )
    .into()
}

pub(crate) fn unique_for_seconds_schema() -> Schema {
    int(
        1,
        i64::from(MAX_UNIQUE_FOR_SECONDS),
        true,
        "Limit the idempotency key to this many seconds after enqueueing. \
         Needs `idempotency_key` (400 without it).",
    )
    .into()
}

pub(crate) fn unique_while_schema() -> Schema {
    let status = RefOr::Ref(utoipa::openapi::Ref::from_schema_name("Status"));
    ArrayBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Array, Type::Null]))
        .items(status)
        .min_items(Some(1))
        .description(Some(
            "Limit the idempotency key to jobs in these statuses, e.g. \
             `[\"queued\",\"running\"]`: once the job finished, the key is free. \
             Needs `idempotency_key` (400 without it).",
        ))
        .into()
}

// ---- what every operation shares ------------------------------------------------

/// Bearer auth, 401/503 and `x-request-id` on every operation (see the
/// module header).
struct Common;

const BEARER: &str = "bearer";

impl Modify for Common {
    fn modify(&self, doc: &mut OpenApiDoc) {
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                BEARER,
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some(
                            "`Authorization: Bearer <API_SECRET_KEY>`, required on \
                             /api/v1/jobs* and /api/v1/queues* when API_SECRET_KEY is set.",
                        ))
                        .build(),
                ),
            );
        let string = || ObjectBuilder::new().schema_type(Type::String);
        let request_id = HeaderBuilder::new()
            .schema(string())
            .description(Some(
                "Yours (`x-request-id` of the request) or a generated UUID",
            ))
            .build();
        let error = |description: &str| {
            ResponseBuilder::new().description(description).content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                        "ErrorBody",
                    ))))
                    .build(),
            )
        };
        let retry_after = HeaderBuilder::new()
            .schema(string())
            .description(Some("Seconds"))
            .build();
        for (path, item) in doc.paths.paths.iter_mut() {
            let protected = path.starts_with("/api/v1/") && path != "/api/v1/openapi.json";
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                let responses = &mut op.responses.responses;
                if protected {
                    op.security =
                        Some(vec![SecurityRequirement::new(BEARER, Vec::<String>::new())]);
                    responses.entry("401".into()).or_insert_with(|| {
                        error("Missing or wrong bearer token (only when API_SECRET_KEY is set)")
                            .header(
                                "www-authenticate",
                                HeaderBuilder::new()
                                    .schema(string())
                                    .description(Some("`Bearer`"))
                                    .build(),
                            )
                            .build()
                            .into()
                    });
                }
                let has_input = op.request_body.is_some()
                    || op.parameters.as_ref().is_some_and(|p| !p.is_empty());
                if has_input {
                    responses.entry("400".into()).or_insert_with(|| {
                        error("Invalid request; the message names the field")
                            .build()
                            .into()
                    });
                }
                if op.request_body.is_some() {
                    responses.entry("413".into()).or_insert_with(|| {
                        error("Body larger than API_BODY_LIMIT_BYTES")
                            .build()
                            .into()
                    });
                }
                responses.entry("503".into()).or_insert_with(|| {
                    error("Database unavailable, request timed out (API_REQUEST_TIMEOUT_SECONDS) or draining")
                        .header("retry-after", retry_after.clone())
                        .build()
                        .into()
                });
                for (status, resp) in responses.iter_mut() {
                    if let RefOr::T(resp) = resp {
                        resp.headers
                            .entry("x-request-id".into())
                            .or_insert_with(|| request_id.clone());
                        if status == "429" {
                            resp.headers
                                .entry("retry-after".into())
                                .or_insert_with(|| retry_after.clone());
                        }
                    }
                }
                // Query parameters are optional strings in the URL: never `null`.
                for p in op.parameters.iter_mut().flatten() {
                    if let Some(RefOr::T(Schema::Object(o))) = &mut p.schema {
                        if let SchemaType::Array(types) = &o.schema_type {
                            let types: Vec<Type> = types
                                .iter()
                                .filter(|t| **t != Type::Null)
                                .cloned()
                                .collect();
                            if let [single] = &types[..] {
                                o.schema_type = SchemaType::Type(single.clone());
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ApiError;

    #[test]
    fn every_api_error_code_is_documented_and_shaped_as_error_body() {
        let errors = [
            ApiError::BadRequest("x".into()),
            ApiError::Unauthorized,
            ApiError::NotFound("x".into()),
            ApiError::MethodNotAllowed,
            ApiError::Conflict("x".into()),
            ApiError::PayloadTooLarge(1),
            ApiError::RateLimited,
            ApiError::Unavailable("x".into()),
        ];
        for e in errors {
            let (_, code) = e.parts();
            let body = serde_json::json!({"error": {"code": code, "message": e.to_string()}});
            let parsed: Result<ErrorBody, _> = serde_json::from_value(body);
            assert!(parsed.is_ok(), "{code} is not an ErrorCode");
        }
    }
}
