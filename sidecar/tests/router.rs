//! The health router through `tower::ServiceExt::oneshot`: status codes,
//! headers and JSON of sidecar/README.md ("Endpoints"), driven by recording check results into the
//! cached state directly (no dependency involved, which is the point: the
//! handlers only ever read that state). Peers are simulated by inserting
//! `ConnectInfo` into the request, as the real server does.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use berth::redact::CheckError;
use berth::App;
use http_body_util::BodyExt;
use tower::ServiceExt;

const LOOPBACK: &str = "127.0.0.1:40000";
const REMOTE: &str = "10.1.2.3:40000";

fn app(yaml: &str) -> Arc<App> {
    App::new(berth::config::parse(yaml, &|_| None).unwrap())
}

/// db (critical) + cache (optional).
fn two_checks() -> Arc<App> {
    app(
        "token: let-me-in\nchecks:\n  - {name: db, type: tcp, address: \"10.0.0.5:5432\"}\n  \
         - {name: cache, type: tcp, address: \"10.0.0.6:6379\", critical: false}\n",
    )
}

struct Resp {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

impl Resp {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

async fn call(
    app: &Arc<App>,
    method: Method,
    path: &str,
    peer: Option<&str>,
    auth: Option<&str>,
) -> Resp {
    let headers: Vec<(&str, &str)> = auth.map(|a| ("authorization", a)).into_iter().collect();
    call_on(
        berth::server::router(app.clone()),
        method,
        path,
        peer,
        &headers,
    )
    .await
}

/// One request through `router` (the health or the lifecycle port's) from
/// `peer` with extra `headers`.
async fn call_on(
    router: axum::Router,
    method: Method,
    path: &str,
    peer: Option<&str>,
    headers: &[(&str, &str)],
) -> Resp {
    let mut req = Request::builder().method(method).uri(path);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let mut req = req.body(Body::empty()).unwrap();
    if let Some(p) = peer {
        req.extensions_mut()
            .insert(ConnectInfo(p.parse::<SocketAddr>().unwrap()));
    }
    let resp = router.oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    Resp {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

async fn get(app: &Arc<App>, path: &str) -> Resp {
    call(app, Method::GET, path, Some(LOOPBACK), None).await
}

fn up(app: &App, idx: usize) {
    app.health.record(idx, Ok(()), Duration::from_millis(3));
}

fn down(app: &App, idx: usize) {
    // The first failure from unknown decides; after up, thresholds apply.
    for _ in 0..3 {
        app.health.record(
            idx,
            Err(CheckError::new(
                "connection_refused",
                "connect 10.0.0.5:5432 as app: refused",
            )),
            Duration::from_millis(1),
        );
    }
}

#[tokio::test]
async fn every_health_response_is_json_and_not_cached() {
    let app = two_checks();
    for path in [
        "/api/v1/health/",
        "/api/v1/health/live",
        "/api/v1/health/ready",
        "/api/v1/health/startup",
    ] {
        let r = get(&app, path).await;
        assert_eq!(r.headers["content-type"], "application/json", "{path}");
        assert_eq!(r.headers["cache-control"], "no-store", "{path}");
        let _ = r.json();
    }
}

#[tokio::test]
async fn head_is_supported_and_other_methods_are_405_json() {
    let app = two_checks();
    up(&app, 0);
    let r = call(
        &app,
        Method::HEAD,
        "/api/v1/health/ready",
        Some(LOOPBACK),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.is_empty());
    for m in [Method::POST, Method::PUT, Method::DELETE] {
        let r = call(&app, m.clone(), "/api/v1/health/live", Some(LOOPBACK), None).await;
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{m}");
        assert_eq!(r.json()["error"]["code"], "method_not_allowed");
    }
    let r = get(&app, "/api/v1/nope").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json()["error"]["code"], "not_found");
}

#[tokio::test]
async fn not_ready_until_the_startup_gate_passes_and_then_it_is_sticky() {
    let app = two_checks();
    let r = get(&app, "/api/v1/health/startup").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.json()["waiting_for"], serde_json::json!(["db"]));
    assert_eq!(
        get(&app, "/api/v1/health/ready").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        get(&app, "/api/v1/health/live").await.status,
        StatusCode::OK
    );

    up(&app, 0);
    assert_eq!(
        get(&app, "/api/v1/health/startup").await.status,
        StatusCode::OK
    );
    assert_eq!(
        get(&app, "/api/v1/health/ready").await.status,
        StatusCode::OK
    );

    down(&app, 0);
    let r = get(&app, "/api/v1/health/ready").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.json()["reason"], "critical check down");
    assert_eq!(
        get(&app, "/api/v1/health/startup").await.status,
        StatusCode::OK,
        "startup stays passed"
    );
    assert_eq!(
        get(&app, "/api/v1/health/live").await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn optional_check_down_is_degraded_and_still_ready() {
    let app = two_checks();
    up(&app, 0);
    up(&app, 1);
    let r = get(&app, "/api/v1/health/").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["status"], "healthy");

    down(&app, 1);
    let r = get(&app, "/api/v1/health/").await;
    assert_eq!(r.status, StatusCode::OK);
    let j = r.json();
    assert_eq!(j["status"], "degraded");
    assert_eq!(j["checks"][1]["status"], "down");
    assert_eq!(j["checks"][1]["consecutive_failures"], 3);
    assert!(j["checks"][1]["last_failure"].is_string());
    assert_eq!(
        get(&app, "/api/v1/health/ready").await.status,
        StatusCode::OK
    );

    down(&app, 0);
    let r = get(&app, "/api/v1/health/").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.json()["status"], "unhealthy");
}

#[tokio::test]
async fn health_body_has_every_field_of_the_contract() {
    let app = two_checks();
    up(&app, 0);
    let j = get(&app, "/api/v1/health/").await.json();
    for key in ["status", "draining", "started", "uptime_seconds", "checks"] {
        assert!(j.get(key).is_some(), "missing {key}: {j}");
    }
    let c = &j["checks"][0];
    for key in [
        "name",
        "type",
        "critical",
        "status",
        "latency_ms",
        "consecutive_failures",
        "last_success",
        "last_failure",
        "error",
    ] {
        assert!(c.get(key).is_some(), "missing checks[].{key}: {c}");
    }
    assert_eq!(c["name"], "db");
    assert_eq!(c["type"], "tcp");
    assert_eq!(c["critical"], true);
    assert_eq!(c["status"], "up");
    assert_eq!(j["checks"][1]["status"], "unknown");
}

#[tokio::test]
async fn error_detail_only_for_loopback_or_the_bearer_token() {
    let app = two_checks();
    up(&app, 0);
    down(&app, 0);
    let error_for = |r: Resp| r.json()["checks"][0]["error"].as_str().unwrap().to_string();

    let remote = error_for(call(&app, Method::GET, "/api/v1/health/", Some(REMOTE), None).await);
    assert_eq!(
        remote, "connection_refused",
        "a remote caller gets the kind only"
    );
    let unknown_peer = error_for(call(&app, Method::GET, "/api/v1/health/", None, None).await);
    assert_eq!(
        unknown_peer, "connection_refused",
        "no ConnectInfo counts as remote"
    );
    let wrong = error_for(
        call(
            &app,
            Method::GET,
            "/api/v1/health/",
            Some(REMOTE),
            Some("Bearer guess"),
        )
        .await,
    );
    assert_eq!(wrong, "connection_refused");

    let token = error_for(
        call(
            &app,
            Method::GET,
            "/api/v1/health/",
            Some(REMOTE),
            Some("Bearer let-me-in"),
        )
        .await,
    );
    assert!(token.contains("10.0.0.5:5432"), "{token}");
    let local = error_for(get(&app, "/api/v1/health/").await);
    assert!(local.contains("10.0.0.5:5432"), "{local}");
    let mapped = error_for(
        call(
            &app,
            Method::GET,
            "/api/v1/health/",
            Some("[::ffff:127.0.0.1]:1"),
            None,
        )
        .await,
    );
    assert!(
        mapped.contains("10.0.0.5"),
        "v4-mapped loopback is loopback: {mapped}"
    );
}

#[tokio::test]
async fn draining_makes_ready_503_at_once_and_live_stays_200() {
    let app = two_checks();
    up(&app, 0);
    assert_eq!(
        get(&app, "/api/v1/health/ready").await.status,
        StatusCode::OK
    );
    app.health.start_draining();
    let r = get(&app, "/api/v1/health/ready").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.json()["reason"], "draining");
    assert_eq!(
        get(&app, "/api/v1/health/live").await.status,
        StatusCode::OK
    );
    assert_eq!(get(&app, "/api/v1/health/").await.json()["draining"], true);
}

