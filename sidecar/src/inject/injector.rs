//! `berth injector`: the mutating admission webhook's HTTPS server.
//!
//! `POST /mutate` (pods that carry `berth.dev/inject: enabled`) and `POST
//! /mutate/namespace` (pods of namespaces the webhook's namespaceSelector
//! chose) answer an AdmissionReview with [`super::webhook`]'s patch; `GET
//! /healthz` is the probes'. It never denies and never breaks a pod: a body
//! over the limit gets 413 (the API server then applies failurePolicy:
//! Ignore), anything else that goes wrong gets `allowed: true` without a
//! patch and a log line saying why. Pod contents are never logged.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::webhook::{self, Scope, Settings};

/// Largest AdmissionReview read; a pod is far smaller (etcd's own limit
/// on an object is 1.5 MiB, the API server's request limit 3 MiB).
pub const MAX_BODY: usize = 1024 * 1024;
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The API server gives a webhook 10 s by default; answer well before.
const API_TIMEOUT: Duration = Duration::from_secs(3);
const SA_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// `berth injector` command line.
#[derive(clap::Args, Debug, Clone)]
pub struct InjectorArgs {
    #[arg(long, default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    /// Server certificate chain (PEM).
    #[arg(long)]
    pub tls_cert: PathBuf,
    /// Server private key (PEM).
    #[arg(long)]
    pub tls_key: PathBuf,
    /// Kubernetes version of the cluster (1.29+: native sidecars).
    #[arg(long, default_value = "1.35")]
    pub kube_version: String,
    /// berth's image for injected pods.
    #[arg(long, default_value = super::DEFAULT_IMAGE)]
    pub image: String,
    /// The API server for `berth.dev/config` lookups (default: in-cluster,
    /// with the pod's service account). Tests point it at a fake over http.
    #[arg(long, hide = true)]
    pub kube_api: Option<String>,
}

struct State {
    settings: Settings,
    api: Option<Api>,
}

/// Where ConfigMaps are read from.
struct Api {
    base: String,
    token: Option<String>,
    tls: Option<Arc<rustls::ClientConfig>>,
}

fn usage(m: String) -> ExitCode {
    eprintln!("berth injector: {m}");
    ExitCode::from(64)
}

pub fn run(args: InjectorArgs) -> ExitCode {
    let Some(native) = super::native_sidecars(&args.kube_version) else {
        return usage(format!(
            "--kube-version {:?}: expected e.g. 1.35",
            args.kube_version
        ));
    };
    let tls = match server_tls(&args.tls_cert, &args.tls_key) {
        Ok(t) => t,
        Err(m) => return usage(m),
    };
    crate::logging::init();
    let api = match api(args.kube_api.as_deref()) {
        Ok(a) => a,
        Err(m) => {
            tracing::warn!(error = %m, "no Kubernetes API: pods naming berth.dev/config are admitted unchanged");
            None
        }
    };
    let state = Arc::new(State {
        settings: Settings {
            native,
            image: args.image.clone(),
        },
        api,
    });
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berth injector: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        let mut signals = crate::signals::install()?;
        let listener = TcpListener::bind(args.listen).await.map_err(|e| {
            std::io::Error::new(e.kind(), format!("cannot listen on {}: {e}", args.listen))
        })?;
        tracing::info!(listen = %args.listen, native, "berth injector serving");
        tokio::select! {
            _ = serve(listener, tls, state) => {}
            _ = signals.next() => tracing::info!("stopping"),
        }
        Ok::<(), std::io::Error>(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth injector: {e}");
            ExitCode::FAILURE
        }
    }
}

fn server_tls(cert: &std::path::Path, key: &std::path::Path) -> Result<TlsAcceptor, String> {
    let read = |p: &std::path::Path, what: &str| {
        std::fs::read(p)
            .map_err(|e| format!("--{what} {}: {}", p.display(), crate::config::io_reason(&e)))
    };
    let certs = CertificateDer::pem_slice_iter(&read(cert, "tls-cert")?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| format!("--tls-cert {}: not PEM certificates", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("--tls-cert {}: no certificate", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_slice(&read(key, "tls-key")?)
        .map_err(|_| format!("--tls-key {}: not a PEM private key", key.display()))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| format!("--tls-cert/--tls-key: {e}"))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn api(given: Option<&str>) -> Result<Option<Api>, String> {
    if let Some(base) = given {
        return Ok(Some(Api {
            base: base.trim_end_matches('/').to_string(),
            token: None,
            tls: None,
        }));
    }
    let (Ok(host), Ok(port)) = (
        std::env::var("KUBERNETES_SERVICE_HOST"),
        std::env::var("KUBERNETES_SERVICE_PORT"),
    ) else {
        return Ok(None);
    };
    let token = std::fs::read_to_string(format!("{SA_DIR}/token"))
        .map_err(|e| format!("service account token: {}", crate::config::io_reason(&e)))?;
    let roots = berth_tls::Roots::File(format!("{SA_DIR}/ca.crt"))
        .load()
        .map_err(|e| e.to_string())?;
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    Ok(Some(Api {
        base: format!("https://{host}:{port}"),
        token: Some(token.trim().to_string()),
        tls: Some(Arc::new(tls)),
    }))
}

/// Accepts TLS connections until the task is dropped.
async fn serve(listener: TcpListener, tls: TlsAcceptor, state: Arc<State>) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let tls = tls.clone();
        let state = state.clone();
        let http = http.clone();
        tokio::spawn(async move {
            let Ok(Ok(stream)) =
                tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.accept(stream)).await
            else {
                return;
            };
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(req, &state).await) }
            });
            let _ = http.serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

