//! Throughput/latency harness for `bench/jobqueue/run.sh` (not a test).
//!
//! Prints one JSON line: bulk enqueue through the library, bulk enqueue
//! through `POST /api/v1/jobs/batch` (the release `jobqueue api` binary in
//! its own process), processing rate of `BENCH_JOBS` no-op jobs, and
//! enqueue→start latency of a trickle of jobs.
//!
//! Env: `BENCH_DATABASE_URL` (required), `JOBQUEUE_BIN` (for the API),
//! `BENCH_JOBS` [50000], `BENCH_CHUNK` [1000], `BENCH_LATENCY_JOBS` [300],
//! `BENCH_LATENCY_INTERVAL_MS` [20], `BENCH_CONCURRENCIES` [24,200,2048]
//! (processing is measured once per concurrency, with only the concurrency
//! set), `BENCH_GROWTH` [1] with `BENCH_GROWTH_CONCURRENCY` [200],
//! `BENCH_FINISHED_ROWS` [2000000] and `BENCH_QUEUED_ROWS` [1000000]
//! (processing rate with that many finished jobs kept, and with that many
//! queued behind, against the mean of an empty-table run before and one
//! after them), `BENCH_HTTP_CLIENTS` [4].
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jobqueue::{JobContext, NewJob, Registry, Worker, WorkerOptions};

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

/// Empties the table between phases (VACUUM cannot share a transaction).
async fn reset(admin: &tokio_postgres::Client) -> anyhow::Result<()> {
    admin.simple_query("TRUNCATE jobs").await?;
    admin.simple_query("VACUUM ANALYZE jobs").await?;
    Ok(())
}

async fn enqueue_all(queue: &jobqueue::Queue, all: &[NewJob], chunk: usize) -> anyhow::Result<()> {
    for c in all.chunks(chunk) {
        queue.enqueue_batch(c).await?;
    }
    Ok(())
}

/// Runs a worker with only `concurrency` set until `jobs_n` jobs have been
/// completed; returns jobs/s. Done = every completion stored, read from
/// the worker's own counter (incremented once the `succeeded` write
/// returned): polling `count(*)` instead would scan the table and steal
/// CPU from the run being timed.
async fn process(url: &str, concurrency: usize, jobs_n: usize) -> anyhow::Result<(f64, CpuTime)> {
    let opts = WorkerOptions {
        concurrency,
        ..Default::default()
    };
    let worker = Worker::new(url, Registry::with_builtins(), opts)?;
    let metrics = worker.metrics();
    let (stop, shutdown) = jobqueue::shutdown::Shutdown::manual();
    let cpu_before = CpuTime::now();
    let t = Instant::now();
    let handle = tokio::spawn(worker.run(shutdown));
    while metrics.job_completed_total.get(&["default", "noop"]) < jobs_n as u64 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let rate = jobs_n as f64 / t.elapsed().as_secs_f64();
    let cpu = CpuTime::now().since(&cpu_before);
    let _ = stop.send(true);
    handle.await??;
    Ok((rate, cpu))
}

/// CPU time (user + system) of this process and of the local PostgreSQL
/// server, from /proc. A rate says how fast; CPU per job says where the
/// cost is (worker or database), which is what an A/B comparison
/// (features-ab.sh) needs to find a regression. Both swing with this
/// VM's slow spells, so compare them only in back-to-back pairs.
/// PostgreSQL's share is every
/// live `postgres` process plus what the postmaster's exited children
/// used (its cutime/cstime), so backends and autovacuum workers that came
/// and went are counted too. All zero where /proc is missing.
#[derive(Debug, Clone, Copy, Default)]
struct CpuTime {
    worker_s: f64,
    postgres_s: f64,
}

