//! berth: a tiny Kubernetes sidecar that checks a pod's dependencies in the
//! background, serves honest health endpoints and coordinates graceful drain.
//!
//! Module map: [`config`] (YAML → validated config, the only place that
//! reads the environment for `${VAR}`), [`checks`] (one file per check type
//! and the background loop), [`supervisor`] (the checker tasks, swapped on
//! reload), [`reload`] (watching the config file), [`state`] (cached health
//! that handlers read), [`server`] (the HTTP router), [`grpc`]
//! (`grpc.health.v1`), [`metrics`], [`lifecycle`] (the prestop drain),
//! [`signals`] (the only module that touches signals), [`procs`] (`/proc`
//! lookups), [`redact`] (keeping credentials out of output), [`ui`] (the
//! status page on `GET /`).
#![forbid(unsafe_code)]

pub mod checks;
pub mod config;
pub mod grpc;
pub mod inject;
pub mod lifecycle;
pub mod logging;
pub mod metrics;
pub mod procs;
pub mod redact;
pub mod reload;
pub mod server;
pub mod signals;
pub mod state;
pub mod supervisor;
pub mod timefmt;
pub mod ui;

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::checks::HttpClient;
use crate::config::Config;
use crate::redact::Secrets;
use crate::state::Health;

/// How long in-flight requests get to finish once shutdown has begun.
/// Native mode must exit within 2 s of SIGTERM, so this stays well below.
const SERVER_GRACE: Duration = Duration::from_millis(1000);
/// A client gets this long to send its request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head berth buffers (hyper's minimum is 8 KiB).
const MAX_REQUEST_HEAD: usize = 16 * 1024;
/// How long checkers get to close their connections.
const CHECKER_GRACE: Duration = Duration::from_millis(500);

/// Everything the handlers, checkers and the drain share.
pub struct App {
    /// Swapped whole by a config reload; read with [`App::config`].
    config: RwLock<Arc<Config>>,
    pub health: Arc<Health>,
    secrets: RwLock<Arc<Secrets>>,
    pub drain: lifecycle::Drain,
    /// Client for `drain.notify: {type: http}`.
    pub http: HttpClient,
    /// Set by `POST /api/v1/lifecycle/shutdown`.
    shutdown_requested: watch::Sender<bool>,
}

impl App {
    pub fn new(config: Config) -> Arc<App> {
        let health = Arc::new(Health::new(&config));
        let secrets = Arc::new(config.secrets());
        Arc::new(App {
            config: RwLock::new(Arc::new(config)),
            health,
            secrets: RwLock::new(secrets),
            drain: lifecycle::Drain::default(),
            http: checks::http_client(Duration::from_secs(2)),
            shutdown_requested: watch::channel(false).0,
        })
    }

    /// The configuration in force (the latest valid one after reloads).
    pub fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Every credential of the configuration in force.
    pub fn secrets(&self) -> Arc<Secrets> {
        self.secrets
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Installs a reloaded configuration (see [`reload`]).
    pub fn set_config(&self, config: Arc<Config>) {
        let secrets = Arc::new(config.secrets());
        *self.secrets.write().unwrap_or_else(|p| p.into_inner()) = secrets;
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = config;
    }

    pub fn request_shutdown(&self) {
        self.shutdown_requested.send_replace(true);
    }

    pub fn subscribe_shutdown(&self) -> watch::Receiver<bool> {
        self.shutdown_requested.subscribe()
    }
}

/// The sockets berth serves on: the health port, and the guarded
/// lifecycle port for kubelet's preStop hook when `lifecycle:` is set.
pub struct Listeners {
    pub health: TcpListener,
    pub lifecycle: Option<TcpListener>,
    /// `grpc.health.v1` (h2c) when `grpcListen` is set.
    pub grpc: Option<TcpListener>,
    /// The config file to watch for changes (a ConfigMap mount).
    pub reload_from: Option<PathBuf>,
}

/// Serves berth on `listener` alone (lifecycle paths for loopback callers
/// only); see [`serve`].
pub async fn run(
    app: Arc<App>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listeners = Listeners {
        health: listener,
        lifecycle: None,
        grpc: None,
        reload_from: None,
    };
    serve(app, listeners, shutdown).await
}

/// Serves berth until `shutdown` completes (or a loopback caller posts to
/// `/api/v1/lifecycle/shutdown`), then stops the checkers and returns.
/// Shutdown is an argument, not a global, so tests can drive it.
pub async fn serve(
    app: Arc<App>,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let checkers = Arc::new(supervisor::Supervisor::start(&app));
    if let Some(path) = listeners.reload_from {
        tokio::spawn(reload::watch(
            app.clone(),
            checkers.clone(),
            path,
            stop_rx.clone(),
        ));
    }

    let mut requested = app.subscribe_shutdown();
    let (began_tx, began_rx) = watch::channel(false);
    let health = app.health.clone();
    let trigger = async move {
        tokio::select! {
            _ = shutdown => {}
            _ = requested.wait_for(|r| *r) => {
                tracing::info!("shutdown requested over HTTP");
            }
        }
        // kubert's rule: readiness turns false as soon as shutdown starts.
        health.start_draining();
        began_tx.send_replace(true);
    };

    let health_server = http_server(
        listeners.health,
        server::router(app.clone()),
        began_rx.clone(),
    );
    let lifecycle_server = async {
        match listeners.lifecycle {
            Some(l) => {
                http_server(l, server::lifecycle_router(app.clone()), began_rx.clone()).await
            }
            None => Ok(()),
        }
    };
    let grpc_server = async {
        match listeners.grpc {
            Some(l) => {
                grpc::server::serve(l, app.clone(), began_rx.clone()).await;
                Ok(())
            }
            None => Ok(()),
        }
    };
    tokio::select! {
        r = async { tokio::try_join!(health_server, lifecycle_server, grpc_server) } => { r?; }
        _ = async {
            trigger.await;
            tokio::time::sleep(SERVER_GRACE).await;
        } => {
            tracing::info!("requests still in flight after the grace period: closing them");
        }
    }

    stop_tx.send_replace(true);
    let _ = tokio::time::timeout(CHECKER_GRACE, checkers.stop_all()).await;
    tracing::info!("berth stopped");
    Ok(())
}

/// One HTTP/1 server for `router` that stops accepting once `began` turns
/// true and then lets open requests finish (the caller bounds that wait).
///
/// hyper's connection builder directly instead of `axum::serve`, for two
/// settings axum does not expose: no vectored writes (a probe answer is one
/// small buffer; `writev` with two iovecs costs more than a copy) and a
/// deadline on reading request headers, so an idle or trickling client
/// (slowloris, from anywhere the port is published) cannot pin a task.
async fn http_server(
    listener: TcpListener,
    router: axum::Router,
    mut began: watch::Receiver<bool>,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower::ServiceExt;

    let mut http = hyper::server::conn::http1::Builder::new();
    http.writev(false)
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_REQUEST_HEAD);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = async { let _ = began.wait_for(|b| *b).await; } => break,
        };
        // Probe answers are one small write each: never hold them back (Nagle).
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service =
            hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
                // Handlers decide what a caller may see from the TCP peer.
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                router.clone().oneshot(req)
            });
        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
