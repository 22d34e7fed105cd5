//! Running a worker with your own job kinds from your own `main`.
//!
//! ```sh
//! DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \
//!   cargo run -p jobqueue --example custom_kind
//! ```
//!
//! It migrates the schema, enqueues a few `greet` jobs (and one that fails
//! permanently), then runs a worker that handles `greet` plus the built-in
//! kinds until Ctrl-C / SIGTERM, draining in-flight jobs before it exits.

use std::time::Duration;

use jobqueue::{JobContext, JobError, NewJob, Registry, Worker, WorkerOptions};

#[derive(serde::Deserialize)]
struct Greet {
    name: String,
}

/// A handler is an async fn from `JobContext` to `Result<(), JobError>`.
/// Delivery is at-least-once: make side effects idempotent (key them on
/// `ctx.id`).
async fn greet(ctx: JobContext) -> Result<(), JobError> {
    // A payload that does not parse is a permanent failure (no retry).
    let greet: Greet = ctx.parse()?;
    if greet.name.is_empty() {
        return Err(JobError::permanent("name must not be empty"));
    }
    tracing::info!(
        job_id = ctx.id,
        attempt = ctx.attempt,
        "hello, {}!",
        greet.name
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    jobqueue::telemetry::init(&jobqueue::config::LogConfig {
        filter: "info".into(),
        json: false,
    });
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgresql://postgres@127.0.0.1:5432/postgres".into());
    jobqueue::migrate(&url).await?;

    let queue = jobqueue::connect(&url, 2)?;
    let jobs: Vec<NewJob> = ["Ada", "Grace", ""]
        .iter()
        .map(|name| {
            NewJob::new("greet")
                .queue("greetings")
                .payload(serde_json::json!({"name": name}))
        })
        .collect();
    let ids = queue.enqueue_batch(&jobs).await?;
    tracing::info!(?ids, "enqueued");

    let registry = Registry::with_builtins().register("greet", greet);
    let worker = Worker::new(
        &url,
        registry,
        WorkerOptions {
            queues: vec!["greetings".into()],
            concurrency: 4,
            shutdown_timeout: Duration::from_secs(10),
            ..Default::default()
        },
    )?;
    // SIGTERM/SIGINT: stop claiming, finish or hand back held jobs, return.
    let shutdown = jobqueue::shutdown::from_signals()?;
    Ok(worker.run(shutdown).await?)
}
