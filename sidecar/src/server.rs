//! The HTTP surface: health endpoints, metrics and lifecycle hooks.
//!
//! Handlers only read cached state ([`crate::state::Health`]); none of them
//! ever touches a dependency. Whether a caller may see error *detail* is
//! decided from the peer address in `ConnectInfo` (set by the real server,
//! inserted by hand in tests to play a remote peer) or a bearer token; a
//! request without `ConnectInfo` counts as remote, the safe default.
//!
//! Who may change berth's state (see ARCHITECTURE.md, "Who may drain"):
//! health endpoints are read-only and safe wherever the port is published.
//! Lifecycle endpoints (prestop, shutdown) answer 403 to everyone on the
//! health port except loopback callers; kubelet's preStop hook comes from
//! the node, so it reaches the separate lifecycle port ([`lifecycle_router`])
//! with the per-release token in a header. No chart ever puts that port on a
//! Service, Ingress, HTTPRoute or NetworkPolicy rule.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{HeaderValue, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Serialize;

use crate::state::Overall;
use crate::{lifecycle, metrics, timefmt, App};

const JSON: HeaderValue = HeaderValue::from_static("application/json");
const NO_STORE: HeaderValue = HeaderValue::from_static("no-store");

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(crate::ui::page))
        .route("/ui", get(crate::ui::page))
        .route("/api/v1/health/", get(health))
        .route("/api/v1/health", get(health))
        .route("/api/v1/health/live", get(live))
        .route("/api/v1/health/ready", get(ready))
        .route("/api/v1/health/startup", get(startup))
        .route("/api/v1/health/group/{name}", get(group))
        .route("/metrics", get(prometheus))
        .route("/api/v1/lifecycle/prestop", get(prestop).post(prestop))
        .route("/api/v1/lifecycle/shutdown", axum::routing::post(shutdown))
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(Port {
            app,
            kind: PortKind::Health,
        })
}

/// The lifecycle port's router: only the lifecycle paths, for loopback
/// callers and for callers that present the lifecycle token (kubelet's
/// rendered preStop hook). Health paths are not served here, so nothing
/// ever has a reason to publish this port.
pub fn lifecycle_router(app: Arc<App>) -> Router {
    Router::new()
        .route("/api/v1/lifecycle/prestop", get(prestop).post(prestop))
        .route("/api/v1/lifecycle/shutdown", axum::routing::post(shutdown))
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(Port {
            app,
            kind: PortKind::Lifecycle,
        })
}

/// Which listener a request came in on: the same handlers guard the
/// lifecycle paths differently on each.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PortKind {
    Health,
    Lifecycle,
}

#[derive(Clone)]
struct Port {
    app: Arc<App>,
    kind: PortKind,
}

impl axum::extract::FromRef<Port> for Arc<App> {
    fn from_ref(port: &Port) -> Arc<App> {
        port.app.clone()
    }
}

/// Client errors, with text that is safe to show anyone.
#[derive(Debug, Clone, Copy)]
pub enum ApiError {
    NotFound,
    MethodNotAllowed,
    NotLoopback,
    /// A lifecycle path from a caller that is neither loopback nor the hook.
    LifecycleForbidden,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = match self {
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not_found", "no such endpoint"),
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this endpoint",
            ),
            ApiError::NotLoopback => (
                StatusCode::FORBIDDEN,
                "forbidden",
                "shutdown is only accepted from loopback",
            ),
            ApiError::LifecycleForbidden => (
                StatusCode::FORBIDDEN,
                "forbidden",
                "lifecycle endpoints answer only loopback callers and the pod's preStop hook",
            ),
        };
        let body = serde_json::json!({"error": {"code": code, "message": message}});
        json_response(status, body.to_string())
    }
}

fn json_response(status: StatusCode, body: impl Into<Body>) -> Response {
    let mut resp = Response::new(body.into());
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, JSON);
    h.insert(CACHE_CONTROL, NO_STORE);
    resp
}

