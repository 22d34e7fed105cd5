//! The six check types and the background loop that runs each check.
//!
//! Every check runs in its own task on its own (jittered) interval, under a
//! hard `timeout`: a dependency that accepts a TCP connection and then says
//! nothing is a `timeout` failure, and the half-open connection is dropped so
//! the next run starts clean. PostgreSQL and Redis keep one connection
//! between runs (a health check should not cost a TLS handshake and an
//! authentication every five seconds) and reconnect after any error.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::{CheckSpec, Target};
use crate::procs;
use crate::redact::{CheckError, Secrets};
use crate::state::Health;

/// The HTTP client of `http` checks and `http` drain notification.
pub type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// While draining, checks listed in `drain.waitUntilDown` run at least this often,
/// so the prestop call notices the main app going idle promptly.
pub const DRAIN_INTERVAL: Duration = Duration::from_millis(250);

pub fn http_client(connect_timeout: Duration) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(connect_timeout));
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(1)
        .build(connector)
}

/// One check's client side.
pub enum Probe {
    Postgres {
        /// `None` only if the URL stopped parsing after validation (the CA
        /// file vanished): the check then fails with `tls_config`.
        target: Option<Box<berth_tls::pg::PgTarget>>,
        conn: Option<(tokio_postgres::Client, JoinHandle<()>)>,
    },
    Redis {
        client: Option<redis::Client>,
        conn: Option<redis::aio::MultiplexedConnection>,
    },
    Tcp {
        address: String,
    },
    Http {
        client: HttpClient,
        url: http::Uri,
        expect: (u16, u16),
    },
    File {
        path: PathBuf,
        max_age: Option<Duration>,
    },
    Process {
        command: String,
    },
}

impl Probe {
    pub fn new(spec: &CheckSpec) -> Probe {
        match &spec.target {
            Target::Postgres { url } => {
                // Validated at load time (URL, sslmode, CA file).
                let target = berth_tls::pg::parse(url).ok().map(|mut t| {
                    t.config.connect_timeout(spec.timeout);
                    t.config.application_name("berth");
                    Box::new(t)
                });
                Probe::Postgres { target, conn: None }
            }
            Target::Redis { url } => Probe::Redis {
                client: berth_tls::redis_tls::client(url).ok(),
                conn: None,
            },
            Target::Tcp { address } => Probe::Tcp {
                address: address.clone(),
            },
            Target::Http { url, expect_status } => Probe::Http {
                client: http_client(spec.timeout),
                url: url.clone(),
                expect: *expect_status,
            },
            Target::File { path, max_age } => Probe::File {
                path: path.clone(),
                max_age: *max_age,
            },
            Target::Process { command } => Probe::Process {
                command: command.clone(),
            },
        }
    }

