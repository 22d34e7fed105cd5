//! API tests: every route through the router (`oneshot`), plus real-socket
//! tests (binary on a port; Redis-backed rate limiting with Redis failing).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use jobqueue::api::{router, ApiState};
use jobqueue::config::{ApiConfig, Env};
use serde_json::{json, Value};
use tower::ServiceExt;

use common::Db;

fn api_config(pairs: &[(&str, &str)]) -> ApiConfig {
    ApiConfig::from_env(&Env::from_pairs(pairs.iter().copied())).expect("api config")
}

fn app(db: &Db, cfg: &ApiConfig) -> axum::Router {
    let state = ApiState::new(db.queue(), cfg);
    router(state, cfg.body_limit, cfg.request_timeout)
}

async fn call(
    app: &axum::Router,
    method: &str,
    uri: &str,
    body: Option<&str>,
    token: Option<&str>,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = req
        .header("content-type", "application/json")
        .body(
            body.map(|b| Body::from(b.to_string()))
                .unwrap_or_else(Body::empty),
        )
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
    };
    (status, value)
}

fn assert_error(v: &Value, code: &str) {
    assert_eq!(v["error"]["code"], code, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{v}"
    );
}

#[tokio::test]
async fn api_job_lifecycle_routes() {
    let db = Db::start().await;
    let app = app(&db, &api_config(&[]));

    // Create with defaults.
    let (s, job) = call(
        &app,
        "POST",
        "/api/v1/jobs",
        Some(r#"{"kind":"noop"}"#),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{job}");
    assert_eq!(job["status"], "queued");
    assert_eq!(job["queue"], "default");
    assert_eq!(job["max_attempts"], 5);
    assert_eq!(job["priority"], 0);
    assert_eq!(job["attempts"], 0);
    assert_eq!(job["payload"], json!({}));
    let id = job["id"].as_i64().unwrap();

    // Get it back; unknown ids 404, malformed ids 400.
    let (s, got) = call(&app, "GET", &format!("/api/v1/jobs/{id}"), None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(got, job);
    let (s, v) = call(&app, "GET", "/api/v1/jobs/999999", None, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_error(&v, "not_found");
    let (s, v) = call(&app, "GET", "/api/v1/jobs/abc", None, None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_error(&v, "bad_request");

    // Every field.
    let body = json!({"kind":"sleep","payload":{"ms":5},"queue":"mail","priority":7,
                      "run_at":"2030-01-01T00:00:00Z","max_attempts":2});
    let (s, j2) = call(&app, "POST", "/api/v1/jobs", Some(&body.to_string()), None).await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(j2["queue"], "mail");
    assert_eq!(j2["priority"], 7);
    assert_eq!(j2["run_at"], "2030-01-01T00:00:00Z");
    assert_eq!(j2["payload"], json!({"ms":5}));

    // Batch: ids in input order, one transaction.
    let batch = json!({"jobs":[{"kind":"noop"},{"kind":"sleep","payload":{"ms":1},"queue":"mail"},{"kind":"noop","priority":3}]});
    let (s, v) = call(
        &app,
        "POST",
        "/api/v1/jobs/batch",
        Some(&batch.to_string()),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let ids: Vec<i64> = v["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), 3);
    let (_, second) = call(&app, "GET", &format!("/api/v1/jobs/{}", ids[1]), None, None).await;
    assert_eq!(second["kind"], "sleep");
    assert_eq!(second["queue"], "mail");
    // A bad entry rejects the whole batch, naming it.
    let before = db.count("true");
    let bad = json!({"jobs":[{"kind":"noop"},{"kind":"no spaces"}]});
    let (s, v) = call(
        &app,
        "POST",
        "/api/v1/jobs/batch",
        Some(&bad.to_string()),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        v["error"]["message"].as_str().unwrap().contains("jobs[1]"),
        "{v}"
    );
    assert_eq!(db.count("true"), before);
    let (s, _) = call(
        &app,
        "POST",
        "/api/v1/jobs/batch",
        Some(r#"{"jobs":[]}"#),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // List with filters and a cursor.
    let (s, v) = call(&app, "GET", "/api/v1/jobs?queue=mail", None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["jobs"].as_array().unwrap().len(), 2);
    let (_, page1) = call(&app, "GET", "/api/v1/jobs?limit=2", None, None).await;
    assert_eq!(page1["jobs"].as_array().unwrap().len(), 2);
    let cursor = page1["next_cursor"].as_str().unwrap().to_string();
    let (_, page2) = call(
        &app,
        "GET",
        &format!("/api/v1/jobs?limit=2&cursor={cursor}"),
        None,
        None,
    )
    .await;
    let p1: Vec<i64> = page1["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_i64().unwrap())
        .collect();
    let p2: Vec<i64> = page2["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_i64().unwrap())
        .collect();
    assert!(p2.iter().all(|id| id < p1.last().unwrap()), "{p1:?} {p2:?}");
    let (s, v) = call(&app, "GET", "/api/v1/jobs?status=bogus", None, None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_error(&v, "bad_request");
    let (s, _) = call(&app, "GET", "/api/v1/jobs?limit=0", None, None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (_, v) = call(
        &app,
        "GET",
        "/api/v1/jobs?status=queued&queue=default",
        None,
        None,
    )
    .await;
    assert!(v["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .all(|j| j["status"] == "queued" && j["queue"] == "default"));

    // Cancel: queued → cancelled; again → same; retry → queued; retry again → 409.
    let (s, v) = call(
        &app,
        "POST",
        &format!("/api/v1/jobs/{id}/cancel"),
        None,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["status"], "cancelled");
    assert!(v["finished_at"].is_string());
    let (s, _) = call(
        &app,
        "POST",
        &format!("/api/v1/jobs/{id}/cancel"),
        None,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = call(
        &app,
        "POST",
        &format!("/api/v1/jobs/{id}/retry"),
        None,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["status"], "queued");
    assert!(v["finished_at"].is_null());
    let (s, v) = call(
        &app,
        "POST",
        &format!("/api/v1/jobs/{id}/retry"),
        None,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_error(&v, "conflict");
    // A succeeded job cannot be cancelled.
    db.sql(&format!(
        "UPDATE jobs SET status = 'succeeded', finished_at = now() WHERE id = {id}"
    ));
    let (s, v) = call(
        &app,
        "POST",
        &format!("/api/v1/jobs/{id}/cancel"),
        None,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_error(&v, "conflict");
    let (s, _) = call(&app, "POST", "/api/v1/jobs/424242/cancel", None, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Queue depths.
    let (s, v) = call(&app, "GET", "/api/v1/queues", None, None).await;
    assert_eq!(s, StatusCode::OK);
    let queues = v["queues"].as_array().unwrap();
    let mail = queues.iter().find(|q| q["queue"] == "mail").unwrap();
    assert_eq!(mail["depth"], 2);
    assert_eq!(mail["counts"]["queued"], 2);
    let default = queues.iter().find(|q| q["queue"] == "default").unwrap();
    assert_eq!(default["counts"]["succeeded"], 1);
    assert_eq!(default["depth"], 2);

    // Metrics count created jobs.
    let resp = app
        .clone()
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let text = String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    assert!(
        text.contains("job_created_total{queue=\"default\"} 3"),
        "{text}"
    );
    assert!(
        text.contains("job_created_total{queue=\"mail\"} 2"),
        "{text}"
    );
    assert!(text.contains("http_request_duration_seconds_count{method=\"POST\",route=\"/api/v1/jobs\",status=\"201\"} 2"), "{text}");
}

#[tokio::test]
async fn api_validation_errors_are_json() {
    let db = Db::start().await;
    let app = app(
        &db,
        &api_config(&[("API_BODY_LIMIT_BYTES", "2048"), ("API_MAX_BATCH", "3")]),
    );
    let cases: &[(&str, &str)] = &[
        ("/api/v1/jobs", "{not json"),
        ("/api/v1/jobs", ""),
        ("/api/v1/jobs", "[]"),
        ("/api/v1/jobs", r#"{"payload":{}}"#),
        ("/api/v1/jobs", r#"{"kind":""}"#),
        ("/api/v1/jobs", r#"{"kind":"x","queue":"a/b"}"#),
        ("/api/v1/jobs", r#"{"kind":"x","max_attempts":0}"#),
        ("/api/v1/jobs", r#"{"kind":"x","max_attempts":"many"}"#),
        ("/api/v1/jobs", r#"{"kind":"x","priority":99999999}"#),
        ("/api/v1/jobs", r#"{"kind":"x","run_at":"tomorrow"}"#),
        ("/api/v1/jobs", r#"{"kind":"x","unknown_field":1}"#),
        ("/api/v1/jobs", r#"{"kind":"x","idempotency_key":""}"#),
        ("/api/v1/jobs/batch", r#"{"jobs":{}}"#),
        (
            "/api/v1/jobs/batch",
            r#"{"jobs":[{"kind":"a"},{"kind":"a"},{"kind":"a"},{"kind":"a"}]}"#,
        ),
    ];
    for (uri, body) in cases {
        let (s, v) = call(&app, "POST", uri, Some(body), None).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{uri} {body}: {v}");
        assert_error(&v, "bad_request");
    }
    assert_eq!(db.count("true"), 0);

    // Too large → 413 JSON.
    let big = format!(
        r#"{{"kind":"x","payload":{{"pad":"{}"}}}}"#,
        "a".repeat(4096)
    );
    let (s, v) = call(&app, "POST", "/api/v1/jobs", Some(&big), None).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert_error(&v, "payload_too_large");

    // Unknown route and wrong method.
    let (s, v) = call(&app, "GET", "/nope", None, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_error(&v, "not_found");
    let (s, v) = call(&app, "DELETE", "/api/v1/jobs", None, None).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    assert_error(&v, "method_not_allowed");
}

#[tokio::test]
async fn api_idempotency_key() {
    let db = Db::start().await;
    let app = app(&db, &api_config(&[]));
    let body = r#"{"kind":"noop","payload":{"n":1},"idempotency_key":"order-42"}"#;
    let (s1, first) = call(&app, "POST", "/api/v1/jobs", Some(body), None).await;
    assert_eq!(s1, StatusCode::CREATED);
    let (s2, second) = call(&app, "POST", "/api/v1/jobs", Some(body), None).await;
    assert_eq!(s2, StatusCode::OK);
    assert_eq!(first["id"], second["id"]);
    assert_eq!(db.count("idempotency_key = 'order-42'"), 1);
    // Same key, different job → 409.
    let other = r#"{"kind":"noop","payload":{"n":2},"idempotency_key":"order-42"}"#;
    let (s, v) = call(&app, "POST", "/api/v1/jobs", Some(other), None).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_error(&v, "conflict");
    // Concurrent submissions with one key create one job.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            call(
                &app,
                "POST",
                "/api/v1/jobs",
                Some(r#"{"kind":"noop","idempotency_key":"race"}"#),
                None,
            )
            .await
        }));
    }
    let mut created = 0;
    let mut ids = std::collections::HashSet::new();
    for t in tasks {
        let (s, v) = t.await.unwrap();
        if s == StatusCode::CREATED {
            created += 1;
        } else {
            assert_eq!(s, StatusCode::OK);
        }
        ids.insert(v["id"].as_i64().unwrap());
    }
    assert_eq!(created, 1);
    assert_eq!(ids.len(), 1);
    // Batch entries with keys resolve to the existing job.
    let batch = r#"{"jobs":[{"kind":"noop","idempotency_key":"race"},{"kind":"noop","idempotency_key":"fresh"}]}"#;
    let (s, v) = call(&app, "POST", "/api/v1/jobs/batch", Some(batch), None).await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(v["ids"][0].as_i64().unwrap(), *ids.iter().next().unwrap());
    assert_eq!(db.count("idempotency_key = 'fresh'"), 1);
}

#[tokio::test]
async fn api_bearer_auth() {
    let db = Db::start().await;
    let key = "k3y-that-is-long-enough-for-production-use";
    let app = app(&db, &api_config(&[("API_SECRET_KEY", key)]));
    for (method, uri) in [
        ("POST", "/api/v1/jobs"),
        ("POST", "/api/v1/jobs/batch"),
        ("GET", "/api/v1/jobs"),
        ("GET", "/api/v1/jobs/1"),
        ("POST", "/api/v1/jobs/1/cancel"),
        ("POST", "/api/v1/jobs/1/retry"),
        ("GET", "/api/v1/queues"),
    ] {
        for token in [None, Some("wrong"), Some(&key[..key.len() - 1])] {
            let (s, v) = call(&app, method, uri, Some(r#"{"kind":"noop"}"#), token).await;
            assert_eq!(s, StatusCode::UNAUTHORIZED, "{method} {uri} {token:?}");
            assert_error(&v, "unauthorized");
        }
    }
    assert_eq!(db.count("true"), 0);
    let (s, _) = call(
        &app,
        "POST",
        "/api/v1/jobs",
        Some(r#"{"kind":"noop"}"#),
        Some(key),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = call(&app, "GET", "/api/v1/queues", None, Some(key)).await;
    assert_eq!(s, StatusCode::OK);
    // Health and metrics stay open (probes and scrapers carry no token).
    let (s, _) = call(&app, "GET", "/healthz", None, None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = call(&app, "GET", "/metrics", None, None).await;
    assert_eq!(s, StatusCode::OK);
}

/// The real binary on a real socket: health, readiness, request ids,
/// a job round trip, SIGTERM → readiness down and exit 0; secrets stay out
/// of the logs.
#[tokio::test]
async fn api_real_socket_binary() {
    let db = Db::start().await;
    let port = berth_tests::free_port();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("api.log");
    let url = db.url.replace("postgres://", "postgresql+asyncpg://");
    let mut child = common::spawn_jobqueue(
        "api",
        &[
            ("DATABASE_URL", url),
            ("API_LISTEN", format!("127.0.0.1:{port}")),
            ("API_SECRET_KEY", "s3cret-token-for-tests".into()),
        ],
        &log,
    );
    assert!(
        berth_tests::wait_for_port(port, Duration::from_secs(20)),
        "API did not listen"
    );
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let ready = common::eventually(Duration::from_secs(10), || {
        std::process::Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                &format!("{base}/readyz"),
            ])
            .output()
            .map(|o| o.stdout == b"200")
            .unwrap_or(false)
    })
    .await;
    assert!(ready, "readyz never became 200");
    let r = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .post(format!("{base}/api/v1/jobs"))
        .bearer_auth("s3cret-token-for-tests")
        .header("x-request-id", "req-123")
        .body(r#"{"kind":"noop"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["x-request-id"], "req-123");
    let job: Value = r.json().await.unwrap();
    let r = http
        .get(format!("{base}/api/v1/jobs/{}", job["id"]))
        .bearer_auth("s3cret-token-for-tests")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers().contains_key("x-request-id"),
        "a request id is generated"
    );
    // Oversized body over the wire: 413 JSON.
    let r = http
        .post(format!("{base}/api/v1/jobs"))
        .bearer_auth("s3cret-token-for-tests")
        .body(vec![b'x'; 2 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "payload_too_large");

    common::sigterm(&child);
    let status =
        tokio::task::spawn_blocking(move || common::wait_exit(&mut child, Duration::from_secs(15)))
            .await
            .unwrap()
            .expect("api exits after SIGTERM");
    assert!(status.success(), "{status:?}");
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(logs.contains("API listening"), "{logs}");
    assert!(!logs.contains(&db.pg.password), "password leaked into logs");
    assert!(
        !logs.contains("s3cret-token-for-tests"),
        "API key leaked into logs"
    );
    for line in logs.lines() {
        let v: Value = serde_json::from_str(line).expect("every log line is JSON");
        assert!(
            v["timestamp"].is_string() && v["level"].is_string() && v["message"].is_string(),
            "{line}"
        );
    }
}

/// Rate limiting through Redis; when Redis dies the API keeps serving with
/// the local limiter, and goes back to Redis when it returns.
#[tokio::test]
async fn api_rate_limit_redis_with_local_fallback() {
    let db = Db::start().await;
    let mut redis = tokio::task::spawn_blocking(berth_tests::Redis::start)
        .await
        .unwrap();
    // Windows are calendar minutes: start with at least 15 s left in one so
    // no window boundary resets the counts mid-test.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    if now % 60 > 45 {
        tokio::time::sleep(Duration::from_secs(61 - now % 60)).await;
    }
    let cfg = api_config(&[
        ("API_RATE_LIMIT_PER_MINUTE", "5"),
        ("REDIS_URL", &redis.url()),
    ]);
    let state = ApiState::new(db.queue(), &cfg);
    state.limiter.spawn_connector();
    let limiter = state.limiter.clone();
    assert!(
        common::eventually(Duration::from_secs(10), || limiter.redis_up()).await,
        "never connected to Redis"
    );
    let app = router(state, cfg.body_limit, cfg.request_timeout);
    let mut statuses = Vec::new();
    for _ in 0..7 {
        statuses.push(
            call(
                &app,
                "POST",
                "/api/v1/jobs",
                Some(r#"{"kind":"noop"}"#),
                None,
            )
            .await
            .0,
        );
    }
    assert_eq!(&statuses[..5], &[StatusCode::CREATED; 5]);
    assert_eq!(&statuses[5..], &[StatusCode::TOO_MANY_REQUESTS; 2]);
    let (_, v) = call(
        &app,
        "POST",
        "/api/v1/jobs",
        Some(r#"{"kind":"noop"}"#),
        None,
    )
    .await;
    assert_error(&v, "rate_limited");

    // The count lives in Redis (shared by replicas).
    let out = std::process::Command::new("redis-cli")
        .args([
            "-p",
            &redis.port.to_string(),
            "--scan",
            "--pattern",
            "jobqueue:ratelimit:*",
        ])
        .output()
        .unwrap();
    assert!(!out.stdout.is_empty(), "no rate-limit key in Redis");

    // Redis down: requests are still answered (local window, fresh count).
    redis.stop();
    let mut fallback = Vec::new();
    for _ in 0..7 {
        let started = std::time::Instant::now();
        fallback.push(
            call(
                &app,
                "POST",
                "/api/v1/jobs",
                Some(r#"{"kind":"noop"}"#),
                None,
            )
            .await
            .0,
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "a Redis outage must not stall the API"
        );
    }
    assert!(!limiter.redis_up());
    assert!(fallback
        .iter()
        .all(|s| *s == StatusCode::CREATED || *s == StatusCode::TOO_MANY_REQUESTS));
    assert!(
        fallback.contains(&StatusCode::TOO_MANY_REQUESTS),
        "local limiter enforces the limit: {fallback:?}"
    );
    assert!(
        fallback.contains(&StatusCode::CREATED),
        "local limiter has its own window: {fallback:?}"
    );
    let (s, _) = call(&app, "GET", "/api/v1/queues", None, None).await;
    assert_eq!(s, StatusCode::OK);
}

/// Input PostgreSQL cannot store is a 400 that names the field — never a
/// 503 "database unavailable" (which a client would retry forever).
#[tokio::test]
async fn api_hostile_input_is_400_naming_the_field() {
    let db = Db::start().await;
    let app = app(&db, &api_config(&[]));
    let cases: &[(&str, &str, &str)] = &[
        (
            "/api/v1/jobs",
            r#"{"kind":"x","payload":{"s":"a\u0000b"}}"#,
            "payload.s",
        ),
        (
            "/api/v1/jobs",
            r#"{"kind":"x","payload":["ok",{"deep":["\u0000"]}]}"#,
            "payload[1].deep[0]",
        ),
        (
            "/api/v1/jobs",
            r#"{"kind":"x","payload":{"k\u0000":1}}"#,
            "payload (a key)",
        ),
        (
            "/api/v1/jobs",
            r#"{"kind":"x","payload":"\u0000"}"#,
            "payload",
        ),
        (
            "/api/v1/jobs",
            r#"{"kind":"x","idempotency_key":"k\u0000"}"#,
            "idempotency_key",
        ),
        ("/api/v1/jobs", r#"{"kind":"x\u0000"}"#, "kind"),
        ("/api/v1/jobs", r#"{"kind":"x","queue":"q\u0000"}"#, "queue"),
        (
            "/api/v1/jobs",
            r#"{"kind":"x","priority":99999999999}"#,
            "priority",
        ),
        (
            "/api/v1/jobs",
            r#"{"kind":"x","priority":-2147483649}"#,
            "priority",
        ),
        (
            "/api/v1/jobs",
            r#"{"kind":"x","priority":1e300}"#,
            "priority",
        ),
        ("/api/v1/jobs", r#"{"kind":"x","priority":1.5}"#, "priority"),
        (
            "/api/v1/jobs",
            r#"{"kind":"x","max_attempts":4294967296}"#,
            "max_attempts",
        ),
        (
            "/api/v1/jobs",
            r#"{"kind":"x","max_attempts":-1}"#,
            "max_attempts",
        ),
        (
            "/api/v1/jobs",
            r#"{"kind":"x","run_at":"+200000-01-01T00:00:00Z"}"#,
            "run_at",
        ),
        (
            "/api/v1/jobs",
            r#"{"kind":"x","run_at":"-5000-01-01T00:00:00Z"}"#,
            "run_at",
        ),
        (
            "/api/v1/jobs",
            r#"{"kind":"x","run_at":"+262142-12-31T23:59:59Z"}"#,
            "run_at",
        ),
        (
            "/api/v1/jobs/batch",
            r#"{"jobs":[{"kind":"a"},{"kind":"b","payload":{"x":"\u0000"}}]}"#,
            "jobs[1].payload.x",
        ),
        (
            "/api/v1/jobs/batch",
            r#"{"jobs":[{"kind":"a","idempotency_key":"\u0000"}]}"#,
            "jobs[0].idempotency_key",
        ),
        (
            "/api/v1/jobs/batch",
            r#"{"jobs":[{"kind":"a","run_at":"+100000-01-01T00:00:00Z"}]}"#,
            "run_at",
        ),
    ];
    for (uri, body, field) in cases {
        let (s, v) = call(&app, "POST", uri, Some(body), None).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{uri} {body}: {v}");
        assert_error(&v, "bad_request");
        let message = v["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(field),
            "{body}: message {message:?} should name {field:?}"
        );
    }
    assert_eq!(db.count("true"), 0, "nothing hostile was stored");
    // Query strings too: a NUL in a filter is a 400, not a database error.
    let (s, v) = call(&app, "GET", "/api/v1/jobs?queue=a%00b", None, None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    // The edges PostgreSQL can store are accepted.
    for body in [
        r#"{"kind":"x","run_at":"9999-12-31T23:59:59Z","priority":-1000000,"max_attempts":1000}"#,
        r#"{"kind":"x","run_at":"0001-01-01T00:00:00Z","priority":1e6}"#,
        r#"{"kind":"x","payload":{"s":"caf\u00e9 \u2603 \ud83d\ude00"}}"#,
    ] {
        let (s, v) = call(&app, "POST", "/api/v1/jobs", Some(body), None).await;
        assert_eq!(s, StatusCode::CREATED, "{body}: {v}");
    }
}

/// A value that slips past validation and that PostgreSQL refuses
/// (SQLSTATE class 22) is still a 400, with the SQLSTATE kept.
#[tokio::test]
async fn database_data_errors_map_to_400_not_503() {
    let db = Db::start().await;
    let queue = db.queue();
    let client = queue.pool().get().await.unwrap();
    let cases: &[(&str, &str)] = &[
        (r#"SELECT '"\u0000"'::jsonb"#, "22P05"),
        ("SELECT 2147483648::int4", "22003"),
        (
            "SELECT 'infinity'::timestamptz + interval '1 day' < '294277-01-01'::timestamptz",
            "22008",
        ),
        ("SELECT convert_from('\\x00'::bytea, 'UTF8')", "22021"),
    ];
    for (sql, code) in cases {
        let e = client.simple_query(sql).await.expect_err(sql);
        let q = jobqueue::QueueError::from(e);
        assert!(
            matches!(q, jobqueue::QueueError::Rejected(_)),
            "{sql}: {q:?}"
        );
        assert_eq!(q.sqlstate(), Some(*code), "{sql}: {q}");
        assert!(q.to_string().contains(code), "{q}");
        let resp = axum::response::IntoResponse::into_response(jobqueue::api::ApiError::from(q));
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{sql}");
    }
    // Anything else stays a 503.
    let e = client
        .simple_query("SELECT * FROM no_such_table")
        .await
        .expect_err("42P01");
    let q = jobqueue::QueueError::from(e);
    assert_eq!(q.sqlstate(), Some("42P01"));
    let resp = axum::response::IntoResponse::into_response(jobqueue::api::ApiError::from(q));
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
}

/// Every database error is logged with its cause (SQLSTATE and message),
/// never with the URL or the password. The real binary, against a database
/// whose schema is missing.
#[tokio::test]
async fn api_logs_database_error_cause_without_secrets() {
    let db = Db::start_empty().await;
    let port = berth_tests::free_port();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("api.log");
    let mut child = common::spawn_jobqueue(
        "api",
        &[
            ("DATABASE_URL", db.url.clone()),
            ("API_LISTEN", format!("127.0.0.1:{port}")),
        ],
        &log,
    );
    assert!(
        berth_tests::wait_for_port(port, Duration::from_secs(20)),
        "API did not listen"
    );
    let http = reqwest::Client::new();
    let r = http
        .post(format!("http://127.0.0.1:{port}/api/v1/jobs"))
        .body(r#"{"kind":"noop"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.unwrap();
    assert_error(&v, "unavailable");
    assert!(
        !v.to_string().contains("jobs\" does not exist"),
        "details stay in the log: {v}"
    );
    common::sigterm(&child);
    tokio::task::spawn_blocking(move || common::wait_exit(&mut child, Duration::from_secs(15)))
        .await
        .unwrap()
        .expect("api exits after SIGTERM");
    let logs = std::fs::read_to_string(&log).unwrap();
    let line = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["message"] == "database error")
        .unwrap_or_else(|| panic!("no database error logged: {logs}"));
    assert_eq!(line["sqlstate"], "42P01", "{line}");
    assert!(
        line["error"]
            .as_str()
            .is_some_and(|e| e.contains("relation \"jobs\" does not exist")),
        "{line}"
    );
    assert!(
        !logs.contains("db error\""),
        "a bare 'db error' lost the cause: {logs}"
    );
    assert!(!logs.contains(&db.pg.password), "password leaked into logs");
}