fn code(ok: bool) -> StatusCode {
    if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

async fn live(State(app): State<Arc<App>>) -> Response {
    if app.health.live() {
        json_response(StatusCode::OK, r#"{"status":"alive"}"#)
    } else {
        json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            r#"{"status":"dead","reason":"a checker task has stalled"}"#,
        )
    }
}

async fn ready(State(app): State<Arc<App>>) -> Response {
    let h = &app.health;
    let body = if !h.started() {
        r#"{"status":"not_ready","reason":"starting"}"#
    } else if h.draining() {
        r#"{"status":"not_ready","reason":"draining"}"#
    } else if !h.critical_up() {
        r#"{"status":"not_ready","reason":"critical check down"}"#
    } else {
        return json_response(StatusCode::OK, r#"{"status":"ready"}"#);
    };
    json_response(StatusCode::SERVICE_UNAVAILABLE, body)
}

/// A group (Spring's health groups, ASP.NET's tags): 200 when every
/// critical member is up. Members' statuses only; detail stays on `/health/`.
async fn group(
    State(app): State<Arc<App>>,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Response {
    let Some((up, members)) = app.health.group(&name) else {
        return ApiError::NotFound.into_response();
    };
    let checks: Vec<serde_json::Value> = members
        .iter()
        .map(|(n, status, critical)| {
            serde_json::json!({"name": n, "status": status.as_str(), "critical": critical})
        })
        .collect();
    let body = serde_json::json!({
        "group": name,
        "status": if up { "up" } else { "down" },
        "checks": checks,
    });
    json_response(code(up), body.to_string())
}

async fn startup(State(app): State<Arc<App>>) -> Response {
    if app.health.started() {
        return json_response(StatusCode::OK, r#"{"status":"started"}"#);
    }
    let waiting: Vec<String> = app.health.startup_pending();
    let body = serde_json::json!({"status": "starting", "waiting_for": waiting});
    json_response(StatusCode::SERVICE_UNAVAILABLE, body.to_string())
}

#[derive(Serialize)]
struct HealthBody<'a> {
    status: &'static str,
    draining: bool,
    started: bool,
    uptime_seconds: u64,
    checks: Vec<CheckBody<'a>>,
    /// The fields below only with `?history=1` (what the status page reads).
    #[serde(skip_serializing_if = "Option::is_none")]
    ready: Option<bool>,
    /// Whether `error` carries detail for this caller or only the kind.
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    groups: Option<Vec<GroupBody>>,
}

#[derive(Serialize)]
struct CheckBody<'a> {
    name: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    critical: bool,
    status: &'static str,
    latency_ms: Option<f64>,
    consecutive_failures: u32,
    last_success: Option<String>,
    last_failure: Option<String>,
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    interval_ms: Option<u64>,
    /// The last [`crate::state::HISTORY`] results, oldest first: `[ok, latency_ms]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    history: Option<Vec<(bool, f64)>>,
}

#[derive(Serialize)]
struct GroupBody {
    name: String,
    status: &'static str,
    checks: Vec<serde_json::Value>,
}

fn millis(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

/// `/api/v1/health/`; with `?history=1` also readiness, groups, each
/// check's interval and recent results, always with status 200: the status
/// page's view (`GET /`). One handler, so the page gets exactly the
/// redaction of the JSON endpoint.
async fn health(State(app): State<Arc<App>>, req: Request) -> Response {
    let full = full_detail(&app, req.headers(), peer(&req));
    let extended = req.uri().query().is_some_and(|q| {
        q.split('&')
            .any(|p| p == "history=1" || p == "history=true")
    });
    let h = &app.health;
    let config = extended.then(|| app.config());
    let cells = h.cells();
    let checks = cells
        .iter()
        .map(|cell| {
            let s = cell.snapshot();
            CheckBody {
                name: &cell.name,
                kind: cell.kind,
                critical: cell.critical,
                status: s.status.as_str(),
                latency_ms: s.latency.map(millis),
                consecutive_failures: s.consecutive_failures,
                last_success: s.last_success.map(timefmt::rfc3339),
                last_failure: s.last_failure.map(timefmt::rfc3339),
                // Detail is scrubbed at creation; the kind is all a remote,
                // unauthenticated caller gets.
                error: s.error.map(|e| {
                    if full {
                        e.to_string()
                    } else {
                        e.redacted().to_string()
                    }
                }),
                interval_ms: config.as_ref().and_then(|c| {
                    c.checks
                        .iter()
                        .find(|spec| spec.name == cell.name)
                        .map(|spec| spec.interval.as_millis() as u64)
                }),
                history: extended.then(|| {
                    cell.history()
                        .into_iter()
                        .map(|(ok, latency)| (ok, millis(latency)))
                        .collect()
                }),
            }
        })
        .collect();
    let groups = extended.then(|| {
        h.groups()
            .keys()
            .filter_map(|name| {
                let (up, members) = h.group(name)?;
                let checks = members
                    .iter()
                    .map(|(n, status, critical)| {
                        serde_json::json!({"name": n, "status": status.as_str(), "critical": critical})
                    })
                    .collect();
                Some(GroupBody {
                    name: name.clone(),
                    status: if up { "up" } else { "down" },
                    checks,
                })
            })
            .collect()
    });
    let overall = h.overall();
    let body = HealthBody {
        status: overall.as_str(),
        draining: h.draining(),
        started: h.started(),
        uptime_seconds: h.uptime().as_secs(),
        checks,
        ready: extended.then(|| h.ready()),
        detail: extended.then_some(full),
        groups,
    };
    let text = serde_json::to_string(&body).unwrap_or_else(|_| "{}".into());
    // The page's view answers 200 whatever the state: it is read by a
    // browser, not a probe, and a 503 there is only console noise.
    json_response(code(extended || overall != Overall::Unhealthy), text)
}

async fn prometheus(State(app): State<Arc<App>>) -> Response {
    let mut resp = Response::new(Body::from(metrics::render(&app)));
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp.headers_mut().insert(CACHE_CONTROL, NO_STORE);
    resp
}

async fn prestop(State(port): State<Port>, req: Request) -> Response {
    let app = &port.app;
    let allowed = match port.kind {
        PortKind::Health => peer_is_loopback(peer(&req)),
        PortKind::Lifecycle => {
            peer_is_loopback(peer(&req)) || hook_token_matches(app, req.headers())
        }
    };
    if !allowed {
        tracing::warn!(
            peer = %peer(&req).map(|p| p.ip().to_string()).unwrap_or_else(|| "unknown".into()),
            "refused a prestop call that is neither loopback nor the preStop hook"
        );
        return ApiError::LifecycleForbidden.into_response();
    }
    let report = lifecycle::prestop(app).await;
    let text = serde_json::to_string(&*report).unwrap_or_else(|_| "{}".into());
    json_response(StatusCode::OK, text)
}

/// Shutdown is for the main container of a Job, which calls it on
/// loopback; no hook ever needs it, so the token does not unlock it.
async fn shutdown(State(app): State<Arc<App>>, req: Request) -> Response {
    if !peer_is_loopback(peer(&req)) {
        return ApiError::NotLoopback.into_response();
    }
    tracing::info!("shutdown requested by a loopback caller");
    app.request_shutdown();
    json_response(StatusCode::OK, r#"{"status":"shutting_down"}"#)
}

fn peer(req: &Request) -> Option<SocketAddr> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ci| ci.0)
}

pub fn peer_is_loopback(peer: Option<SocketAddr>) -> bool {
    match peer {
        Some(SocketAddr::V4(a)) => a.ip().is_loopback(),
        Some(SocketAddr::V6(a)) => {
            a.ip().is_loopback()
                || a.ip()
                    .to_ipv4_mapped()
                    .map(|v4| v4.is_loopback())
                    .unwrap_or(false)
        }
        None => false,
    }
}

fn full_detail(app: &App, headers: &HeaderMap, peer: Option<SocketAddr>) -> bool {
    if peer_is_loopback(peer) {
        return true;
    }
    let config = app.config();
    let (Some(token), Some(given)) = (config.token.as_deref(), headers.get(AUTHORIZATION)) else {
        return false;
    };
    let given = given.as_bytes();
    let expected = format!("Bearer {token}");
    constant_time_eq(given, expected.as_bytes())
}

/// The rendered preStop hook carries the lifecycle token in a header.
fn hook_token_matches(app: &App, headers: &HeaderMap) -> bool {
    let config = app.config();
    let (Some(lc), Some(given)) = (
        config.lifecycle.as_ref(),
        headers.get(crate::config::LIFECYCLE_TOKEN_HEADER),
    ) else {
        return false;
    };
    constant_time_eq(given.as_bytes(), lc.token.as_bytes())
}

/// Compares without an early exit, so response time does not reveal how
/// much of a guessed token was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
