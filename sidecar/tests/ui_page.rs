//! The status page (`GET /`, `/ui`) and the JSON it reads
//! (`/api/v1/health/?history=1`).
//!
//! Router tests through `tower::ServiceExt::oneshot` prove the headers and
//! that the page's JSON follows the redaction of `/api/v1/health/` (the
//! peer is played by inserting `ConnectInfo`, as the real server does). The
//! browser test runs tests/ui/berth-page.test.mjs under `node --test`
//! against the real binary in Debian's headless Chromium (installed by
//! tools/setup.sh; node dependencies with `npm ci` on first use).
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Request, StatusCode};
use berth::redact::CheckError;
use berth::App;
use http_body_util::BodyExt;
use tower::ServiceExt;

const LOOPBACK: &str = "127.0.0.1:40000";
const REMOTE: &str = "10.1.2.3:40000";
const DETAIL: &str = "connect 10.0.0.5:5432: <script>alert(1)</script>";

fn app() -> Arc<App> {
    let yaml = "token: let-me-in\nchecks:\n  - {name: db, type: tcp, address: \"10.0.0.5:5432\", interval: 3s, failureThreshold: 1}\n  \
                - {name: cache, type: tcp, address: \"10.0.0.6:6379\", critical: false}\n\
                groups:\n  storage: [db, cache]\n";
    let app = App::new(berth::config::parse(yaml, &|_| None).unwrap());
    // db: up, up, then refused; cache: never answered.
    app.health.record(0, Ok(()), Duration::from_micros(2500));
    app.health.record(0, Ok(()), Duration::from_millis(4));
    app.health.record(
        0,
        Err(CheckError::new("connection_refused", DETAIL)),
        Duration::from_millis(1),
    );
    app
}

async fn get(
    app: &Arc<App>,
    path: &str,
    peer: &str,
    auth: Option<&str>,
) -> (StatusCode, HeaderMap, String) {
    let mut req = Request::builder().uri(path);
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let mut req = req.body(Body::empty()).unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
    let resp = berth::server::router(app.clone())
        .oneshot(req)
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8(body.to_vec()).unwrap())
}

async fn view(app: &Arc<App>, peer: &str, auth: Option<&str>) -> serde_json::Value {
    let (status, headers, body) = get(app, "/api/v1/health/?history=1", peer, auth).await;
    assert_eq!(status, StatusCode::OK, "the page's view is always 200");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["cache-control"], "no-store");
    serde_json::from_str(&body).unwrap()
}

#[tokio::test]
async fn the_page_is_self_contained_with_a_strict_policy() {
    let app = app();
    for path in ["/", "/ui"] {
        let (status, h, body) = get(&app, path, REMOTE, None).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(h["content-type"], "text/html; charset=utf-8");
        assert_eq!(h["cache-control"], "no-store");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["x-frame-options"], "DENY");
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.starts_with("default-src 'none';"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(csp.contains("connect-src 'self'"), "{csp}");
        assert!(!csp.contains("unsafe"), "{csp}");
        assert!(body.starts_with("<!doctype html>"));
        // No external asset of any kind.
        for external in ["http://", "https://", "src=\"", "<link rel=\"stylesheet"] {
            assert!(!body.contains(external), "page refers to {external}");
        }
        // The hashes in the policy are those of the inline style and script.
        let p = berth::ui::assembled();
        assert_eq!(body, p.html);
        assert_eq!(csp, p.csp);
        assert_eq!(csp.matches("'sha256-").count(), 2, "{csp}");
    }
}

