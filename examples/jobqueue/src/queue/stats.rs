//! Counts per queue and status (`GET /api/v1/queues`, the reaper's
//! `job_queue_depth`).

use crate::job::Status;

use super::{Queue, QueueError, QueueStats};

impl Queue {
    /// Counts per queue and status.
    pub async fn stats(&self) -> Result<Vec<QueueStats>, QueueError> {
        let client = self.pool.get().await?;
        // One scan: counts per status, and what finished in the last
        // minute; paused queues without jobs appear too.
        let rows = client
            .query(
                "SELECT queue, status, count(*),
                        count(*) FILTER (WHERE finished_at > now() - interval '1 minute')
                 FROM jobs GROUP BY queue, status
                 UNION ALL
                 SELECT queue, NULL, 0, 0 FROM jobqueue_paused_queues
                 ORDER BY 1",
                &[],
            )
            .await?;
        let paused: std::collections::HashSet<String> = client
            .query("SELECT queue FROM jobqueue_paused_queues", &[])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut out: Vec<QueueStats> = Vec::new();
        for row in rows {
            let queue: String = row.get(0);
            let status: Option<String> = row.get(1);
            let count: i64 = row.get(2);
            let finished_recently: i64 = row.get(3);
            if out.last().map(|s| s.queue != queue).unwrap_or(true) {
                let counts = Status::ALL
                    .iter()
                    .map(|s| (s.as_str().to_string(), 0))
                    .collect();
                out.push(QueueStats {
                    paused: paused.contains(&queue),
                    queue: queue.clone(),
                    depth: 0,
                    counts,
                    finished_last_minute: 0,
                });
            }
            let (Some(entry), Some(status)) = (out.last_mut(), status) else {
                continue;
            };
            if status == "queued" {
                entry.depth = count;
            }
            entry.finished_last_minute += finished_recently;
            entry.counts.insert(status, count);
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
