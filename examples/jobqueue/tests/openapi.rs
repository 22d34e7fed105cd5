//! `GET /api/v1/openapi.json` against the code it describes: the document
//! is OpenAPI 3.1 and lists exactly the router's routes and methods, every
//! operation documents its errors, requests the document allows at the
//! bounds are accepted and requests just outside are 400, and schemathesis
//! (property-based, against the real binary) finds no 5xx and no response
//! that contradicts the document. Why: clients are generated from this
//! document, so a mismatch is a bug in one or the other.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use jobqueue::api::{router, ApiState};
use jobqueue::config::{ApiConfig, Env};
use serde_json::{json, Value};
use tower::ServiceExt;

use common::Db;

/// Every route of `api::router`, with its methods: listed once here and
/// checked both ways (against the document and by probing the router).
const ROUTES: &[(&str, &[&str])] = &[
    ("/api/v1/jobs", &["get", "post"]),
    ("/api/v1/jobs/batch", &["post"]),
    ("/api/v1/jobs/{id}", &["get"]),
    ("/api/v1/jobs/{id}/cancel", &["post"]),
    ("/api/v1/jobs/{id}/retry", &["post"]),
    ("/api/v1/queues", &["get"]),
    ("/api/v1/queues/{queue}/pause", &["post"]),
    ("/api/v1/queues/{queue}/resume", &["post"]),
    ("/api/v1/schedules", &["get"]),
    ("/api/v1/schedules/{name}", &["delete", "get", "put"]),
    ("/api/v1/openapi.json", &["get"]),
    ("/", &["get"]),
    ("/dashboard", &["get"]),
    ("/healthz", &["get"]),
    ("/readyz", &["get"]),
    ("/metrics", &["get"]),
];

const METHODS: &[&str] = &["get", "put", "post", "delete", "patch"];

fn api_config(pairs: &[(&str, &str)]) -> ApiConfig {
    ApiConfig::from_env(&Env::from_pairs(pairs.iter().copied())).expect("api config")
}

fn app(queue: jobqueue::Queue, cfg: &ApiConfig) -> axum::Router {
    router(
        ApiState::new(queue, cfg),
        cfg.body_limit,
        cfg.request_timeout,
    )
}

/// A router whose pool points nowhere: database calls answer 503.
fn app_without_db(pairs: &[(&str, &str)]) -> axum::Router {
    let queue = jobqueue::connect("postgresql://nobody@127.0.0.1:1/none", 1).unwrap();
    app(queue, &api_config(pairs))
}

async fn call(
    app: &axum::Router,
    method: &str,
    uri: &str,
    body: Option<&Value>,
) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method.to_uppercase().as_str())
        .uri(uri)
        .header("content-type", "application/json")
        .body(
            body.map(|b| Body::from(b.to_string()))
                .unwrap_or_else(Body::empty),
        )
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, value)
}

async fn document(app: &axum::Router) -> Value {
    let (s, doc) = call(app, "get", "/api/v1/openapi.json", None).await;
    assert_eq!(s, StatusCode::OK, "{doc}");
    doc
}

/// `{id}` → 1, `{queue}` → q.
fn concrete(path: &str) -> String {
    path.replace("{id}", "1").replace("{queue}", "q")
}

fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v["$ref"].as_str() {
        Some(r) => doc
            .pointer(r.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("dangling $ref {r}")),
        None => v,
    }
}

