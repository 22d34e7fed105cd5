//! Cron schedules against a real PostgreSQL: the API routes (through the
//! router), hostile input, and the real `jobqueue reaper` binary firing
//! each fire time exactly once across several reapers, kill -9, restarts
//! and catch-up after downtime.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::process::Child;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use jobqueue::api::{router, ApiState};
use jobqueue::config::{ApiConfig, Env};
use serde_json::{json, Value};
use tower::ServiceExt;

use common::{eventually, spawn_jobqueue, Db};

fn app(db: &Db, pairs: &[(&str, &str)]) -> axum::Router {
    let cfg = ApiConfig::from_env(&Env::from_pairs(pairs.iter().copied())).expect("api config");
    router(
        ApiState::new(db.queue(), &cfg),
        cfg.body_limit,
        cfg.request_timeout,
    )
}

async fn call(
    app: &axum::Router,
    method: &str,
    uri: &str,
    body: Option<Vec<u8>>,
    token: Option<&str>,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = req
        .header("content-type", "application/json")
        .body(body.map(Body::from).unwrap_or_else(Body::empty))
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

fn body(v: &Value) -> Option<Vec<u8>> {
    Some(v.to_string().into_bytes())
}

#[tokio::test]
async fn schedule_api_routes() {
    let db = Db::start().await;
    let app = app(&db, &[]);

    let (s, v) = call(&app, "GET", "/api/v1/schedules", None, None).await;
    assert_eq!((s, v), (StatusCode::OK, json!({"schedules": []})));

    let def = json!({"cron": "0 9 * * MON-FRI", "timezone": "Europe/Paris",
                     "job": {"kind": "report", "payload": {"to": "ops"}, "queue": "mail",
                             "priority": 5, "max_attempts": 3}});
    let (s, created) = call(&app, "PUT", "/api/v1/schedules/daily", body(&def), None).await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    assert_eq!(created["name"], "daily");
    assert_eq!(created["cron"], "0 9 * * MON-FRI");
    assert_eq!(created["timezone"], "Europe/Paris");
    assert_eq!(
        created["job"],
        json!({"kind": "report", "payload": {"to": "ops"}, "queue": "mail",
               "priority": 5, "max_attempts": 3})
    );
    assert!(created["last_fire_at"].is_null());
    for f in ["next_fire_at", "created_at", "updated_at"] {
        assert!(created[f].is_string(), "{f}: {created}");
    }
    // 09:00 in Paris is 07:00 or 08:00 UTC.
    let next = created["next_fire_at"].as_str().unwrap();
    assert!(
        next.contains("T07:00:00") || next.contains("T08:00:00"),
        "{next}"
    );

    // Replace with the same cron: 200, next_fire_at kept; defaults applied.
    let same =
        json!({"cron": "0 9 * * MON-FRI", "timezone": "Europe/Paris", "job": {"kind": "report2"}});
    let (s, replaced) = call(&app, "PUT", "/api/v1/schedules/daily", body(&same), None).await;
    assert_eq!(s, StatusCode::OK, "{replaced}");
    assert_eq!(replaced["next_fire_at"], created["next_fire_at"]);
    assert_eq!(
        replaced["job"],
        json!({"kind": "report2", "payload": {}, "queue": "default", "priority": 0, "max_attempts": 5})
    );
    assert_eq!(replaced["created_at"], created["created_at"]);

    // Replace with a new cron: next_fire_at recomputed from now (within 1 s).
    let fast = json!({"cron": "* * * * * *", "job": {"kind": "tick"}});
    let (s, v) = call(&app, "PUT", "/api/v1/schedules/daily", body(&fast), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["timezone"], "UTC");
    let next: chrono::DateTime<chrono::Utc> = v["next_fire_at"].as_str().unwrap().parse().unwrap();
    let ahead = next - chrono::Utc::now();
    assert!(
        ahead <= chrono::Duration::seconds(2) && ahead >= chrono::Duration::seconds(-2),
        "{next}"
    );

    let (s, _) = call(&app, "PUT", "/api/v1/schedules/b-2", body(&def), None).await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, one) = call(&app, "GET", "/api/v1/schedules/daily", None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(one["cron"], "* * * * * *");
    let (s, list) = call(&app, "GET", "/api/v1/schedules", None, None).await;
    assert_eq!(s, StatusCode::OK);
    let names: Vec<&str> = list["schedules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["b-2", "daily"]);

    let (s, v) = call(&app, "DELETE", "/api/v1/schedules/daily", None, None).await;
    assert_eq!((s, v), (StatusCode::NO_CONTENT, Value::Null));
    for (method, uri) in [
        ("DELETE", "/api/v1/schedules/daily"),
        ("GET", "/api/v1/schedules/daily"),
    ] {
        let (s, v) = call(&app, method, uri, None, None).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{method} {uri}");
        assert_eq!(v["error"]["code"], "not_found");
    }
    let (s, v) = call(&app, "POST", "/api/v1/schedules/b-2", None, None).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED, "{v}");
}

#[tokio::test]
async fn schedule_hostile_input_is_400_naming_the_field() {
    let db = Db::start().await;
    let app = app(&db, &[]);
    let ok_job = r#""job":{"kind":"x"}"#;
    let long_cron = format!(r#"{{"cron":"{}",{ok_job}}}"#, "*".repeat(10_000));
    let long_tz = format!(
        r#"{{"cron":"* * * * *","timezone":"{}",{ok_job}}}"#,
        "A".repeat(10_000)
    );
    let cases: Vec<(&str, String, &str)> = vec![
        // (name in the path, body, expected start of the message)
        ("n", format!(r#"{{"cron":"* * * *",{ok_job}}}"#), "cron:"),
        (
            "n",
            format!(r#"{{"cron":"* * * * * * *",{ok_job}}}"#),
            "cron:",
        ),
        ("n", format!(r#"{{"cron":"99 * * * *",{ok_job}}}"#), "cron:"),
        (
            "n",
            format!(r#"{{"cron":"not a cron at all",{ok_job}}}"#),
            "cron:",
        ),
        ("n", format!(r#"{{"cron":"",{ok_job}}}"#), "cron:"),
        ("n", format!(r#"{{"cron":"0 0 30 2 *",{ok_job}}}"#), "cron:"),
        (
            "n",
            format!(r#"{{"cron":"* * * * *\u0000",{ok_job}}}"#),
            "cron:",
        ),
        ("n", format!(r#"{{"cron":5,{ok_job}}}"#), "cron:"),
        ("n", format!(r#"{{{ok_job}}}"#), "cron:"),
        ("n", long_cron, "cron:"),
        (
            "n",
            format!(r#"{{"cron":"* * * * *","timezone":"X",{ok_job}}}"#),
            "timezone: unknown time zone \"X\"",
        ),
        (
            "n",
            format!(r#"{{"cron":"* * * * *","timezone":"Europe/Paris\u0000",{ok_job}}}"#),
            "timezone: unknown time zone",
        ),
        (
            "n",
            format!(r#"{{"cron":"* * * * *","timezone":7,{ok_job}}}"#),
            "timezone:",
        ),
        ("n", long_tz, "timezone: unknown time zone"),
        ("n", r#"{"cron":"* * * * *"}"#.into(), "job:"),
        ("n", r#"{"cron":"* * * * *","job":[]}"#.into(), "job:"),
        ("n", r#"{"cron":"* * * * *","job":{}}"#.into(), "job.kind:"),
        (
            "n",
            r#"{"cron":"* * * * *","job":{"kind":""}}"#.into(),
            "job.kind:",
        ),
        (
            "n",
            r#"{"cron":"* * * * *","job":{"kind":"a b"}}"#.into(),
            "job.kind:",
        ),
        (
            "n",
            r#"{"cron":"* * * * *","job":{"kind":"x\u0000"}}"#.into(),
            "job.kind:",
        ),
        (
            "n",
            r#"{"cron":"* * * * *","job":{"kind":1}}"#.into(),
            "job.kind:",
        ),
        (
            "n",
            r#"{"cron":"* * * * *","job":{"kind":"x","queue":"q q"}}"#.into(),
            "job.queue:",
        ),
        (
            "n",
            r#"{"cron":"* * * * *","job":{"kind":"x","queue":false}}"#.into(),
            "job.queue:",
        ),
        (
            "n",
            r#"{"cron":"* * * * *","job":{"kind":"x","priority":1e300}}"#.into(),
            "job.priority:",
        ),
        (
            "n",
            r#"{"cron":"* * * * *","job":{"kind":"x","priority":"high"}}"#.into(),
            "job.priority:",
        ),
        (
            "n",
            r#"{"cron":"* * * * *","job":{"kind":"x","max_attempts":0}}"#.into(),
            "job.max_attempts:",
        ),
        (
            "n",
            r#"{"cron":"* * * * *","job":{"kind":"x","max_attempts":99999999999}}"#.into(),
            "job.max_attempts:",
        ),
        (
            "n",
            r#"{"cron":"* * * * *","job":{"kind":"x","payload":{"a":"\u0000"}}}"#.into(),
            "job.payload.a:",
        ),
        (
            "n",
            r#"{"cron":"* * * * *","job":{"kind":"x","payload":{"k\u0000":1}}}"#.into(),
            "job.payload (a key):",
        ),
        (
            "n",
            r#"{"cron":"* * * * *","job":{"kind":"x","run_at":"2030-01-01T00:00:00Z"}}"#.into(),
            "job.run_at: unknown field",
        ),
        (
            "n",
            r#"{"cron":"* * * * *","job":{"kind":"x","idempotency_key":"k"}}"#.into(),
            "job.idempotency_key: unknown field",
        ),
        (
            "n",
            r#"{"cron":"* * * * *","job":{"kind":"x"},"every":"day"}"#.into(),
            "every: unknown field",
        ),
        ("n", r#"["cron"]"#.into(), "body:"),
        (
            "n",
            "{\"cron\":\"* * * * *\u{0}\"}".into(),
            "invalid JSON body",
        ),
        ("n", "not json".into(), "invalid JSON body"),
        (
            "a:b",
            format!(r#"{{"cron":"* * * * *",{ok_job}}}"#),
            "name:",
        ),
        (
            "a%20b",
            format!(r#"{{"cron":"* * * * *",{ok_job}}}"#),
            "name:",
        ),
        (
            "a%00b",
            format!(r#"{{"cron":"* * * * *",{ok_job}}}"#),
            "name:",
        ),
        (
            "%FF",
            format!(r#"{{"cron":"* * * * *",{ok_job}}}"#),
            "name:",
        ),
        (
            "n".repeat(129).leak(),
            format!(r#"{{"cron":"* * * * *",{ok_job}}}"#),
            "name:",
        ),
    ];
    for (name, b, want) in &cases {
        let uri = format!("/api/v1/schedules/{name}");
        let (s, v) = call(&app, "PUT", &uri, Some(b.clone().into_bytes()), None).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{name} {b:.200}: {v}");
        assert_eq!(v["error"]["code"], "bad_request", "{v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(
            msg.starts_with(want),
            "{name} {b:.200}: {msg:.300} should start with {want}"
        );
    }
    // Raw NUL and invalid UTF-8 bytes in the body.
    for raw in [
        b"{\"cron\":\"* * * * *\0\",\"job\":{\"kind\":\"x\"}}".to_vec(),
        b"{\"cron\":\"\xff\",\"job\":{\"kind\":\"x\"}}".to_vec(),
    ] {
        let (s, v) = call(&app, "PUT", "/api/v1/schedules/n", Some(raw), None).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    }
    // GET and DELETE validate the name too.
    for method in ["GET", "DELETE"] {
        let (s, v) = call(&app, method, "/api/v1/schedules/a:b", None, None).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        assert!(v["error"]["message"].as_str().unwrap().starts_with("name:"));
    }
    // Nothing was stored.
    assert_eq!(db.sql("SELECT count(*) FROM jobqueue_schedules"), "0");
}

#[tokio::test]
async fn schedule_routes_require_the_bearer_key() {
    let db = Db::start().await;
    let key = "sched-secret-key";
    let app = app(&db, &[("API_SECRET_KEY", key)]);
    let def = json!({"cron": "* * * * *", "job": {"kind": "x"}});
    for (method, uri, b) in [
        ("GET", "/api/v1/schedules", None),
        ("GET", "/api/v1/schedules/x", None),
        ("PUT", "/api/v1/schedules/x", body(&def)),
        ("DELETE", "/api/v1/schedules/x", None),
    ] {
        for token in [None, Some("wrong")] {
            let (s, v) = call(&app, method, uri, b.clone(), token).await;
            assert_eq!(s, StatusCode::UNAUTHORIZED, "{method} {uri} {token:?}: {v}");
        }
    }
    assert_eq!(db.sql("SELECT count(*) FROM jobqueue_schedules"), "0");
    let (s, _) = call(&app, "PUT", "/api/v1/schedules/x", body(&def), Some(key)).await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = call(&app, "GET", "/api/v1/schedules", None, Some(key)).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = call(&app, "DELETE", "/api/v1/schedules/x", None, Some(key)).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
}

// ---- the real reaper ------------------------------------------------------

fn reaper_env(db: &Db) -> Vec<(&'static str, String)> {
    vec![
        ("DATABASE_URL", db.url.clone()),
        ("REAPER_INTERVAL_SECONDS", "0.3".into()),
        ("LOG_LEVEL", "info".into()),
    ]
}

struct Reapers {
    dir: tempfile::TempDir,
    env: Vec<(&'static str, String)>,
    logs: Vec<PathBuf>,
    running: Vec<(usize, Child)>,
}

impl Reapers {
    fn new(db: &Db) -> Self {
        Reapers {
            dir: tempfile::tempdir().unwrap(),
            env: reaper_env(db),
            logs: Vec::new(),
            running: Vec::new(),
        }
    }

    fn spawn(&mut self) {
        let i = self.logs.len();
        let log = self.dir.path().join(format!("reaper-{i}.log"));
        let child = spawn_jobqueue("reaper", &self.env, &log);
        self.logs.push(log);
        self.running.push((i, child));
    }

    fn log_has(&self, i: usize, message: &str) -> bool {
        std::fs::read_to_string(&self.logs[i])
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .any(|v| v["message"] == message)
    }

    /// The running reaper that logged "reaper is the leader" last (a killed
    /// one is removed from `running`).
    fn leader(&self) -> Option<usize> {
        self.running
            .iter()
            .map(|(i, _)| *i)
            .find(|i| self.log_has(*i, "reaper is the leader"))
    }

    fn kill9(&mut self, i: usize) {
        let pos = self.running.iter().position(|(j, _)| *j == i).unwrap();
        let (_, mut child) = self.running.remove(pos);
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }

    fn stop_all(&mut self) {
        for (_, c) in &self.running {
            common::sigterm(c);
        }
        for (i, mut c) in self.running.drain(..) {
            let status = common::wait_exit(&mut c, Duration::from_secs(15));
            assert!(
                status.is_some_and(|s| s.success()),
                "reaper {i} did not stop cleanly: {status:?}"
            );
        }
    }

    /// "schedule fired" lines across every log.
    fn fired_lines(&self) -> usize {
        self.logs
            .iter()
            .map(|l| {
                std::fs::read_to_string(l)
                    .unwrap_or_default()
                    .lines()
                    .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                    .filter(|v| v["message"] == "schedule fired")
                    .count()
            })
            .sum()
    }
}

impl Drop for Reapers {
    fn drop(&mut self) {
        for (_, c) in &mut self.running {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

async fn put(db: &Db, name: &str, def: Value) {
    let app = app(db, &[]);
    let (s, v) = call(
        &app,
        "PUT",
        &format!("/api/v1/schedules/{name}"),
        body(&def),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
}

/// (fire time in epoch seconds, idempotency key, seconds from fire time to
/// insert) of the jobs of schedule `name`, by fire time.
fn fired(db: &Db, name: &str) -> Vec<(i64, String, f64)> {
    let out = db.sql(&format!(
        "SELECT extract(epoch FROM run_at)::bigint || '|' || idempotency_key || '|' ||
                extract(epoch FROM created_at - run_at)
         FROM jobs WHERE idempotency_key LIKE 'schedule:{name}:%' ORDER BY run_at, id"
    ));
    out.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let mut p = l.split('|');
            (
                p.next().unwrap().parse().unwrap(),
                p.next().unwrap().to_string(),
                p.next().unwrap().parse().unwrap(),
            )
        })
        .collect()
}

/// Every job's key matches its fire time, no fire time twice, and each
/// key once. Returns the gaps (in fire times) between consecutive jobs
/// larger than one second.
fn check_exactly_once(db: &Db, name: &str) -> (Vec<(i64, String, f64)>, Vec<i64>) {
    let jobs = fired(db, name);
    let dup_keys = db.sql(&format!(
        "SELECT count(*) FROM (SELECT idempotency_key FROM jobs
          WHERE idempotency_key LIKE 'schedule:{name}:%'
          GROUP BY idempotency_key HAVING count(*) > 1) d"
    ));
    assert_eq!(dup_keys, "0", "an idempotency key was enqueued twice");
    for (at, key, _) in &jobs {
        let t = chrono::DateTime::from_timestamp(*at, 0).unwrap();
        assert_eq!(
            *key,
            format!(
                "schedule:{name}:{}",
                t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            )
        );
    }
    let mut gaps = Vec::new();
    for w in jobs.windows(2) {
        let d = w[1].0 - w[0].0;
        assert!(d >= 1, "fire time {} enqueued twice: {jobs:?}", w[0].0);
        if d > 1 {
            gaps.push(d);
        }
    }
    (jobs, gaps)
}

/// Three reapers, one schedule firing every second; the leader is killed
/// with SIGKILL midway and a fourth reaper starts. Every fire time is
/// enqueued exactly once; the only gap is the takeover after the kill (a
/// single catch-up job for it).
#[tokio::test]
async fn exactly_once_with_three_reapers_and_a_kill9() {
    let db = Db::start().await;
    put(
        &db,
        "tick",
        json!({"cron": "* * * * * *", "job": {"kind": "noop", "queue": "sched"}}),
    )
    .await;
    let mut r = Reapers::new(&db);
    for _ in 0..3 {
        r.spawn();
    }
    assert!(
        eventually(Duration::from_secs(15), || r.leader().is_some()).await,
        "no reaper became the leader"
    );
    assert!(
        eventually(Duration::from_secs(10), || !fired(&db, "tick").is_empty()).await,
        "the schedule never fired"
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    let leader = r.leader().unwrap();
    r.kill9(leader);
    r.spawn();
    // A follower takes over (it retries leadership every 0.3 s).
    assert!(
        eventually(Duration::from_secs(15), || r.leader().is_some()).await,
        "no reaper took over after the kill"
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    let successor = r.leader().unwrap();
    assert_ne!(successor, leader);
    r.stop_all();
    assert!(
        r.log_has(leader, "schedule fired") && r.log_has(successor, "schedule fired"),
        "both the killed leader and its successor fired"
    );
    for i in 0..r.logs.len() {
        if i != leader && i != successor {
            assert!(!r.log_has(i, "schedule fired"), "follower {i} fired");
        }
    }

    let (jobs, gaps) = check_exactly_once(&db, "tick");
    assert!(jobs.len() >= 6, "too few fires: {jobs:?}");
    // The takeover may cost a gap; one more is tolerated for a loop
    // iteration delayed past a whole second on a loaded machine (which
    // enqueues only the latest fire time, by design).
    assert!(
        gaps.len() <= 2,
        "more than the takeover gap: {gaps:?} in {jobs:?}"
    );
    // Every job was inserted by one "schedule fired" of some reaper (the
    // killed one may have lost its last log line to SIGKILL).
    let lines = r.fired_lines();
    assert!(
        lines == jobs.len() || lines + 1 == jobs.len(),
        "{lines} fired lines for {} jobs",
        jobs.len()
    );
    // On time: most fire times were enqueued within 2 s.
    let late = jobs.iter().filter(|(_, _, delay)| *delay > 2.0).count();
    assert!(late <= 2, "{late} late fires: {jobs:?}");
    let next: f64 = db
        .sql("SELECT extract(epoch FROM next_fire_at - now()) FROM jobqueue_schedules")
        .parse()
        .unwrap();
    assert!(next > -2.0, "next_fire_at left behind: {next}");
    eprintln!(
        "{} fire times, gaps {gaps:?}, max delay {:.3}s",
        jobs.len(),
        jobs.iter().map(|j| j.2).fold(0.0, f64::max)
    );
}

/// A per-minute schedule whose next_fire_at is an hour in the past (no
/// reaper ran for an hour) yields exactly one catch-up job, for the latest
/// missed minute, and next_fire_at moves to the future.
#[tokio::test]
async fn catch_up_gives_one_job_for_the_latest_missed_fire_time() {
    let db = Db::start().await;
    put(
        &db,
        "minutely",
        json!({"cron": "* * * * *", "job": {"kind": "noop", "payload": {"n": 1}}}),
    )
    .await;
    db.sql("UPDATE jobqueue_schedules SET next_fire_at = date_trunc('minute', now()) - interval '1 hour'");
    let started: i64 = db
        // floor, not ::bigint (which rounds 10:38:59.9 up to the next minute)
        .sql("SELECT floor(extract(epoch FROM now()))::bigint")
        .parse()
        .unwrap();
    let mut r = Reapers::new(&db);
    r.spawn();
    assert!(
        eventually(Duration::from_secs(20), || !fired(&db, "minutely")
            .is_empty())
        .await,
        "no catch-up job"
    );
    assert!(
        eventually(Duration::from_secs(5), || db
            .sql("SELECT next_fire_at > now() FROM jobqueue_schedules")
            == "t")
        .await
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    r.stop_all();
    let jobs = fired(&db, "minutely");
    // Jobs for fire times before the reaper started: the catch-up, alone.
    let catch_up: Vec<_> = jobs.iter().filter(|j| j.0 <= started).collect();
    assert_eq!(catch_up.len(), 1, "{jobs:?}");
    let at = catch_up[0].0;
    assert_eq!(at % 60, 0, "a minute boundary");
    assert!(
        started - at < 60,
        "the latest missed minute: {at} vs {started}"
    );
    // Later jobs only if a minute boundary passed during the test.
    assert!(jobs.len() <= 2, "{jobs:?}");
    let row = db.sql(&format!(
        "SELECT job->>'kind', last_fire_at >= to_timestamp({at}) FROM jobqueue_schedules"
    ));
    assert_eq!(row, "noop|t");
    assert_eq!(
        db.sql("SELECT payload::text FROM jobs WHERE idempotency_key LIKE 'schedule:minutely:%' LIMIT 1"),
        r#"{"n": 1}"#
    );
}

/// Stop every reaper (SIGTERM) and start them again, twice: no fire time is
/// enqueued twice, and each downtime costs at most one gap, closed by one
/// catch-up job.
#[tokio::test]
async fn restarts_never_enqueue_a_fire_time_twice() {
    let db = Db::start().await;
    put(
        &db,
        "tick",
        json!({"cron": "* * * * * *", "timezone": "Europe/Paris", "job": {"kind": "noop"}}),
    )
    .await;
    let mut r = Reapers::new(&db);
    for round in 0..3 {
        r.spawn();
        r.spawn();
        let before = fired(&db, "tick").len();
        assert!(
            eventually(Duration::from_secs(15), || fired(&db, "tick").len()
                >= before + 3)
            .await,
            "round {round}: the schedule did not fire"
        );
        r.stop_all();
        // Down long enough to miss fire times.
        tokio::time::sleep(Duration::from_millis(2500)).await;
    }
    let (jobs, gaps) = check_exactly_once(&db, "tick");
    assert!(
        gaps.len() <= 2,
        "one gap per downtime: {gaps:?} in {jobs:?}"
    );
    eprintln!("{} fire times, gaps {gaps:?}", jobs.len());
}

/// Many leaders at once (as if leadership overlapped): concurrent
/// `fire_due_schedules` calls enqueue each fire time once, and the one
/// that enqueued it is the only one to report it.
#[tokio::test]
async fn concurrent_fire_calls_enqueue_each_fire_time_once() {
    let db = Db::start().await;
    put(
        &db,
        "tick",
        json!({"cron": "* * * * * *", "job": {"kind": "noop"}}),
    )
    .await;
    let queue = db.queue();
    let mut reported = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < deadline {
        let calls: Vec<_> = (0..6)
            .map(|_| {
                let q = queue.clone();
                tokio::spawn(async move { q.fire_due_schedules().await })
            })
            .collect();
        for c in calls {
            let report = c.await.unwrap().expect("fire_due_schedules");
            reported += report.fired.iter().filter(|f| f.enqueued).count();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (jobs, gaps) = check_exactly_once(&db, "tick");
    assert!(jobs.len() >= 2, "{jobs:?}");
    assert_eq!(reported, jobs.len());
    assert!(gaps.is_empty(), "{gaps:?}");
}