#[tokio::test]
async fn the_page_answers_head_and_refuses_post() {
    let app = app();
    let req = Request::builder()
        .method("HEAD")
        .uri("/")
        .body(Body::empty())
        .unwrap();
    let resp = berth::server::router(app.clone())
        .oneshot(req)
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let req = Request::builder()
        .method("POST")
        .uri("/")
        .body(Body::empty())
        .unwrap();
    let resp = berth::server::router(app).oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn a_remote_peer_gets_the_kind_only_in_the_pages_json() {
    let app = app();
    let v = view(&app, REMOTE, None).await;
    assert_eq!(v["detail"], false);
    let db = &v["checks"][0];
    assert_eq!(db["name"], "db");
    assert_eq!(db["error"], "connection_refused");
    assert!(!v.to_string().contains("10.0.0.5"), "{v}");
    assert!(!v.to_string().contains("script"), "{v}");
    // A wrong token is no token.
    let v = view(&app, REMOTE, Some("Bearer let-me-out")).await;
    assert_eq!(v["detail"], false);
    assert_eq!(v["checks"][0]["error"], "connection_refused");
}

#[tokio::test]
async fn loopback_and_the_token_get_the_detail_in_the_pages_json() {
    let app = app();
    for (peer, auth) in [(LOOPBACK, None), (REMOTE, Some("Bearer let-me-in"))] {
        let v = view(&app, peer, auth).await;
        assert_eq!(v["detail"], true, "{peer}");
        assert_eq!(
            v["checks"][0]["error"],
            format!("connection_refused: {DETAIL}"),
            "{peer}"
        );
    }
}

#[tokio::test]
async fn the_page_and_the_health_endpoint_agree_on_every_caller() {
    let app = app();
    for (peer, auth) in [
        (LOOPBACK, None),
        (REMOTE, None),
        (REMOTE, Some("Bearer let-me-in")),
        ("[::ffff:10.1.2.3]:1", None),
        ("[::1]:1", None),
    ] {
        let (_, _, plain) = get(&app, "/api/v1/health/", peer, auth).await;
        let plain: serde_json::Value = serde_json::from_str(&plain).unwrap();
        let page = view(&app, peer, auth).await;
        for i in 0..2 {
            assert_eq!(
                plain["checks"][i]["error"], page["checks"][i]["error"],
                "{peer} {auth:?}"
            );
        }
    }
}

#[tokio::test]
async fn the_pages_json_has_history_groups_and_readiness() {
    let app = app();
    let v = view(&app, LOOPBACK, None).await;
    assert_eq!(v["status"], "unhealthy");
    assert_eq!(v["ready"], false);
    let db = &v["checks"][0];
    assert_eq!(db["interval_ms"], 3000);
    assert_eq!(
        db["history"],
        serde_json::json!([[true, 2.5], [true, 4.0], [false, 1.0]]),
        "oldest first, [ok, latency_ms]"
    );
    assert_eq!(v["checks"][1]["history"], serde_json::json!([]));
    assert_eq!(v["checks"][1]["interval_ms"], 5000);
    assert_eq!(
        v["groups"],
        serde_json::json!([{"name": "storage", "status": "down", "checks": [
            {"name": "db", "status": "down", "critical": true},
            {"name": "cache", "status": "unknown", "critical": false},
        ]}])
    );
    // Only the last 60 results are kept.
    for _ in 0..100 {
        app.health.record(0, Ok(()), Duration::from_millis(1));
    }
    let v = view(&app, LOOPBACK, None).await;
    let history = v["checks"][0]["history"].as_array().unwrap();
    assert_eq!(history.len(), berth::state::HISTORY);
    assert!(history.iter().all(|h| h[0] == true));
}

#[tokio::test]
async fn the_plain_health_body_is_unchanged() {
    let app = app();
    let (status, _, body) = get(&app, "/api/v1/health/", LOOPBACK, None).await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "db is critical and down"
    );
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    assert_eq!(
        keys,
        ["checks", "draining", "started", "status", "uptime_seconds"]
    );
    let check_keys: Vec<&str> = v["checks"][0]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert!(!check_keys.contains(&"history") && !check_keys.contains(&"interval_ms"));
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The page in real headless Chromium (tests/ui/berth-page.test.mjs):
/// live state, a check going red within its interval, the history strip,
/// HTML-ish error text shown as text, a remote peer without detail, and no
/// console error. `serial_`: it measures time to red on a 2-core machine.
#[test]
fn serial_status_page_in_headless_chromium() {
    let dir = repo_root().join("tests/ui");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} is missing: run tools/setup.sh (installs Debian's chromium)"
    );
    if !dir
        .join("node_modules/playwright-core/package.json")
        .exists()
    {
        let out = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
            .current_dir(&dir)
            .output()
            .expect("npm is missing: run tools/setup.sh (installs nodejs and npm)");
        assert!(
            out.status.success(),
            "npm ci in tests/ui failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = Command::new("node")
        .args(["--test", "--test-reporter=spec", "berth-page.test.mjs"])
        .env("BERTH_BIN", env!("CARGO_BIN_EXE_berth"))
        .env("CHROMIUM", &chromium)
        .env_remove("BERTH_UI_SCREENSHOTS")
        .current_dir(&dir)
        .output()
        .expect("node is missing: run tools/setup.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}{stderr}");
    assert!(
        out.status.success(),
        "browser test failed:\n{stdout}{stderr}"
    );
}