#[tokio::test]
async fn openapi_document_is_3_1_and_lists_every_route_both_ways() {
    // With a key set: the document itself still needs none.
    let app = app_without_db(&[("API_SECRET_KEY", "k"), ("API_MAX_BATCH", "7")]);
    let doc = document(&app).await;
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{}",
        doc["openapi"]
    );
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());

    let documented: BTreeMap<String, BTreeSet<String>> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(p, item)| {
            let methods = METHODS
                .iter()
                .filter(|m| item.get(**m).is_some())
                .map(|m| m.to_string())
                .collect();
            (p.clone(), methods)
        })
        .collect();
    let routed: BTreeMap<String, BTreeSet<String>> = ROUTES
        .iter()
        .map(|(p, ms)| (p.to_string(), ms.iter().map(|m| m.to_string()).collect()))
        .collect();
    assert_eq!(documented, routed, "document paths vs router routes");

    // Probe the router: each listed method is routed (not the 404/405
    // fallbacks), each other method on the path is 405.
    for (path, methods) in ROUTES {
        let uri = concrete(path);
        for m in METHODS {
            let (s, body) = call(&app, m, &uri, Some(&json!({"kind": "noop"}))).await;
            if methods.contains(m) {
                assert!(
                    s != StatusCode::METHOD_NOT_ALLOWED
                        && body["error"]["message"] != "no such route",
                    "{m} {uri}: {s} {body}"
                );
            } else {
                assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED, "{m} {uri}: {body}");
            }
        }
    }

    // API_MAX_BATCH is in the document.
    assert_eq!(
        doc["components"]["schemas"]["BatchRequest"]["properties"]["jobs"]["maxItems"],
        7
    );
}

#[tokio::test]
async fn openapi_every_operation_documents_its_errors() {
    let app = app_without_db(&[]);
    let doc = document(&app).await;
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"],
        json!({"type": "http", "scheme": "bearer", "description": doc["components"]["securitySchemes"]["bearer"]["description"]})
    );
    for (path, item) in doc["paths"].as_object().unwrap() {
        for m in METHODS {
            let Some(op) = item.get(*m) else { continue };
            let responses = op["responses"].as_object().unwrap();
            let what = format!("{m} {path}");
            assert!(responses.contains_key("503"), "{what}: no 503 (timeouts)");
            for (code, resp) in responses {
                let resp = resolve(&doc, resp);
                assert!(resp["description"].is_string(), "{what} {code}");
                assert!(
                    resp["headers"]["x-request-id"].is_object(),
                    "{what} {code}: x-request-id"
                );
                if code.starts_with('4') || (code == "503" && path != "/readyz") {
                    let schema = &resp["content"]["application/json"]["schema"];
                    assert_eq!(
                        schema["$ref"], "#/components/schemas/ErrorBody",
                        "{what} {code}"
                    );
                }
            }
            let protected = path.starts_with("/api/v1/") && path != "/api/v1/openapi.json";
            assert_eq!(
                responses.contains_key("401"),
                protected,
                "{what}: 401 iff protected"
            );
            assert_eq!(
                op["security"] == json!([{"bearer": []}]),
                protected,
                "{what}"
            );
            let has_input = op.get("requestBody").is_some()
                || op["parameters"].as_array().is_some_and(|p| !p.is_empty());
            assert_eq!(responses.contains_key("400"), has_input, "{what}: 400");
            if op.get("requestBody").is_some() {
                assert!(responses.contains_key("413"), "{what}: 413");
            }
        }
    }
    // Every error code the API emits is in the schema.
    let codes = &doc["components"]["schemas"]["ErrorCode"]["enum"];
    for c in [
        "bad_request",
        "unauthorized",
        "not_found",
        "method_not_allowed",
        "conflict",
        "payload_too_large",
        "rate_limited",
        "unavailable",
    ] {
        assert!(codes.as_array().unwrap().contains(&json!(c)), "{c}");
    }
    // Path and query name patterns are those of the body (literals in the
    // handlers' attributes, so compared here).
    let param = |path: &str, method: &str, name: &str| {
        doc["paths"][path][method]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap()["schema"]["pattern"]
            .clone()
    };
    let props = &doc["components"]["schemas"]["NewJob"]["properties"];
    for action in ["pause", "resume"] {
        let path = format!("/api/v1/queues/{{queue}}/{action}");
        assert_eq!(param(&path, "post", "queue"), props["queue"]["pattern"]);
    }
    // Listing filters by queue with `validate_name` (':' allowed).
    assert_eq!(
        param("/api/v1/jobs", "get", "queue"),
        props["kind"]["pattern"]
    );
    assert_eq!(
        param("/api/v1/jobs", "get", "kind"),
        props["kind"]["pattern"]
    );
    // The validation bounds are those of the code.
    let new_job = &doc["components"]["schemas"]["NewJob"];
    assert_eq!(new_job["additionalProperties"], false);
    assert_eq!(new_job["required"], json!(["kind"]));
    let p = &new_job["properties"];
    assert_eq!(p["priority"]["maximum"], jobqueue::job::MAX_PRIORITY);
    assert_eq!(p["priority"]["minimum"], -jobqueue::job::MAX_PRIORITY);
    assert_eq!(
        p["max_attempts"]["maximum"],
        jobqueue::job::MAX_ATTEMPTS_LIMIT
    );
    assert_eq!(
        p["timeout_seconds"]["maximum"],
        jobqueue::job::MAX_TIMEOUT_SECONDS
    );
    assert_eq!(
        p["unique_for_seconds"]["maximum"],
        jobqueue::job::MAX_UNIQUE_FOR_SECONDS
    );
    for (field, words) in [
        ("payload", "NUL"),
        ("unique_while", "idempotency_key"),
        ("unique_for_seconds", "idempotency_key"),
        ("idempotency_key", "bytes"),
        ("run_at", "9999"),
    ] {
        assert!(
            p[field]["description"]
                .as_str()
                .is_some_and(|d| d.contains(words)),
            "{field}: description should say {words:?}"
        );
    }
}

