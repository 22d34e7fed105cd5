//! Counts per queue and status (`GET /api/v1/queues`, the reaper's
//! `job_queue_depth`).

use crate::job::Status;

use super::{Queue, QueueError, QueueStats};

impl Queue {
    /// Counts per queue and status.
    pub async fn stats(&self) -> Result<Vec<QueueStats>, QueueError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT queue, status, count(*) FROM jobs GROUP BY queue, status ORDER BY queue",
                &[],
            )
            .await?;
        let mut out: Vec<QueueStats> = Vec::new();
        for row in rows {
            let queue: String = row.get(0);
            let status: String = row.get(1);
            let count: i64 = row.get(2);
            if out.last().map(|s| s.queue != queue).unwrap_or(true) {
                let counts = Status::ALL
                    .iter()
                    .map(|s| (s.as_str().to_string(), 0))
                    .collect();
                out.push(QueueStats {
                    queue: queue.clone(),
                    depth: 0,
                    counts,
                });
            }
            if let Some(entry) = out.last_mut() {
                if status == "queued" {
                    entry.depth = count;
                }
                entry.counts.insert(status, count);
            }
        }
        Ok(out)
    }

    /// `(queue, status, count)` for every non-empty pair.
    pub async fn counts(&self) -> Result<Vec<(String, String, i64)>, QueueError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT queue, status, count(*) FROM jobs GROUP BY 1, 2",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }
}
