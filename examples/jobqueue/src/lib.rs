//! # jobqueue — a PostgreSQL job-queue runtime
//!
//! One binary (`jobqueue migrate | api | worker | reaper`) and this
//! library. Jobs live in one PostgreSQL table; workers claim them in
//! batches with `FOR UPDATE SKIP LOCKED` under a *lease*, and every write a
//! worker makes is fenced by the lease token, so a worker that lost its
//! lease (paused, partitioned, killed and re-queued) can never overwrite
//! the outcome of the job's next attempt. Delivery is at-least-once.
//!
//! ## Your own job kinds
//!
//! Register handlers on a [`Registry`] and run a [`Worker`] from your own
//! `main` (see `examples/custom_kind.rs`):
//!
//! ```no_run
//! use jobqueue::{JobContext, JobError, Registry, Worker, WorkerOptions};
//!
//! #[derive(serde::Deserialize)]
//! struct Email { to: String }
//!
//! async fn send_email(ctx: JobContext) -> Result<(), JobError> {
//!     let email: Email = ctx.parse()?; // bad payload: permanent failure
//!     if email.to.is_empty() {
//!         return Err(JobError::permanent("no recipient"));
//!     }
//!     // … deliver; return Err(JobError::retry(..)) to retry with backoff
//!     Ok(())
//! }
//!
//! # async fn run() -> Result<(), jobqueue::Error> {
//! let registry = Registry::with_builtins().register("email", send_email);
//! let worker = Worker::new(
//!     "postgresql://app:secret@db:5432/app",
//!     registry,
//!     WorkerOptions { queues: vec!["mail".into()], ..Default::default() },
//! )?;
//! let shutdown = jobqueue::shutdown::from_signals()?; // SIGTERM: drain, then return
//! worker.run(shutdown).await
//! # }
//! ```
//!
//! Enqueue from Rust with [`Queue::enqueue`] / [`Queue::enqueue_batch`],
//! inside your own transaction with [`enqueue_tx`] (the job exists exactly
//! when your writes commit), or over HTTP (`jobqueue api`). [`testing`]
//! has helpers for your tests.
#![forbid(unsafe_code)]

pub mod api;
pub mod api_schedules;
pub mod config;
pub mod dashboard;
pub mod db;
pub mod error;
pub mod handler;
pub mod job;
pub mod metrics;
pub mod migrate;
pub mod ops;
pub mod queue;
pub mod ratelimit;
pub mod reaper;
pub mod schedule;
pub mod shutdown;
mod stale_statements;
pub mod telemetry;
pub mod testing;
pub mod worker;

pub use error::{DbFailure, Error};
pub use handler::{JobContext, JobError, JobResult, Registry};
pub use job::{Job, NewJob, Status};
pub use queue::{enqueue_tx, ClaimedJob, Queue, QueueError};
pub use reaper::{Reaper, ReaperOptions};
pub use worker::{Worker, WorkerOptions};

/// Connects to `database_url` and applies pending migrations (the same as
/// `jobqueue migrate`). Safe to call concurrently from several processes.
pub async fn migrate(database_url: &str) -> Result<Vec<i32>, Error> {
    let url = db::normalise_url(database_url).map_err(Error::Url)?;
    let mut client = db::connect(&url).await?;
    migrate::run(&mut client).await
}

/// A [`Queue`] with a pool of `pool_size` connections to `database_url`.
pub fn connect(database_url: &str, pool_size: usize) -> Result<Queue, Error> {
    let url = db::normalise_url(database_url).map_err(Error::Url)?;
    Ok(Queue::new(db::pool(&url, pool_size)?))
}
