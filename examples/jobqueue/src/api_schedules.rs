//! The schedule routes of the HTTP API (examples/jobqueue/README.md,
//! "Schedules"): `PUT|GET|DELETE /api/v1/schedules/{name}` and
//! `GET /api/v1/schedules`.
//!
//! Why a file of its own: [`crate::api`] is the job API and the server's
//! plumbing; these handlers only translate between HTTP and
//! [`crate::schedule`] / the `Queue::*_schedule` methods. [`routes`] is
//! merged into the authenticated part of [`crate::api::router`], so the
//! bearer key guards them like `/api/v1/jobs`.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use crate::api::{ApiError, ApiState, JsonBody};
use crate::schedule::{parse_request, validate_schedule_name};

/// The schedule routes, to merge before the auth layer.
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/schedules", get(list_schedules))
        .route(
            "/api/v1/schedules/{name}",
            get(get_schedule).put(put_schedule).delete(delete_schedule),
        )
}

/// The `{name}` segment, with JSON errors (axum's own rejection is plain
/// text, e.g. for `%FF`).
fn name_from(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(name) =
        path.map_err(|_| ApiError::BadRequest("name: not a valid UTF-8 path segment".into()))?;
    validate_schedule_name(&name).map_err(ApiError::BadRequest)?;
    Ok(name)
}

/// Creates or replaces a schedule. The same cron and time zone again keeps
/// `next_fire_at` (no fire time skipped or repeated).
#[utoipa::path(put, path = "/api/v1/schedules/{name}", tag = "schedules",
    params(("name" = String, Path, pattern = "^[A-Za-z0-9_.-]{1,128}$", description = "Schedule name (no ':')")),
    request_body = crate::api::openapi::ScheduleRequest,
    responses(
        (status = 201, description = "Created", body = crate::schedule::Schedule,
            headers(("location" = String, description = "`/api/v1/schedules/{name}`"))),
        (status = 200, description = "Replaced", body = crate::schedule::Schedule)))]
pub(crate) async fn put_schedule(
    State(state): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
    JsonBody(body): JsonBody<serde_json::Value>,
) -> Result<Response, ApiError> {
    let name = name_from(path)?;
    let (spec, cron) = parse_request(&name, &body).map_err(ApiError::BadRequest)?;
    let (schedule, created) = state.queue.put_schedule(&spec, &cron).await?;
    if created {
        let location = format!("/api/v1/schedules/{}", schedule.name);
        Ok((
            StatusCode::CREATED,
            [(header::LOCATION, location)],
            Json(schedule),
        )
            .into_response())
    } else {
        Ok(Json(schedule).into_response())
    }
}

/// One schedule.
#[utoipa::path(get, path = "/api/v1/schedules/{name}", tag = "schedules",
    params(("name" = String, Path, pattern = "^[A-Za-z0-9_.-]{1,128}$", description = "Schedule name (no ':')")),
    responses(
        (status = 200, description = "The schedule", body = crate::schedule::Schedule),
        (status = 404, description = "No such schedule", body = crate::api::openapi::ErrorBody)))]
pub(crate) async fn get_schedule(
    State(state): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let name = name_from(path)?;
    match state.queue.get_schedule(&name).await? {
        Some(s) => Ok(Json(s).into_response()),
        None => Err(ApiError::NotFound("schedule not found".into())),
    }
}

/// Every schedule, by name.
#[utoipa::path(get, path = "/api/v1/schedules", tag = "schedules",
    responses((status = 200, description = "The schedules", body = crate::api::openapi::ScheduleList)))]
pub(crate) async fn list_schedules(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let schedules = state.queue.list_schedules().await?;
    Ok(Json(crate::api::openapi::ScheduleList { schedules }).into_response())
}

/// Deletes a schedule (jobs it enqueued stay).
#[utoipa::path(delete, path = "/api/v1/schedules/{name}", tag = "schedules",
    params(("name" = String, Path, pattern = "^[A-Za-z0-9_.-]{1,128}$", description = "Schedule name (no ':')")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such schedule", body = crate::api::openapi::ErrorBody)))]
pub(crate) async fn delete_schedule(
    State(state): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let name = name_from(path)?;
    if state.queue.delete_schedule(&name).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::NotFound("schedule not found".into()))
    }
}