fn name(c: char, n: usize) -> String {
    std::iter::repeat_n(c, n).collect()
}

/// Allowed at the bounds → not 4xx; just outside → 400.
#[tokio::test]
async fn openapi_bounds_allowed_are_accepted_and_outside_are_400() {
    let db = Db::start().await;
    let app = app(db.queue(), &api_config(&[("API_MAX_BATCH", "3")]));
    let statuses = ["queued", "running", "succeeded", "dead", "cancelled"];
    let max = json!({
        "kind": format!("k{}", name(':', 127)),
        "queue": format!("q{}", name('-', 127)),
        "payload": {"a": [1, "x", null, {"b": true}], "ü": "é"},
        "priority": 1_000_000,
        "max_attempts": 1000,
        "run_at": "9999-12-31T23:59:59Z",
        "idempotency_key": name('k', 255),
        "group": name('.', 128),
        "timeout_seconds": 604_800,
        "unique_while": statuses,
        "unique_for_seconds": 31_536_000,
    });
    let min = json!({
        "kind": "k", "queue": "q", "payload": null, "priority": -1_000_000, "max_attempts": 1,
        "run_at": "0001-01-01T00:00:00Z", "idempotency_key": "k", "group": "g",
        "timeout_seconds": 1, "unique_while": ["queued"], "unique_for_seconds": 1,
    });
    let nulls = json!({
        "kind": "n", "run_at": null, "idempotency_key": null, "group": null,
        "timeout_seconds": null, "unique_while": null, "unique_for_seconds": null,
    });
    let offset = json!({"kind": "o", "run_at": "2030-01-01T09:00:00.123+05:30", "payload": [1, 2]});
    let float_ints = json!({"kind": "f", "priority": 5.0, "max_attempts": 1e2});
    let long_key = json!({"kind": "l", "idempotency_key": name('ü', 127)});
    let ok: Vec<(&str, String, Option<Value>)> = vec![
        ("post", "/api/v1/jobs".into(), Some(max.clone())),
        ("post", "/api/v1/jobs".into(), Some(min.clone())),
        ("post", "/api/v1/jobs".into(), Some(nulls)),
        ("post", "/api/v1/jobs".into(), Some(offset)),
        ("post", "/api/v1/jobs".into(), Some(float_ints)),
        ("post", "/api/v1/jobs".into(), Some(long_key)),
        (
            "post",
            "/api/v1/jobs/batch".into(),
            Some(json!({"jobs": [{"kind": "a"}, {"kind": "b"}, {"kind": "c"}]})),
        ),
        (
            "post",
            "/api/v1/jobs/batch".into(),
            Some(json!({"jobs": [{"kind": "a"}]})),
        ),
        ("get", "/api/v1/jobs?limit=1".into(), None),
        (
            "get",
            "/api/v1/jobs?limit=500&status=dead&queue=a:b&kind=x&cursor=-5".into(),
            None,
        ),
        ("get", "/api/v1/jobs/1?wait=0".into(), None),
        ("get", "/api/v1/jobs/1?wait=.5ms".into(), None),
        ("get", "/api/v1/jobs/1?wait=0.01s".into(), None),
        (
            "get",
            format!("/api/v1/jobs/1?wait={}", name('0', 32)),
            None,
        ),
        ("get", "/api/v1/jobs/9223372036854775807".into(), None),
        (
            "post",
            format!("/api/v1/queues/{}/pause", name('Q', 128)),
            None,
        ),
        ("post", "/api/v1/queues/a.b_c-d/resume".into(), None),
        ("get", "/api/v1/queues".into(), None),
    ];
    for (m, uri, body) in &ok {
        let (s, v) = call(&app, m, uri, body.as_ref()).await;
        // 404 for a job id nobody created is the document's answer too.
        assert!(
            !s.is_client_error() || (s == StatusCode::NOT_FOUND && uri.contains("/jobs/9223")),
            "{m} {uri} {body:?}: {s} {v}"
        );
    }

    let with = |field: &str, value: Value| {
        let mut j = json!({"kind": "x", "idempotency_key": "i"});
        j[field] = value;
        j
    };
    let bad: Vec<(&str, String, Option<Value>)> = vec![
        (
            "post",
            "/api/v1/jobs".into(),
            Some(with("kind", json!(name('k', 129)))),
        ),
        ("post", "/api/v1/jobs".into(), Some(with("kind", json!("")))),
        (
            "post",
            "/api/v1/jobs".into(),
            Some(with("kind", json!("a b"))),
        ),
        (
            "post",
            "/api/v1/jobs".into(),
            Some(with("queue", json!("a:b"))),
        ),
        (
            "post",
            "/api/v1/jobs".into(),
            Some(with("group", json!(name('g', 129)))),
        ),
        (
            "post",
            "/api/v1/jobs".into(),
            Some(with("priority", json!(1_000_001))),
        ),
        (
            "post",
            "/api/v1/jobs".into(),
            Some(with("priority", json!(-1_000_001))),
        ),
        (
            "post",
            "/api/v1/jobs".into(),
            Some(with("priority", json!(1.5))),
        ),
        (
            "post",
            "/api/v1/jobs".into(),
            Some(with("priority", Value::Null)),
        ),
        (
            "post",
            "/api/v1/jobs".into(),
            Some(with("max_attempts", json!(0))),
        ),
        (
            "post",
            "/api/v1/jobs".into(),
            Some(with("max_attempts", json!(1001))),
        ),
        (
            "post",
            "/api/v1/jobs".into(),
            Some(with("timeout_seconds", json!(0))),
        ),
        (
            "post",
            "/api/v1/jobs".into(),
            Some(with("timeout_seconds", json!(604_801))),
        ),
        (
            "post",
            "/api/v1/jobs".into(),
            Some(with("unique_for_seconds", json!(0))),
        ),
        (
            "post",
            "/api/v1/jobs".into(),
            Some(with("unique_for_seconds", json!(31_536_001))),
        ),
        (
            "post",
            "/api/v1/jobs".into(),
            Some(with("unique_while", json!([]))),
        ),
        (
            "post",
            "/api/v1/jobs".into(),
            Some(with("unique_while", json!(["done"]))),
        ),
        (
            "post",
            "/api/v1/jobs".into(),
            Some(with("idempotency_key", json!(name('k', 256)))),
        ),
        (
            "post",
            "/api/v1/jobs".into(),
            Some(with("idempotency_key", json!(""))),
        ),
        (
            "post",
            "/api/v1/jobs".into(),
            Some(with("idempotency_key", json!(name('ü', 128)))),
        ),
        (
            "post",
            "/api/v1/jobs".into(),
            Some(with("run_at", json!("10000-01-01T00:00:00Z"))),
        ),
        (
            "post",
            "/api/v1/jobs".into(),
            Some(with("run_at", json!("9999-12-31T23:59:59-00:01"))),
        ),
        (
            "post",
            "/api/v1/jobs".into(),
            Some(with("run_at", json!("0001-01-01T00:00:00+00:01"))),
        ),
        (
            "post",
            "/api/v1/jobs".into(),
            Some(with("run_at", json!("yesterday"))),
        ),
        (
            "post",
            "/api/v1/jobs".into(),
            Some(with("payload", json!({"a": "\u{0}"}))),
        ),
        ("post", "/api/v1/jobs".into(), Some(with("bogus", json!(1)))),
        (
            "post",
            "/api/v1/jobs".into(),
            Some(json!({"kind": "x", "unique_while": ["queued"]})),
        ),
        (
            "post",
            "/api/v1/jobs".into(),
            Some(json!({"kind": "x", "unique_for_seconds": 5})),
        ),
        ("post", "/api/v1/jobs".into(), Some(json!({"payload": {}}))),
        (
            "post",
            "/api/v1/jobs/batch".into(),
            Some(json!({"jobs": []})),
        ),
        (
            "post",
            "/api/v1/jobs/batch".into(),
            Some(json!({"jobs": [{"kind": "a"}, {"kind": "b"}, {"kind": "c"}, {"kind": "d"}]})),
        ),
        (
            "post",
            "/api/v1/jobs/batch".into(),
            Some(json!({"jobs": [{"kind": "a"}], "x": 1})),
        ),
        ("get", "/api/v1/jobs?limit=0".into(), None),
        ("get", "/api/v1/jobs?limit=501".into(), None),
        ("get", "/api/v1/jobs?status=done".into(), None),
        ("get", "/api/v1/jobs?queue=a%20b".into(), None),
        ("get", "/api/v1/jobs?bogus=1".into(), None),
        ("get", "/api/v1/jobs/0".into(), None),
        ("get", "/api/v1/jobs/x".into(), None),
        ("get", "/api/v1/jobs/1?wait=1h".into(), None),
        ("get", "/api/v1/jobs/1?bogus=1".into(), None),
        ("post", "/api/v1/jobs/0/cancel".into(), None),
        ("post", "/api/v1/jobs/-1/retry".into(), None),
        ("post", "/api/v1/queues/a:b/pause".into(), None),
        (
            "post",
            format!("/api/v1/queues/{}/resume", name('q', 129)),
            None,
        ),
        // Not UTF-8: axum's own rejections are text/plain; ours are JSON.
        ("get", "/api/v1/jobs/%FF".into(), None),
        ("post", "/api/v1/jobs/%FF/cancel".into(), None),
        ("post", "/api/v1/queues/%FF/pause".into(), None),
        ("get", "/api/v1/jobs?queue=%FF".into(), None),
        ("get", "/api/v1/jobs/1?wait=%FF".into(), None),
    ];
    for (m, uri, body) in &bad {
        let (s, v) = call(&app, m, uri, body.as_ref()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{m} {uri} {body:?}: {v}");
        assert_eq!(v["error"]["code"], "bad_request", "{v}");
    }
}

/// schemathesis from the venv tools/setup.sh makes (or `$PATH`).
fn schemathesis() -> std::path::PathBuf {
    let venv = berth_tests::tools::tools_dir().join("venv/bin/schemathesis");
    if venv.exists() {
        return venv;
    }
    if let Some(found) = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("schemathesis"))
            .find(|p| p.exists())
    }) {
        return found;
    }
    panic!(
        "schemathesis is not installed: run tools/setup.sh (it installs tools/requirements.lock into {})",
        berth_tests::tools::tools_dir().join("venv").display()
    );
}