    /// Runs the check once. The caller bounds it with the check's timeout.
    pub async fn check(&mut self, secrets: &Secrets) -> Result<(), CheckError> {
        match self {
            Probe::Postgres { target, conn } => {
                if conn.as_ref().map(|(c, _)| c.is_closed()).unwrap_or(true) {
                    reset_pg(conn);
                    let Some(target) = target.as_ref() else {
                        return Err(CheckError::new("tls_config", "URL or CA file unusable"));
                    };
                    let (client, connection) = target
                        .config
                        .connect(target.tls.clone())
                        .await
                        .map_err(|e| pg_error(&e, secrets))?;
                    let task = tokio::spawn(async move {
                        // Ends when the server closes the connection or the client is dropped.
                        let _ = connection.await;
                    });
                    *conn = Some((client, task));
                }
                let Some((client, _)) = conn.as_ref() else {
                    return Err(CheckError::new("connection_lost", ""));
                };
                match client.simple_query("SELECT 1").await {
                    Ok(_) => Ok(()),
                    Err(e) => {
                        let err = pg_error(&e, secrets);
                        reset_pg(conn);
                        Err(err)
                    }
                }
            }
            Probe::Redis { client, conn } => {
                let Some(client) = client.as_ref() else {
                    return Err(CheckError::new("bad_url", ""));
                };
                if conn.is_none() {
                    let c = client
                        .get_multiplexed_async_connection()
                        .await
                        .map_err(|e| redis_error(&e, secrets))?;
                    *conn = Some(c);
                }
                let Some(c) = conn.as_mut() else {
                    return Err(CheckError::new("connection_lost", ""));
                };
                match redis::cmd("PING").query_async::<String>(c).await {
                    Ok(_) => Ok(()),
                    Err(e) => {
                        *conn = None;
                        Err(redis_error(&e, secrets))
                    }
                }
            }
            Probe::Tcp { address } => tokio::net::TcpStream::connect(address.as_str())
                .await
                .map(drop)
                .map_err(|e| CheckError::from_io(&e, secrets)),
            Probe::Http {
                client,
                url,
                expect,
            } => {
                let req = http::Request::get(url.clone())
                    .header(
                        http::header::USER_AGENT,
                        concat!("berth/", env!("CARGO_PKG_VERSION")),
                    )
                    .body(Empty::new())
                    .map_err(|_| CheckError::new("bad_request", ""))?;
                let resp = client
                    .request(req)
                    .await
                    .map_err(|e| hyper_error(&e, secrets))?;
                let code = resp.status().as_u16();
                if (expect.0..=expect.1).contains(&code) {
                    Ok(())
                } else {
                    Err(CheckError::new(
                        "unexpected_status",
                        format!("HTTP {code}, expected {}-{}", expect.0, expect.1),
                    ))
                }
            }
            Probe::File { path, max_age } => {
                let meta = std::fs::metadata(&*path).map_err(|e| {
                    let mut err = CheckError::from_io(&e, secrets);
                    err.detail = format!("{}: {}", path.display(), err.detail);
                    err
                })?;
                if let Some(max_age) = max_age {
                    let age = meta
                        .modified()
                        .ok()
                        .and_then(|m| m.elapsed().ok())
                        .unwrap_or(Duration::ZERO);
                    if age > *max_age {
                        return Err(CheckError::new(
                            "stale",
                            format!(
                                "{} last modified {}s ago (maxAge {}s)",
                                path.display(),
                                age.as_secs(),
                                max_age.as_secs_f64()
                            ),
                        ));
                    }
                }
                Ok(())
            }
            Probe::Process { command } => {
                if procs::find_by_name(command).is_empty() {
                    Err(CheckError::new(
                        "not_running",
                        format!("no process named {command}"),
                    ))
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Drops any connection after a timeout: a half-answered protocol
    /// exchange cannot be trusted for the next run.
    pub fn reset(&mut self) {
        match self {
            Probe::Postgres { conn, .. } => reset_pg(conn),
            Probe::Redis { conn, .. } => *conn = None,
            _ => {}
        }
    }
}

fn reset_pg(conn: &mut Option<(tokio_postgres::Client, JoinHandle<()>)>) {
    if let Some((client, task)) = conn.take() {
        drop(client);
        task.abort();
    }
}

fn io_source<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a std::io::Error> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        cur = err.source();
    }
    None
}

fn pg_error(e: &tokio_postgres::Error, secrets: &Secrets) -> CheckError {
    use tokio_postgres::error::SqlState;
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        let kind = if *code == SqlState::INVALID_PASSWORD
            || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
        {
            "auth_failed"
        } else if code.code().starts_with("57P") {
            "server_unavailable"
        } else if code.code().starts_with("3D") {
            "database_not_found"
        } else {
            "query_failed"
        };
        return CheckError::new(kind, secrets.scrub(db.message()));
    }
    if let Some(reason) = berth_tls::tls_failure(e) {
        return CheckError::new("tls_failed", secrets.scrub(&reason));
    }
    if let Some(io) = io_source(e) {
        return CheckError::from_io(io, secrets);
    }
    if e.is_closed() {
        return CheckError::new("connection_lost", "connection closed");
    }
    CheckError::new("connect_failed", secrets.scrub(&e.to_string()))
}

fn redis_error(e: &redis::RedisError, secrets: &Secrets) -> CheckError {
    if let Some(reason) = berth_tls::tls_failure(e) {
        return CheckError::new("tls_failed", secrets.scrub(&reason));
    }
    let kind = if e.is_connection_refusal() {
        "connection_refused"
    } else if e.kind() == redis::ErrorKind::AuthenticationFailed {
        "auth_failed"
    } else if e.is_timeout() {
        "timeout"
    } else if e.is_connection_dropped() || e.is_io_error() {
        "connection_lost"
    } else {
        "redis_error"
    };
    CheckError::new(kind, secrets.scrub(&e.to_string()))
}

fn hyper_error(e: &hyper_util::client::legacy::Error, secrets: &Secrets) -> CheckError {
    if let Some(io) = io_source(e) {
        return CheckError::from_io(io, secrets);
    }
    let kind = if e.is_connect() {
        "connect_failed"
    } else {
        "http_error"
    };
    CheckError::new(kind, secrets.scrub(&e.to_string()))
}

/// Runs one check on its interval until `stop` turns true.
pub async fn run_checker(
    health: Arc<Health>,
    idx: usize,
    spec: CheckSpec,
    secrets: Arc<Secrets>,
    fast_when_draining: bool,
    mut stop: watch::Receiver<bool>,
) {
    let mut probe = Probe::new(&spec);
    let mut draining = health.subscribe_draining();
    let mut jitter = Jitter::new(idx as u64);
    loop {
        health.beat(idx);
        let started = Instant::now();
        let result = match tokio::time::timeout(spec.timeout, probe.check(&secrets)).await {
            Ok(r) => r,
            Err(_) => {
                probe.reset();
                Err(CheckError::new(
                    "timeout",
                    format!(
                        "no answer within {}",
                        crate::config::fmt_duration(spec.timeout)
                    ),
                ))
            }
        };
        health.record(idx, result, started.elapsed());

        let fast = fast_when_draining && *draining.borrow();
        let wait = if fast {
            spec.interval.min(DRAIN_INTERVAL)
        } else {
            jitter.spread(spec.interval)
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            r = stop.wait_for(|s| *s) => { let _ = r; break; }
            // Draining just started: re-check at once, then at the fast pace.
            r = draining.changed(), if fast_when_draining && !fast => {
                if r.is_err() { break; }
            }
        }
    }
    probe.reset();
}

/// Spawns one checker task per configured check.
pub fn spawn_all(
    health: &Arc<Health>,
    specs: &[CheckSpec],
    fast_when_draining: &[String],
    secrets: &Arc<Secrets>,
    stop: &watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    specs
        .iter()
        .enumerate()
        .map(|(idx, spec)| {
            tokio::spawn(run_checker(
                health.clone(),
                idx,
                spec.clone(),
                secrets.clone(),
                fast_when_draining.contains(&spec.name),
                stop.clone(),
            ))
        })
        .collect()
}

/// ±10 % spread of intervals so that checks (and the replicas of a
/// Deployment, all started together) do not hit a dependency in lockstep.
struct Jitter(u64);

impl Jitter {
    fn new(salt: u64) -> Jitter {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9e37_79b9);
        Jitter((nanos ^ (salt.wrapping_add(1)).wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1)
    }

