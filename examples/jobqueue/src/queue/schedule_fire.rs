//! Enqueue the jobs of due schedules ([`Queue::fire_due_schedules`]): the
//! reaper's leader calls it about every second.
//!
//! Exactly once per fire time: one transaction locks the due rows
//! (`FOR UPDATE SKIP LOCKED`), inserts each job and moves `next_fire_at`
//! past now. A crash before the commit leaves neither the job nor the
//! advance; after it, both. Two leaders overlapping (a lost leadership
//! connection noticed late) skip each other's locked rows, re-check
//! `next_fire_at` on rows the other just advanced, and the job's
//! idempotency key `schedule:{name}:{fire time}` would refuse a second
//! insert anyway (`ON CONFLICT DO NOTHING`, with no conflict target so it
//! does not depend on the exact shape of the unique index).
//!
//! Catch-up: when several fire times passed unseen (no reaper running),
//! only the latest one is enqueued; the schedule then continues from the
//! first fire time after now.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::schedule::{idempotency_key, CronSchedule, ScheduleJob};

use super::{Queue, QueueError};

/// Due schedules handled per transaction (the rest are due on the next call).
const FIRE_BATCH: i64 = 100;

/// One schedule handled by [`Queue::fire_due_schedules`].
#[derive(Debug, Clone)]
pub struct Fired {
    pub schedule: String,
    pub queue: String,
    /// The fire time enqueued, `None` when no fire time was due after all
    /// (a `next_fire_at` edited by hand) or the stored row is unusable.
    pub fire_at: Option<DateTime<Utc>>,
    /// `false` when the idempotency key existed already.
    pub enqueued: bool,
}

/// What [`Queue::fire_due_schedules`] did.
#[derive(Debug, Clone, Default)]
pub struct FireReport {
    pub fired: Vec<Fired>,
    /// Time until the earliest `next_fire_at` (by the server's clock);
    /// `None` without schedules. Zero when more are due already.
    pub next_due_in: Option<Duration>,
}

impl Queue {
    /// Enqueues the latest due fire time of every due schedule and advances
    /// them; see the module documentation.
    pub async fn fire_due_schedules(&self) -> Result<FireReport, QueueError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let rows = tx
            .query(
                "SELECT name, cron, timezone, job, next_fire_at, now() FROM jobqueue_schedules
                 WHERE next_fire_at <= now()
                 ORDER BY next_fire_at LIMIT $1
                 FOR UPDATE SKIP LOCKED",
                &[&FIRE_BATCH],
            )
            .await?;
        let mut fired = Vec::with_capacity(rows.len());
        if !rows.is_empty() {
            let insert = tx
                .prepare_cached(
                    "INSERT INTO jobs (queue, kind, payload, priority, max_attempts, run_at, idempotency_key)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)
                     ON CONFLICT DO NOTHING",
                )
                .await?;
            let advance = tx
                .prepare_cached(
                    "UPDATE jobqueue_schedules
                     SET next_fire_at = $2, last_fire_at = COALESCE($3, last_fire_at)
                     WHERE name = $1",
                )
                .await?;
            for row in &rows {
                let name: String = row.try_get(0)?;
                let cron: String = row.try_get(1)?;
                let timezone: String = row.try_get(2)?;
                let job: serde_json::Value = row.try_get(3)?;
                let due: DateTime<Utc> = row.try_get(4)?;
                let now: DateTime<Utc> = row.try_get(5)?;
                let parsed = CronSchedule::parse(&cron, &timezone);
                let job = serde_json::from_value::<ScheduleJob>(job);
                let (cron, job) = match (parsed, job) {
                    (Ok(c), Ok(j)) => (c, j),
                    (c, j) => {
                        // Only a row edited by hand gets here (the API
                        // validates): look again in an hour, loudly.
                        tracing::error!(
                            schedule = %name,
                            cron_error = c.err().unwrap_or_default(),
                            job_error = j.err().map(|e| e.to_string()).unwrap_or_default(),
                            "schedule cannot fire: invalid definition in the database"
                        );
                        let later = now + chrono::Duration::hours(1);
                        tx.execute(&advance, &[&name, &later, &None::<DateTime<Utc>>])
                            .await?;
                        fired.push(Fired {
                            schedule: name,
                            queue: String::new(),
                            fire_at: None,
                            enqueued: false,
                        });
                        continue;
                    }
                };
                // The latest fire time at or before now; one that precedes
                // `due` means no real fire time lies in [due, now].
                let fire_at = cron.latest_at_or_before(now).filter(|t| *t >= due);
                let mut enqueued = false;
                if let Some(at) = fire_at {
                    let key = idempotency_key(&name, at);
                    let n = tx
                        .execute(
                            &insert,
                            &[
                                &job.queue,
                                &job.kind,
                                &job.payload,
                                &job.priority,
                                &job.max_attempts,
                                &at,
                                &key,
                            ],
                        )
                        .await?;
                    enqueued = n == 1;
                }
                let next = cron.next_after(now).unwrap_or_else(|| {
                    tracing::error!(schedule = %name, "schedule has no fire time left; retrying in a day");
                    now + chrono::Duration::days(1)
                });
                tx.execute(&advance, &[&name, &next, &fire_at]).await?;
                fired.push(Fired {
                    schedule: name,
                    queue: job.queue,
                    fire_at,
                    enqueued,
                });
            }
        }
        tx.commit().await?;
        let secs: Option<f64> = client
            .query_one(
                "SELECT EXTRACT(EPOCH FROM min(next_fire_at) - clock_timestamp())::float8
                 FROM jobqueue_schedules",
                &[],
            )
            .await?
            .try_get(0)?;
        let next_due_in = secs.map(|s| Duration::from_secs_f64(s.clamp(0.0, 86_400.0)));
        Ok(FireReport { fired, next_due_in })
    }
}