impl CpuTime {
    fn now() -> Self {
        // Clock ticks per second: 100 on every Linux this runs on.
        const TICKS: f64 = 100.0;
        let fields = |stat: &str| -> Option<(String, Vec<u64>)> {
            let (head, tail) = stat.rsplit_once(") ")?;
            let comm = head.split_once(" (")?.1.to_string();
            let nums = tail
                .split(' ')
                .map(|f| f.parse().unwrap_or(0))
                .collect::<Vec<u64>>();
            Some((comm, nums))
        };
        // After "pid (comm) ": state=0 ppid=1 … utime=11 stime=12
        // cutime=13 cstime=14.
        let mut cpu = CpuTime::default();
        if let Some((_, n)) = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|s| fields(&s))
        {
            cpu.worker_s = (n.get(11).unwrap_or(&0) + n.get(12).unwrap_or(&0)) as f64 / TICKS;
        }
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return cpu;
        };
        for entry in dir.flatten() {
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            let Some((comm, n)) = fields(&stat) else {
                continue;
            };
            if comm != "postgres" {
                continue;
            }
            let get = |i: usize| *n.get(i).unwrap_or(&0);
            let mut ticks = get(11) + get(12);
            if get(1) == 1 || !is_postgres(get(1)) {
                // The postmaster: add its exited children.
                ticks += get(13) + get(14);
            }
            cpu.postgres_s += ticks as f64 / TICKS;
        }
        cpu
    }

    fn since(&self, before: &CpuTime) -> CpuTime {
        CpuTime {
            worker_s: self.worker_s - before.worker_s,
            postgres_s: self.postgres_s - before.postgres_s,
        }
    }
}