fn reply(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

async fn handle(req: Request<hyper::body::Incoming>, state: &State) -> Response<Full<Bytes>> {
    let scope = match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz" | "/readyz") => {
            return reply(StatusCode::OK, "{\"status\":\"ok\"}".into())
        }
        (&Method::POST, "/mutate") => Scope::Pod,
        (&Method::POST, "/mutate/namespace") => Scope::Namespace,
        (_, "/mutate" | "/mutate/namespace" | "/healthz" | "/readyz") => {
            return reply(
                StatusCode::METHOD_NOT_ALLOWED,
                "{\"error\":\"method not allowed\"}".into(),
            )
        }
        _ => return reply(StatusCode::NOT_FOUND, "{\"error\":\"not found\"}".into()),
    };
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            let too_large = e
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some();
            tracing::warn!(
                too_large,
                "review body unreadable: pod admitted unchanged (failurePolicy: Ignore)"
            );
            let status = if too_large {
                StatusCode::PAYLOAD_TOO_LARGE
            } else {
                StatusCode::BAD_REQUEST
            };
            return reply(status, webhook::response("", None).to_string());
        }
    };
    let answer = review(&body, scope, state).await;
    reply(StatusCode::OK, answer.to_string())
}

async fn review(body: &[u8], scope: Scope, state: &State) -> Value {
    let req = match webhook::parse(body, scope) {
        Ok(r) => r,
        Err((uid, why)) => {
            tracing::info!(uid = %uid, reason = %why, "admitted unchanged");
            return webhook::response(&uid, None);
        }
    };
    let name = req
        .pod
        .pointer("/metadata/name")
        .or_else(|| req.pod.pointer("/metadata/generateName"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let config = match &req.config_map {
        None => None,
        Some(cm) => match fetch_config(state, &req.namespace, cm).await {
            Ok(text) => Some(text),
            Err(why) => {
                tracing::warn!(uid = %req.uid, namespace = %req.namespace, pod = %name, config_map = %cm, reason = %why, "admitted unchanged");
                return webhook::response(&req.uid, None);
            }
        },
    };
    match webhook::mutate(&req.pod, config.as_deref(), &state.settings) {
        Ok(after) => {
            let patch = webhook::patch(&req.pod, &after);
            tracing::info!(uid = %req.uid, namespace = %req.namespace, pod = %name, "berth injected");
            webhook::response(&req.uid, Some(&patch))
        }
        Err(why) => {
            tracing::warn!(uid = %req.uid, namespace = %req.namespace, pod = %name, reason = %why, "admitted unchanged");
            webhook::response(&req.uid, None)
        }
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

/// GET /api/v1/namespaces/NS/configmaps/NAME → data["berth.yaml"].
async fn fetch_config(state: &State, namespace: &str, name: &str) -> Result<String, String> {
    let Some(api) = &state.api else {
        return Err("no Kubernetes API to read berth.dev/config from".into());
    };
    if !valid_name(namespace) || !valid_name(name) {
        return Err("berth.dev/config or the namespace is not a valid object name".into());
    }
    let url = format!(
        "{}/api/v1/namespaces/{namespace}/configmaps/{name}",
        api.base
    );
    let body = tokio::time::timeout(API_TIMEOUT, get(api, &url))
        .await
        .map_err(|_| "the API server did not answer in time".to_string())??;
    let v: Value =
        serde_json::from_slice(&body).map_err(|_| "the API answer is not JSON".to_string())?;
    v.pointer("/data/berth.yaml")
        .and_then(Value::as_str)
        .map(String::from)
        .ok_or_else(|| format!("ConfigMap {name} has no key berth.yaml"))
}

async fn get(api: &Api, url: &str) -> Result<Vec<u8>, String> {
    use hyper_util::rt::TokioIo;
    let uri: http::Uri = url.parse().map_err(|_| "bad API URL".to_string())?;
    let host = uri
        .host()
        .unwrap_or("")
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let https = uri.scheme_str() == Some("https");
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| format!("cannot reach the API server: {e}"))?;
    let mut req = Request::get(uri.path()).header(
        http::header::HOST,
        uri.authority().map(|a| a.as_str()).unwrap_or(""),
    );
    if let Some(t) = &api.token {
        req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = req
        .body(http_body_util::Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = if let (true, Some(tls)) = (https, &api.tls) {
        let server = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|_| "bad API host".to_string())?;
        let stream = tokio_rustls::TlsConnector::from(tls.clone())
            .connect(server, tcp)
            .await
            .map_err(|e| format!("TLS to the API server: {e}"))?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        send.send_request(req).await.map_err(|e| e.to_string())?
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        send.send_request(req).await.map_err(|e| e.to_string())?
    };
    let status = resp.status();
    let body = Limited::new(resp.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|_| "the API answer is too large or broken".to_string())?
        .to_bytes();
    if !status.is_success() {
        return Err(format!("the API server answered {status}"));
    }
    Ok(body.to_vec())
}