#[tokio::test]
async fn shutdown_is_loopback_only() {
    let app = two_checks();
    let mut requested = app.subscribe_shutdown();
    let r = call(
        &app,
        Method::POST,
        "/api/v1/lifecycle/shutdown",
        Some(REMOTE),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.json()["error"]["code"], "forbidden");
    assert!(!*requested.borrow_and_update());
    let r = call(&app, Method::POST, "/api/v1/lifecycle/shutdown", None, None).await;
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "unknown peer is not loopback"
    );

    let r = call(
        &app,
        Method::POST,
        "/api/v1/lifecycle/shutdown",
        Some(LOOPBACK),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(*requested.borrow_and_update());
}

#[tokio::test]
async fn metrics_expose_every_series() {
    let app = two_checks();
    up(&app, 0);
    down(&app, 1);
    let r = get(&app, "/metrics").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let m = r.body;
    for line in [
        "berth_check_up{check=\"db\",type=\"tcp\",critical=\"true\"} 1",
        "berth_check_up{check=\"cache\",type=\"tcp\",critical=\"false\"} 0",
        "berth_check_failures_total{check=\"cache\"} 3",
        "berth_check_transitions_total{check=\"db\"} 1",
        "berth_ready 1",
        "berth_started 1",
        "berth_draining 0",
        "berth_build_info{version=\"0.1.0\"} 1",
    ] {
        assert!(m.lines().any(|l| l == line), "missing {line:?} in:\n{m}");
    }
    assert!(
        m.contains("berth_check_latency_seconds{check=\"db\"} 0.003"),
        "{m}"
    );
    assert!(m.contains("berth_uptime_seconds "), "{m}");
}