/// Whether `pid` is a `postgres` process (to tell the postmaster, whose
/// parent is not, from its children).
fn is_postgres(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "postgres")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("BENCH_DATABASE_URL")?;
    let jobs_n = env_num("BENCH_JOBS", 50_000);
    let chunk = env_num("BENCH_CHUNK", 1000);
    let lat_n = env_num("BENCH_LATENCY_JOBS", 300);
    let lat_every = Duration::from_millis(env_num("BENCH_LATENCY_INTERVAL_MS", 20) as u64);
    let concurrencies: Vec<usize> = std::env::var("BENCH_CONCURRENCIES")
        .unwrap_or_else(|_| "24,200,2048".into())
        .split(',')
        .filter_map(|c| c.trim().parse().ok())
        .collect();
    anyhow::ensure!(!concurrencies.is_empty(), "BENCH_CONCURRENCIES is empty");
    let growth_on = env_num("BENCH_GROWTH", 1) == 1;
    let growth_c = env_num("BENCH_GROWTH_CONCURRENCY", 200);
    let finished_rows = env_num("BENCH_FINISHED_ROWS", 2_000_000);
    let queued_rows = env_num("BENCH_QUEUED_ROWS", 1_000_000);
    let http_clients = env_num("BENCH_HTTP_CLIENTS", 4);

    jobqueue::migrate(&url).await?;
    let admin =
        jobqueue::db::connect(&jobqueue::db::normalise_url(&url).map_err(anyhow::Error::msg)?)
            .await?;
    reset(&admin).await?;
    let queue = jobqueue::connect(&url, 2)?;

    // 1. Bulk enqueue through the library (one client, sequential chunks).
    let all: Vec<NewJob> = (0..jobs_n)
        .map(|i| NewJob::new("noop").payload(serde_json::json!({"i": i})))
        .collect();
    let t = Instant::now();
    for c in all.chunks(chunk) {
        queue.enqueue_batch(c).await?;
    }
    let enqueue_rate = jobs_n as f64 / t.elapsed().as_secs_f64();
    admin.simple_query("VACUUM ANALYZE jobs").await?;

    // 2. Process them, once per concurrency, each time with nothing but the
    //    concurrency set (every other option at its default, as a user who
    //    sets only WORKER_CONCURRENCY gets).
    let mut by_concurrency = serde_json::Map::new();
    let mut cpu_by_concurrency = serde_json::Map::new();
    let mut first = true;
    for &c in &concurrencies {
        if !first {
            reset(&admin).await?;
            enqueue_all(&queue, &all, chunk).await?;
        }
        first = false;
        let (rate, cpu) = process(&url, c, jobs_n).await?;
        let done: i64 = admin
            .query_one("SELECT count(*) FROM jobs WHERE status = 'succeeded'", &[])
            .await?
            .get(0);
        assert_eq!(done as usize, jobs_n, "every job succeeded");
        let per_job_us = |s: f64| s * 1e6 / jobs_n as f64;
        eprintln!(
            "    concurrency {c}: {rate:.0} jobs/s (CPU per job: worker {:.1} µs, PostgreSQL {:.1} µs)",
            per_job_us(cpu.worker_s),
            per_job_us(cpu.postgres_s)
        );
        by_concurrency.insert(c.to_string(), rate.into());
        cpu_by_concurrency.insert(
            c.to_string(),
            serde_json::json!({
                "worker_us_per_job": per_job_us(cpu.worker_s),
                "postgres_us_per_job": per_job_us(cpu.postgres_s),
            }),
        );
    }
    let process_rate = concurrencies
        .last()
        .and_then(|c| by_concurrency.get(&c.to_string()))
        .and_then(|v| v.as_f64());

    // 2b. How the rate holds as the table grows, at one concurrency: empty
    //     table, then with finished jobs kept (retention), then with a
    //     backlog queued behind (lower priority, so the measured jobs go
    //     first), then empty again. Each against the mean of the two
    //     empty-table rates around it: this machine has slow and fast
    //     spells of tens of seconds, and one empty-table run a minute
    //     before the grown ones put a spell's swing into the ratio (a
    //     round's "queued behind" read 1.42x once, 0.80x the next).
    let mut growth = serde_json::Value::Null;
    if growth_on {
        let c = growth_c;
        reset(&admin).await?;
        admin.simple_query("CHECKPOINT").await?;
        enqueue_all(&queue, &all, chunk).await?;
        let empty_before = process(&url, c, jobs_n).await?.0;
        reset(&admin).await?;
        let t = Instant::now();
        admin
            .execute(
                "INSERT INTO jobs (queue, kind, payload, status, attempts, run_at, created_at, updated_at, finished_at, lease_expires_at)
                 SELECT 'default', 'noop', '{}', 'succeeded', 1, now() - interval '1 hour', now() - interval '1 hour', now(), now() - (g % 3600) * interval '1 second',
                        now() - (g % 3600) * interval '1 second'
                 FROM generate_series(1, $1::bigint) AS g",
                &[&(finished_rows as i64)],
            )
            .await?;
        // The setup's dirty pages are flushed before timing: the figure is
        // the rate with a grown table, not while writing the setup out.
        admin.simple_query("VACUUM ANALYZE jobs").await?;
        admin.simple_query("CHECKPOINT").await?;
        eprintln!(
            "    {finished_rows} finished rows inserted in {:.1}s",
            t.elapsed().as_secs_f64()
        );
        enqueue_all(&queue, &all, chunk).await?;
        let with_finished = process(&url, c, jobs_n).await?.0;
        reset(&admin).await?;
        let t = Instant::now();
        admin
            .execute(
                "INSERT INTO jobs (queue, kind, payload, priority)
                 SELECT 'default', 'noop', '{}', -1 FROM generate_series(1, $1::bigint)",
                &[&(queued_rows as i64)],
            )
            .await?;
        // The setup's dirty pages are flushed before timing: the figure is
        // the rate with a grown table, not while writing the setup out.
        admin.simple_query("VACUUM ANALYZE jobs").await?;
        admin.simple_query("CHECKPOINT").await?;
        eprintln!(
            "    {queued_rows} queued rows inserted in {:.1}s",
            t.elapsed().as_secs_f64()
        );
        enqueue_all(&queue, &all, chunk).await?;
        let with_queued = process(&url, c, jobs_n).await?.0;
        let measured_first: i64 = admin
            .query_one(
                "SELECT count(*) FROM jobs WHERE priority = 0 AND status = 'succeeded'",
                &[],
            )
            .await?
            .get(0);
        reset(&admin).await?;
        admin.simple_query("CHECKPOINT").await?;
        enqueue_all(&queue, &all, chunk).await?;
        let empty_after = process(&url, c, jobs_n).await?.0;
        let empty = (empty_before + empty_after) / 2.0;
        eprintln!(
            "    growth at concurrency {c}: empty {empty:.0} (before {empty_before:.0}, after {empty_after:.0}), {finished_rows} finished {with_finished:.0}, {queued_rows} queued behind {with_queued:.0} jobs/s ({measured_first} of the measured jobs had finished)"
        );
        growth = serde_json::json!({
            "concurrency": c,
            "empty_jobs_per_s": empty,
            "empty_before_jobs_per_s": empty_before,
            "empty_after_jobs_per_s": empty_after,
            "finished_rows": finished_rows,
            "with_finished_jobs_per_s": with_finished,
            "queued_rows": queued_rows,
            "with_queued_jobs_per_s": with_queued,
        });
    }
    reset(&admin).await?;

    // 3. Bulk enqueue through the HTTP API (separate process).
    let http_rate = match std::env::var("JOBQUEUE_BIN") {
        Ok(bin) => {
            let port = {
                let l = std::net::TcpListener::bind("127.0.0.1:0")?;
                l.local_addr()?.port()
            };
            let mut api = std::process::Command::new(bin)
                .arg("api")
                .env("DATABASE_URL", &url)
                .env("API_LISTEN", format!("127.0.0.1:{port}"))
                .env("API_RATE_LIMIT_PER_MINUTE", "0")
                .env("API_MAX_BATCH", "10000")
                .env("API_BODY_LIMIT_BYTES", "67108864")
                .env("DATABASE_POOL_SIZE", http_clients.to_string())
                .env("LOG_LEVEL", "warn")
                .spawn()?;
            let http = reqwest::Client::new();
            let base = format!("http://127.0.0.1:{port}");
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if let Ok(r) = http.get(format!("{base}/readyz")).send().await {
                    if r.status().is_success() {
                        break;
                    }
                }
                anyhow::ensure!(Instant::now() < deadline, "API did not become ready");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let bodies: Vec<String> = all
                .chunks(chunk)
                .map(|c| serde_json::json!({"jobs": c}).to_string())
                .collect();
            let bodies = Arc::new(Mutex::new(bodies));
            let t = Instant::now();
            let mut tasks = Vec::new();
            for _ in 0..http_clients {
                let bodies = bodies.clone();
                let http = http.clone();
                let url = format!("{base}/api/v1/jobs/batch");
                tasks.push(tokio::spawn(async move {
                    loop {
                        let Some(body) = bodies.lock().unwrap().pop() else {
                            return;
                        };
                        let r = http.post(&url).body(body).send().await.unwrap();
                        assert_eq!(r.status(), 201);
                    }
                }));
            }
            for task in tasks {
                task.await?;
            }
            let rate = jobs_n as f64 / t.elapsed().as_secs_f64();
            let _ = api.kill();
            let _ = api.wait();
            Some(rate)
        }
        Err(_) => None,
    };
    reset(&admin).await?;

    // 4. Enqueue→start latency of a trickle (worker idle, woken by NOTIFY).
    let delays = Arc::new(Mutex::new(Vec::with_capacity(lat_n)));
    let d2 = delays.clone();
    let registry = Registry::new().register("lat", move |ctx: JobContext| {
        let started = now_us();
        let sent = ctx.payload["t"].as_i64().unwrap_or(started);
        d2.lock().unwrap().push((started - sent) as f64 / 1000.0);
        async { Ok(()) }
    });
    let worker = Worker::new(&url, registry, WorkerOptions::default())?;
    let (stop, shutdown) = jobqueue::shutdown::Shutdown::manual();
    let handle = tokio::spawn(worker.run(shutdown));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut tick = tokio::time::interval(lat_every);
    for _ in 0..lat_n {
        tick.tick().await;
        queue
            .enqueue(&NewJob::new("lat").payload(serde_json::json!({"t": now_us()})))
            .await?;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while delays.lock().unwrap().len() < lat_n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop.send(true);
    handle.await??;
    let mut d = delays.lock().unwrap().clone();
    d.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| {
        d.get(((d.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or(f64::NAN)
    };
    let out = serde_json::json!({
        "system": "jobqueue",
        "config": format!("in-process Worker, only the concurrency set ({}), every other option at its default; API: {http_clients} clients x {chunk}-job batches", concurrencies.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(", ")),
        "enqueue_jobs_per_s": enqueue_rate,
        "enqueue_http_jobs_per_s": http_rate,
        "process_jobs_per_s": process_rate,
        "process_by_concurrency": by_concurrency,
        "process_cpu_by_concurrency": cpu_by_concurrency,
        "growth": growth,
        "latency_p50_ms": pct(0.50),
        "latency_p99_ms": pct(0.99),
        "latency_samples": d.len(),
    });
    println!("{out}");
    Ok(())
}
