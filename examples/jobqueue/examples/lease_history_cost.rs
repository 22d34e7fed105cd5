//! What successes as heap-only updates (migration 8) cost a database that
//! keeps a history (not a test): the migration itself, and the reaper's
//! passes over a lease index that now holds every finished job.
//!
//! ```text
//! createdb lease_cost
//! cargo run --release -p jobqueue --example lease_history_cost -- \
//!     postgres://postgres@127.0.0.1/lease_cost
//! ```
//!
//! The database must be empty (it is migrated to 7 here). `ROWS`
//! [2000000] finished jobs (as a release before migration 8 left them)
//! and 1,000 queued ones go in; then it prints the time `jobqueue migrate`
//! takes to 8 (an `ACCESS EXCLUSIVE` lock on `jobs` for all of it) and the
//! table's size before and after. Then it gives the finished jobs lease
//! times spread evenly over twice `WINDOW_SECONDS` [75] (the default 60 s
//! reaper interval plus its 15 s slack), as `ROWS / 150` jobs/s leave
//! them, and prints what a reaper pass over the last window costs (half
//! of them), and a full sweep (all of them: what a new leader, and every
//! leader hourly, reads).
#![allow(clippy::unwrap_used)]

use std::time::Instant;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: lease_history_cost URL"))?;
    let rows: i64 = std::env::var("ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000_000);
    let window: f64 = std::env::var("WINDOW_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(75.0);
    let mut client = jobqueue::db::connect(&url).await?;
    jobqueue::migrate::run_until(&mut client, 7).await?;
    client
        .execute(
            "INSERT INTO jobs (kind, status, attempts, run_at, created_at, updated_at, finished_at)
             SELECT 'noop', 'succeeded', 1, now() - interval '1 day', now() - interval '1 day',
                    now() - g * interval '1 millisecond', now() - g * interval '1 millisecond'
             FROM generate_series(1, $1::bigint) AS g",
            &[&rows],
        )
        .await?;
    client
        .execute(
            "INSERT INTO jobs (kind) SELECT 'noop' FROM generate_series(1, 1000)",
            &[],
        )
        .await?;
    client.batch_execute("VACUUM ANALYZE jobs").await?;
    let before = size(&client).await?;
    let t = Instant::now();
    let applied = jobqueue::migrate::run(&mut client).await?;
    let took = t.elapsed().as_secs_f64();
    client.batch_execute("VACUUM ANALYZE jobs").await?;
    let after = size(&client).await?;
    println!(
        "migration {applied:?} over {rows} finished jobs: {took:.1} s; heap {} -> {} MB, indexes {} -> {} MB",
        before.0 >> 20,
        after.0 >> 20,
        before.1 >> 20,
        after.1 >> 20
    );

    // Lease times spread over the window, as a steady rate leaves them.
    client
        .execute(
            "UPDATE jobs SET lease_expires_at = now() - (id % $1::bigint) * (2 * $2::float8 / $1::bigint) * interval '1 second'
             WHERE status = 'succeeded'",
            &[&rows, &window],
        )
        .await?;
    client.batch_execute("VACUUM ANALYZE jobs").await?;
    let queue = jobqueue::connect(&url, 1)?;
    let since = client
        .query_one(
            "SELECT now() - $1::float8 * interval '1 second'",
            &[&window],
        )
        .await?
        .get(0);
    for (name, since) in [("window pass", Some(since)), ("full sweep", None)] {
        let mut best = f64::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            let reaped = queue.reap_expired_since(since).await?;
            best = best.min(t.elapsed().as_secs_f64());
            assert_eq!(reaped.requeued + reaped.dead, 0);
        }
        println!(
            "{name} with {rows} leases expired over the last {} s ({:.0} jobs/s): {:.0} ms (best of 5)",
            2.0 * window,
            rows as f64 / window / 2.0,
            best * 1000.0
        );
    }
    Ok(())
}

/// The heap's and the indexes' bytes of `jobs`.
async fn size(client: &tokio_postgres::Client) -> anyhow::Result<(i64, i64)> {
    let row = client
        .query_one(
            "SELECT pg_relation_size('jobs'), pg_indexes_size('jobs')",
            &[],
        )
        .await?;
    Ok((row.get(0), row.get(1)))
}
