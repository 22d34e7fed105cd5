//! A/B harness for schema changes (not a test): batch-enqueue throughput of
//! several databases, measured by alternating batches between them so the
//! machine's slow and fast spells hit every candidate alike.
//!
//! ```text
//! cargo run --release -p jobqueue --example enqueue_ab -- \
//!     postgres://postgres@127.0.0.1/a postgres://postgres@127.0.0.1/b
//! ```
//!
//! Each URL must point at a migrated database (`jobqueue migrate`), changed
//! by hand to the variant under test. Prints jobs/s per URL for
//! `AB_ROUNDS` [4] passes of 50 batches of 1,000 jobs each.
#![allow(clippy::unwrap_used)]

use std::time::Instant;

use jobqueue::NewJob;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let urls: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(!urls.is_empty(), "usage: enqueue_ab URL [URL…]");
    let rounds: usize = std::env::var("AB_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let queues = urls
        .iter()
        .map(|u| jobqueue::connect(u, 2))
        .collect::<Result<Vec<_>, jobqueue::Error>>()?;
    let jobs: Vec<NewJob> = (0..50_000)
        .map(|i| NewJob::new("noop").payload(serde_json::json!({ "i": i })))
        .collect();
    let mut seconds = vec![0.0; urls.len()];
    for _ in 0..rounds {
        for batch in jobs.chunks(1000) {
            for (i, queue) in queues.iter().enumerate() {
                let t = Instant::now();
                queue.enqueue_batch(batch).await?;
                seconds[i] += t.elapsed().as_secs_f64();
            }
        }
    }
    for (url, s) in urls.iter().zip(&seconds) {
        let rate = (rounds * jobs.len()) as f64 / s;
        println!("{}: {rate:.0} jobs/s", jobqueue::db::redact(url));
    }
    Ok(())
}
