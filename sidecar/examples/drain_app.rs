//! `drain_app`: a small HTTP app that shuts down gracefully, the "main
//! container" of the zero-drop benchmark (`bench/zero-drop/run.sh`).
//!
//! - `GET /` does a little work (a few ms: CPU plus a short sleep) so that
//!   requests are really in flight when the app is told to stop;
//! - `GET /healthz` answers 200 while the app serves (berth's `http` check);
//! - on SIGTERM/SIGINT it stops accepting new connections and exits only
//!   after every in-flight request is finished (axum graceful shutdown).
//!   That alone does NOT make a rollout lossless: the load balancer keeps
//!   sending new connections until it notices, which is what berth's
//!   prestop delay is for. The benchmark's control trials show the gap.
//!
//! Environment: `DRAIN_APP_LISTEN` (default `127.0.0.1:8000`),
//! `DRAIN_APP_WORK_MS` (default 2: sleep per `GET /`).
//!
//!     cargo run --release -p berth --example drain_app
#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use tokio::signal::unix::{signal, SignalKind};

struct App {
    work: Duration,
    served: AtomicU64,
}

fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(work))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(app)
}

async fn work(State(app): State<Arc<App>>) -> String {
    // A little CPU (so a busy server is busy) and a little waiting (so
    // requests overlap the moment the signal arrives).
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..20_000u64 {
        x = x.rotate_left(5) ^ i.wrapping_mul(0x100_0000_01b3);
    }
    tokio::time::sleep(app.work).await;
    let n = app.served.fetch_add(1, Ordering::Relaxed) + 1;
    format!("ok {n} {:x}\n", x & 0xff)
}

/// Resolves on the first SIGTERM or SIGINT.
async fn shutdown_signal() {
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("drain_app: cannot install SIGTERM handler: {e}");
            std::process::exit(70);
        }
    };
    let mut int = match signal(SignalKind::interrupt()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("drain_app: cannot install SIGINT handler: {e}");
            std::process::exit(70);
        }
    };
    tokio::select! {
        _ = term.recv() => eprintln!("drain_app: SIGTERM: finishing in-flight requests"),
        _ = int.recv() => eprintln!("drain_app: SIGINT: finishing in-flight requests"),
    }
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

#[tokio::main]
async fn main() {
    let listen = env_or("DRAIN_APP_LISTEN", "127.0.0.1:8000");
    let work_ms: u64 = match env_or("DRAIN_APP_WORK_MS", "2").parse() {
        Ok(v) => v,
        Err(_) => {
            eprintln!("drain_app: DRAIN_APP_WORK_MS must be a number of milliseconds");
            std::process::exit(64);
        }
    };
    let app = Arc::new(App {
        work: Duration::from_millis(work_ms),
        served: AtomicU64::new(0),
    });
    let listener = match tokio::net::TcpListener::bind(&listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("drain_app: cannot listen on {listen} (DRAIN_APP_LISTEN): {e}");
            std::process::exit(64);
        }
    };
    eprintln!("drain_app: listening on {listen}");
    let served = app.clone();
    if let Err(e) = axum::serve(listener, router(app))
        .with_graceful_shutdown(shutdown_signal())
        .await
    {
        eprintln!("drain_app: server error: {e}");
        std::process::exit(1);
    }
    eprintln!(
        "drain_app: drained, exiting after {} requests",
        served.served.load(Ordering::Relaxed)
    );
}