/// The real binary (with a key) under schemathesis: generated requests,
/// valid and invalid, for every operation.
///
/// Checks: `not_a_server_error` (no 5xx but the documented 503, which
/// needs a database outage or timeout), the four `*_conformance` checks
/// (status codes, content types, headers and bodies as documented),
/// `ignored_auth` (protected operations refuse requests without the key)
/// and `unsupported_method` (405 for undocumented methods).
/// Left out: `positive_data_acceptance` and `negative_data_rejection`,
/// because the document cannot be exactly the code where JSON Schema is
/// weaker (a payload with a NUL inside, `unique_while` without
/// `idempotency_key`, a multi-byte `idempotency_key` under 255 characters
/// are allowed by the schema but 400) or deliberately stricter (an empty
/// `status=`/`queue=` filter or a `wait` longer than 32 characters is
/// accepted); those rules are in the descriptions and are checked by
/// `openapi_bounds_allowed_are_accepted_and_outside_are_400`. The stateful
/// phase is off: the document declares no links.
#[tokio::test]
async fn serial_schemathesis_finds_no_5xx_and_no_spec_mismatch() {
    let st = schemathesis();
    let db = Db::start().await;
    let port = berth_tests::free_port();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("api.log");
    let key = format!("st-{}-{port}", std::process::id());
    let child = common::spawn_jobqueue(
        "api",
        &[
            ("DATABASE_URL", db.url.clone()),
            ("API_LISTEN", format!("127.0.0.1:{port}")),
            ("API_SECRET_KEY", key.clone()),
            // Generated `?wait=` on existing jobs (no worker runs them)
            // would hold each request for up to a minute otherwise.
            ("API_REQUEST_TIMEOUT_SECONDS", "2".into()),
            ("API_RATE_LIMIT_PER_MINUTE", "0".into()),
            ("API_MAX_BATCH", "20".into()),
        ],
        &log,
    );
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _child = Kill(child);
    assert!(
        berth_tests::wait_for_port(port, Duration::from_secs(30)),
        "API did not listen:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let started = Instant::now();
    let report = dir.path().join("report");
    let workdir = dir.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(st)
            // It keeps state in `.schemathesis/` of its working directory.
            .current_dir(&workdir)
            .arg("run")
            .arg(format!("http://127.0.0.1:{port}/api/v1/openapi.json"))
            .args(["-H", &format!("Authorization: Bearer {key}")])
            .args([
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,\
                 response_headers_conformance,response_schema_conformance,ignored_auth,\
                 unsupported_method",
            ])
            .args(["--phases", "examples,coverage,fuzzing"])
            .args([
                "--max-examples",
                "60",
                "--seed",
                "20261127",
                "--workers",
                "2",
            ])
            .args([
                "--request-timeout",
                "10",
                "--no-color",
                "--wait-for-schema",
                "10",
            ])
            .arg("--generation-database")
            .arg("none")
            .arg("--report-dir")
            .arg(&report)
            // Works around a CPython 3.11 bug; see the file.
            .env(
                "SCHEMATHESIS_HOOKS",
                concat!(env!("CARGO_MANIFEST_DIR"), "/tests/schemathesis_hooks.py"),
            )
            .output()
            .expect("run schemathesis")
    })
    .await
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("schemathesis took {:?}:\n{text}", started.elapsed());
    assert!(
        out.status.success(),
        "schemathesis failed ({}):\n{text}\n--- API log (last 40 lines):\n{}",
        out.status,
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The generated valid requests got through (auth header, bodies).
    let created = db.count("true");
    let paused = db.sql("SELECT count(*) FROM jobqueue_paused_queues");
    eprintln!("jobs created: {created}, queues paused: {paused}");
    assert!(created > 0, "schemathesis created no job:\n{text}");
}