    /// xorshift64: plenty for spreading timers.
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn spread(&mut self, interval: Duration) -> Duration {
        let unit = (self.next() % 10_000) as f64 / 10_000.0; // [0, 1)
        interval.mul_f64(0.9 + 0.2 * unit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_ten_percent() {
        let mut j = Jitter::new(3);
        let i = Duration::from_secs(5);
        for _ in 0..1000 {
            let d = j.spread(i);
            assert!(d >= i.mul_f64(0.9) && d <= i.mul_f64(1.1), "{d:?}");
        }
    }

    /// The threshold state machine driven by the real checker loop against a
    /// real file, with tokio's clock paused: `failureThreshold × interval`
    /// is exactly what it takes for a check to go down, whatever the load.
    #[tokio::test(start_paused = true)]
    async fn file_check_goes_down_after_failure_threshold_intervals() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("heartbeat");
        std::fs::write(&path, "x").expect("write");
        let yaml = format!(
            "checks:\n  - {{name: hb, type: file, path: {:?}, interval: 1s, timeout: 500ms, \
             failureThreshold: 3, successThreshold: 2}}\n",
            path.display().to_string()
        );
        let config = crate::config::parse(&yaml, &|_| None).expect("config");
        let health = Arc::new(Health::new(&config));
        let (stop_tx, stop_rx) = watch::channel(false);
        let handles = spawn_all(
            &health,
            &config.checks,
            &[],
            &Arc::new(Secrets::default()),
            &stop_rx,
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(health.status(0), crate::state::Status::Up);
        assert!(health.started() && health.ready());

        // Polls the cached state on the paused clock (each step is exact).
        async fn until(health: &Health, what: impl Fn(&crate::state::CheckState) -> bool) {
            for _ in 0..10_000 {
                if what(&health.snapshot(0)) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!("condition never met");
        }
        std::fs::remove_file(&path).expect("rm");
        let removed = Instant::now();
        until(&health, |s| s.consecutive_failures == 2).await;
        assert_eq!(health.status(0), crate::state::Status::Up, "2 failures < 3");
        until(&health, |s| s.consecutive_failures == 3).await;
        assert_eq!(health.status(0), crate::state::Status::Down);
        // Three jittered intervals of 1 s each (± 10 %).
        let took = removed.elapsed();
        assert!(
            took >= Duration::from_millis(2600) && took <= Duration::from_millis(3400),
            "{took:?}"
        );
        assert!(!health.ready());
        assert!(health.started(), "the startup gate is sticky");
        assert_eq!(health.snapshot(0).error.map(|e| e.kind), Some("not_found"));

        std::fs::write(&path, "x").expect("write");
        until(&health, |s| s.consecutive_successes == 1).await;
        assert_eq!(
            health.status(0),
            crate::state::Status::Down,
            "1 success < 2"
        );
        until(&health, |s| s.consecutive_successes == 2).await;
        assert_eq!(health.status(0), crate::state::Status::Up);
        assert!(health.ready());

        stop_tx.send_replace(true);
        for h in handles {
            h.await.expect("checker ends on stop");
        }
    }
}
