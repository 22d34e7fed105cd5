//! Create or replace a schedule (`PUT /api/v1/schedules/{name}`,
//! [`Queue::put_schedule`]).
//!
//! Why its own file: replacing keeps the schedule's place in time when the
//! cron and time zone are unchanged (no fire time is skipped or repeated by
//! re-PUTting the same definition), and recomputes `next_fire_at` from now
//! when either changed.

use crate::schedule::{CronSchedule, Schedule, ScheduleSpec, SCHEDULE_COLUMNS};

use super::{Queue, QueueError};

impl Queue {
    /// Creates or replaces the schedule `spec.name`; `cron` is
    /// `spec.cron`/`spec.timezone` parsed. Returns the stored schedule and
    /// `true` when it was created.
    pub async fn put_schedule(
        &self,
        spec: &ScheduleSpec,
        cron: &CronSchedule,
    ) -> Result<(Schedule, bool), QueueError> {
        let job = serde_json::to_value(&spec.job)
            .map_err(|e| QueueError::Invalid(format!("job: {e}")))?;
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        // The server's clock decides, as it does for firing.
        let now: chrono::DateTime<chrono::Utc> = tx.query_one("SELECT now()", &[]).await?.get(0);
        let existing = tx
            .query_opt(
                "SELECT cron, timezone, next_fire_at FROM jobqueue_schedules
                 WHERE name = $1 FOR UPDATE",
                &[&spec.name],
            )
            .await?;
        let kept = existing.and_then(|row| {
            let same = row.get::<_, &str>(0) == spec.cron && row.get::<_, &str>(1) == spec.timezone;
            same.then(|| row.get::<_, chrono::DateTime<chrono::Utc>>(2))
        });
        let next_fire_at = match kept {
            Some(t) => t,
            None => cron.next_after(now).ok_or_else(|| {
                QueueError::Invalid("cron: never fires (no matching time in the future)".into())
            })?,
        };
        let row = tx
            .query_one(
                &format!(
                    "INSERT INTO jobqueue_schedules AS s (name, cron, timezone, job, next_fire_at)
                     VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (name) DO UPDATE
                     SET cron = EXCLUDED.cron, timezone = EXCLUDED.timezone, job = EXCLUDED.job,
                         next_fire_at = EXCLUDED.next_fire_at, updated_at = now()
                     RETURNING {SCHEDULE_COLUMNS}, (xmax = 0) AS created"
                ),
                &[&spec.name, &spec.cron, &spec.timezone, &job, &next_fire_at],
            )
            .await?;
        let created: bool = row.try_get(8)?;
        let schedule = Schedule::from_row(&row)?;
        tx.commit().await?;
        Ok((schedule, created))
    }
}
