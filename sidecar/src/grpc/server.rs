//! berth as a `grpc.health.v1.Health` server (h2c on `grpcListen`), so a
//! Kubernetes `grpc:` probe can target it. Answers come from the cached
//! state, like every HTTP endpoint: a probe never runs a check.
//!
//! Service names: `""` is berth's readiness (the same rule as
//! `/api/v1/health/ready`), a check's name is that check (up after
//! thresholds), a group's name is the group (every critical member up).
//! An unknown name is `NOT_FOUND` for Check and `SERVICE_UNKNOWN` for Watch,
//! as the gRPC health protocol says. Read-only by construction: nothing on
//! this port changes berth's state.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::{
    decode_request, encode_response, frame, unframe, ServingStatus, CHECK_PATH, MAX_MESSAGE,
    WATCH_PATH,
};
use crate::state::Status;
use crate::App;

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// gRPC status codes berth answers with.
const OK: u32 = 0;
const INVALID_ARGUMENT: u32 = 3;
const NOT_FOUND: u32 = 5;
const UNIMPLEMENTED: u32 = 12;
const UNAVAILABLE: u32 = 14;

/// Connections a probe storm may open at once; more wait in the backlog.
const MAX_STREAMS: u32 = 64;

/// Serves until `began` (shutdown) turns true.
pub async fn serve(listener: TcpListener, app: Arc<App>, began: watch::Receiver<bool>) {
    let mut stopping = began.clone();
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "grpc accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = async { let _ = stopping.wait_for(|b| *b).await; } => return,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let mut began = began.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(handle(app, req).await) }
            });
            let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .max_concurrent_streams(MAX_STREAMS)
                .max_header_list_size(16 * 1024)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            let stopping = tokio::select! {
                _ = conn.as_mut() => false,
                _ = async { let _ = began.wait_for(|b| *b).await; } => true,
            };
            if stopping {
                conn.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(Duration::from_secs(1), conn).await;
            }
        });
    }
}

/// The status of `service` now, `None` when no check or group has that name.
pub fn status_of(app: &App, service: &str) -> Option<ServingStatus> {
    let h = &app.health;
    let serving = |up: bool| {
        if up {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        }
    };
    if service.is_empty() {
        return Some(serving(h.ready()));
    }
    if let Some(cell) = h.cell(service) {
        return Some(serving(cell.snapshot().status == Status::Up));
    }
    h.group(service).map(|(up, _)| serving(up))
}

async fn handle(app: Arc<App>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    if req.method() != http::Method::POST || (path != CHECK_PATH && path != WATCH_PATH) {
        return trailers_only(UNIMPLEMENTED, "berth serves grpc.health.v1.Health only");
    }
    let grpc = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"));
    if !grpc {
        return trailers_only(INVALID_ARGUMENT, "content-type must be application/grpc");
    }
    // One small message: anything bigger is refused before it is buffered.
    let body = match Limited::new(req.into_body(), MAX_MESSAGE + 5)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => return trailers_only(INVALID_ARGUMENT, "request too large or broken"),
    };
    let service = match unframe(&body) {
        Ok(Some((msg, _))) => match decode_request(msg) {
            Ok(s) => s,
            Err(e) => return trailers_only(INVALID_ARGUMENT, &e.to_string()),
        },
        Ok(None) => return trailers_only(INVALID_ARGUMENT, "no request message"),
        Err(e) => return trailers_only(INVALID_ARGUMENT, &e.to_string()),
    };
    if path == CHECK_PATH {
        match status_of(&app, &service) {
            Some(status) => unary(status),
            None => trailers_only(NOT_FOUND, "unknown service"),
        }
    } else {
        watch_stream(app, service)
    }
}

fn grpc_headers(resp: &mut Response<Body>) {
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
}

fn status_trailers(code: u32, message: &str) -> HeaderMap {
    let mut t = HeaderMap::new();
    t.insert("grpc-status", HeaderValue::from(code));
    if !message.is_empty() {
        // Fixed texts only; never anything from the request.
        if let Ok(v) = HeaderValue::from_str(message) {
            t.insert("grpc-message", v);
        }
    }
    t
}

/// An error as gRPC's "trailers-only" response: status in the headers.
fn trailers_only(code: u32, message: &str) -> Response<Body> {
    let mut resp = Response::new(http_body_util::Empty::new().boxed_unsync());
    grpc_headers(&mut resp);
    resp.headers_mut().extend(status_trailers(code, message));
    resp
}

fn message_frame(status: ServingStatus) -> Frame<Bytes> {
    Frame::data(Bytes::from(frame(&encode_response(status))))
}

fn unary(status: ServingStatus) -> Response<Body> {
    let frames = futures::stream::iter([
        Ok::<_, Infallible>(message_frame(status)),
        Ok(Frame::trailers(status_trailers(OK, ""))),
    ]);
    let mut resp = Response::new(StreamBody::new(frames).boxed_unsync());
    grpc_headers(&mut resp);
    resp
}

/// Watch: the current status at once, then every change. On shutdown the
/// connection is closed gracefully (GOAWAY), which ends the stream.
fn watch_stream(app: Arc<App>, service: String) -> Response<Body> {
    let changes = app.health.subscribe_changes();
    let state = (app, service, changes, None::<ServingStatus>, false);
    let stream = futures::stream::unfold(
        state,
        |(app, service, mut changes, last, done)| async move {
            if done {
                return None;
            }
            loop {
                let now = status_of(&app, &service).unwrap_or(ServingStatus::ServiceUnknown);
                if Some(now) != last {
                    return Some((
                        Ok(message_frame(now)),
                        (app, service, changes, Some(now), false),
                    ));
                }
                if changes.changed().await.is_err() {
                    // Health is gone (shutdown): end the stream with a status.
                    let t = Frame::trailers(status_trailers(UNAVAILABLE, "berth is shutting down"));
                    return Some((Ok(t), (app, service, changes, last, true)));
                }
            }
        },
    );
    let mut resp = Response::new(StreamBody::new(stream.boxed()).boxed_unsync());
    grpc_headers(&mut resp);
    resp
}
