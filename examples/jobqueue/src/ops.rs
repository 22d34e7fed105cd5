//! The small HTTP server of `worker` and `reaper` (`METRICS_LISTEN`):
//! `/metrics`, `/healthz` (process alive: never touches the database) and
//! `/readyz` (reached the database and not shutting down).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};

use crate::metrics::Metrics;
use crate::shutdown::Shutdown;

#[derive(Clone)]
struct OpsState {
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
}

pub fn router(metrics: Arc<Metrics>, ready: Arc<AtomicBool>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(OpsState { metrics, ready })
}

/// `/metrics` response (text exposition format).
pub fn render_metrics(metrics: &Metrics) -> axum::response::Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics.render(),
    )
        .into_response()
}

async fn metrics_handler(State(s): State<OpsState>) -> axum::response::Response {
    render_metrics(&s.metrics)
}

pub async fn healthz() -> impl IntoResponse {
    (
        [(header::CACHE_CONTROL, "no-store")],
        Json(serde_json::json!({"status": "ok"})),
    )
}

async fn readyz(State(s): State<OpsState>) -> impl IntoResponse {
    let ready = s.ready.load(Ordering::SeqCst);
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        [(header::CACHE_CONTROL, "no-store")],
        Json(serde_json::json!({"status": if ready { "ready" } else { "not ready" }})),
    )
}

/// Binds `addr` and serves until `shutdown`. Binding errors are returned so
/// `main` can report a busy port as a configuration error.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    shutdown: Shutdown,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(listen = %listener.local_addr()?, "metrics and health endpoints listening");
    let app = router(metrics, ready);
    Ok(tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.wait_owned())
            .await;
    }))
}