/// Prestop through the router: GET and POST both drain; the JSON shape of sidecar/README.md ("Lifecycle").
#[tokio::test(start_paused = true)]
async fn prestop_answers_the_contract_json() {
    let app = app(&format!(
        "drain:\n  delay: 2s\n  timeout: 10s\n  notify: {{type: none}}\nlifecycle: {{token: {HOOK_TOKEN}}}\n"
    ));
    let r = call(
        &app,
        Method::GET,
        "/api/v1/lifecycle/prestop",
        Some(LOOPBACK),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let j = r.json();
    assert_eq!(j["status"], "drained");
    assert_eq!(j["elapsed_ms"], 2000);
    assert_eq!(j["notify"]["type"], "none");
    assert_eq!(j["notify"]["errors"], serde_json::json!([]));
    assert_eq!(j["waited_for"], serde_json::json!([]));
    // kubelet's hook: from the node (not loopback), on the lifecycle port, with the token.
    let again = call_on(
        berth::server::lifecycle_router(app.clone()),
        Method::POST,
        "/api/v1/lifecycle/prestop",
        Some(REMOTE),
        &[(berth::config::LIFECYCLE_TOKEN_HEADER, HOOK_TOKEN)],
    )
    .await;
    assert_eq!(again.json(), j, "a later call gets the same report");
}

const HOOK_TOKEN: &str = "0123456789abcdef-hook-token";

/// Who may drain: on the health port only loopback; on the lifecycle port
/// loopback or the hook's token. Everyone else gets 403 and readiness stays.
#[tokio::test(start_paused = true)]
async fn lifecycle_paths_refuse_remote_callers_without_the_hook_token() {
    let app = app(&format!(
        "drain:\n  delay: 1s\n  timeout: 5s\n  notify: {{type: none}}\nlifecycle:\n  listen: 0.0.0.0:8643\n  token: {HOOK_TOKEN}\n"
    ));
    let health = || berth::server::router(app.clone());
    let lifecycle = || berth::server::lifecycle_router(app.clone());
    let wrong = [(
        berth::config::LIFECYCLE_TOKEN_HEADER,
        "0123456789abcdef-not-it!",
    )];
    let right = [(berth::config::LIFECYCLE_TOKEN_HEADER, HOOK_TOKEN)];
    let bearer = format!("Bearer {HOOK_TOKEN}");
    let as_bearer = [("authorization", bearer.as_str())];
    for path in ["/api/v1/lifecycle/prestop", "/api/v1/lifecycle/shutdown"] {
        for method in [Method::GET, Method::POST] {
            for (label, router, peer, headers) in [
                ("health port, remote", health(), Some(REMOTE), &[][..]),
                ("health port, no peer", health(), None, &[][..]),
                (
                    "health port, remote + token",
                    health(),
                    Some(REMOTE),
                    &right[..],
                ),
                ("lifecycle port, remote", lifecycle(), Some(REMOTE), &[][..]),
                (
                    "lifecycle port, wrong token",
                    lifecycle(),
                    Some(REMOTE),
                    &wrong[..],
                ),
                (
                    "lifecycle port, token as bearer",
                    lifecycle(),
                    Some(REMOTE),
                    &as_bearer[..],
                ),
            ] {
                let r = call_on(router, method.clone(), path, peer, headers).await;
                assert!(
                    r.status == StatusCode::FORBIDDEN
                        || r.status == StatusCode::NOT_FOUND
                        || (r.status == StatusCode::METHOD_NOT_ALLOWED
                            && path.ends_with("shutdown")
                            && method == Method::GET),
                    "{label}: {method} {path} answered {} {}",
                    r.status,
                    r.body
                );
                assert!(!r.body.contains(HOOK_TOKEN), "{label}: token echoed");
                assert!(app.health.ready() || !app.health.started(), "{label}");
                assert!(
                    !app.health.draining(),
                    "{label}: {method} {path} started a drain"
                );
            }
        }
    }
    // The token never unlocks shutdown; only loopback does.
    let r = call_on(
        lifecycle(),
        Method::POST,
        "/api/v1/lifecycle/shutdown",
        Some(REMOTE),
        &right,
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    // Health paths are not served on the lifecycle port at all.
    let r = call_on(
        lifecycle(),
        Method::GET,
        "/api/v1/health/ready",
        Some(REMOTE),
        &right,
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    // The hook drains.
    let r = call_on(
        lifecycle(),
        Method::GET,
        "/api/v1/lifecycle/prestop",
        Some(REMOTE),
        &right,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["status"], "drained");
    assert!(app.health.draining());
}

/// `berth::run` over a real socket: it serves, real peers get `ConnectInfo`
/// (a loopback client sees error detail), and it returns promptly once the
/// shutdown future completes, with readiness false from that moment.
#[tokio::test]
async fn run_serves_a_real_socket_and_stops_on_the_shutdown_future() {
    let closed = berth_tests::free_port();
    let app = app(&format!(
        "checks:\n  - {{name: dep, type: tcp, address: \"127.0.0.1:{closed}\", critical: false, interval: 1s, timeout: 500ms}}\n"
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(berth::run(app.clone(), listener, async move {
        let _ = stop_rx.await;
    }));
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let base = format!("http://{addr}");
    let mut body = serde_json::Value::Null;
    for _ in 0..250 {
        let r = client
            .get(format!("{base}/api/v1/health/"))
            .send()
            .await
            .unwrap();
        body = r.json().await.unwrap();
        if body["checks"][0]["status"] == "down" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let error = body["checks"][0]["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("connection_refused: "),
        "a loopback peer gets the detail: {body}"
    );
    let r = client
        .get(format!("{base}/api/v1/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "optional check down: still ready");

    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(3), server)
        .await
        .expect("run returns within the grace period")
        .unwrap()
        .unwrap();
    assert!(app.health.draining() && !app.health.ready());
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the listener is closed"
    );
}

/// A checker task that stops looping (wedged on a lock, a blocking call, a
/// dead task) fails `/live` once its heartbeat is older than 2 × interval +
/// timeout + 10 s, so the kubelet restarts berth; dependencies being down
/// never do. The clock is tokio's, paused and advanced here.
#[tokio::test(start_paused = true)]
async fn live_fails_when_a_checker_stops_looping() {
    let app = app(
        "checks:\n  - {name: db, type: tcp, address: \"10.0.0.5:5432\", interval: 5s, timeout: 1s}\n  \
         - {name: cache, type: tcp, address: \"10.0.0.6:6379\", critical: false, interval: 5s, timeout: 1s}\n",
    );
    down(&app, 0);
    down(&app, 1);
    let stale_after = Duration::from_secs(2 * 5 + 1 + 10);
    // Both checkers loop (and keep failing): dependencies never make berth dead.
    for _ in 0..3 {
        tokio::time::advance(Duration::from_secs(5)).await;
        app.health.beat(0);
        app.health.beat(1);
        assert_eq!(
            get(&app, "/api/v1/health/live").await.status,
            StatusCode::OK
        );
    }
    // The cache checker stalls; the db checker keeps looping.
    tokio::time::advance(stale_after - Duration::from_secs(1)).await;
    app.health.beat(0);
    assert_eq!(
        get(&app, "/api/v1/health/live").await.status,
        StatusCode::OK,
        "within the allowance"
    );
    tokio::time::advance(Duration::from_secs(2)).await;
    app.health.beat(0);
    let r = get(&app, "/api/v1/health/live").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    assert_eq!(r.json()["reason"], "a checker task has stalled");
    // It loops again: alive again.
    app.health.beat(1);
    assert_eq!(
        get(&app, "/api/v1/health/live").await.status,
        StatusCode::OK
    );
}
