//! Cron schedules: the definition a client PUTs, its validation, and the
//! cron arithmetic the reaper fires by.
//!
//! Why a module of its own: the SQL lives in `queue/schedule_*.rs` (one
//! operation per file, as for jobs), the HTTP handlers in
//! `api_schedules.rs`; what both need — parsing a request into a checked
//! [`ScheduleSpec`] with messages that name the field, and "which fire time
//! is due, which comes next" in the schedule's time zone — is here, free of
//! I/O so it is unit-tested without a database.
//!
//! Cron syntax is [`croner`]'s (Vixie cron plus `L`, `W`, `#`, names,
//! `@hourly`…): 5 fields, or 6 with **seconds first**. A year field is
//! refused. Times are evaluated in the schedule's IANA time zone
//! ([`chrono_tz`]), so `0 9 * * *` in `Europe/Paris` fires at 09:00 Paris
//! time all year.
//!
//! Daylight saving time (croner's rules):
//! - a wall-clock time that does not exist (spring forward, e.g. 02:30 on
//!   the last Sunday of March in Paris) fires once at the first instant
//!   after the gap (03:00 CEST) when the pattern names a fixed time
//!   (`30 2 * * *`); wildcard/step patterns (`*/15 * * * *`) simply have no
//!   fire times inside the gap;
//! - a wall-clock time that happens twice (fall back, 02:00–02:59 on the
//!   last Sunday of October in Paris) fires once, at the first occurrence,
//!   for a fixed-time pattern, and at both occurrences for wildcard/step
//!   patterns (an "every 15 minutes" schedule keeps firing every 15 real
//!   minutes).

use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Timelike, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::job::NewJob;

/// Longest accepted cron expression (bytes).
pub const MAX_CRON_LEN: usize = 256;
/// Longest accepted time zone name (bytes; the longest IANA name is ~30).
pub const MAX_TIMEZONE_LEN: usize = 64;

/// The job a schedule enqueues at each fire time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ScheduleJob {
    pub kind: String,
    pub payload: Value,
    pub queue: String,
    pub priority: i32,
    pub max_attempts: i32,
}

impl ScheduleJob {
    /// The job to insert for one fire time.
    pub fn to_new_job(&self) -> NewJob {
        NewJob::new(self.kind.clone())
            .payload(self.payload.clone())
            .queue(self.queue.clone())
            .priority(self.priority)
            .max_attempts(self.max_attempts)
    }
}

/// A checked schedule definition (the body of `PUT /api/v1/schedules/{name}`).
#[derive(Debug, Clone)]
pub struct ScheduleSpec {
    pub name: String,
    pub cron: String,
    pub timezone: String,
    pub job: ScheduleJob,
}

/// A schedule as stored (the API's representation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Schedule {
    pub name: String,
    pub cron: String,
    pub timezone: String,
    pub job: ScheduleJob,
    pub next_fire_at: DateTime<Utc>,
    /// The last fire time enqueued (null before the first).
    pub last_fire_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Columns selected for [`Schedule::from_row`], in order.
pub const SCHEDULE_COLUMNS: &str =
    "name, cron, timezone, job, next_fire_at, last_fire_at, created_at, updated_at";

impl Schedule {
    pub fn from_row(row: &tokio_postgres::Row) -> Result<Schedule, tokio_postgres::Error> {
        let job: Value = row.try_get(3)?;
        // Written by `put_schedule` from a ScheduleJob; a row edited by hand
        // into another shape shows an empty job rather than failing the list.
        let job = serde_json::from_value(job).unwrap_or_else(|_| ScheduleJob {
            kind: String::new(),
            payload: Value::Null,
            queue: String::new(),
            priority: 0,
            max_attempts: 0,
        });
        Ok(Schedule {
            name: row.try_get(0)?,
            cron: row.try_get(1)?,
            timezone: row.try_get(2)?,
            job,
            next_fire_at: row.try_get(4)?,
            last_fire_at: row.try_get(5)?,
            created_at: row.try_get(6)?,
            updated_at: row.try_get(7)?,
        })
    }
}

/// The idempotency key of the job for one fire time:
/// `schedule:{name}:{RFC 3339 UTC, whole seconds}`.
pub fn idempotency_key(name: &str, fire_at: DateTime<Utc>) -> String {
    format!(
        "schedule:{name}:{}",
        fire_at.to_rfc3339_opts(SecondsFormat::Secs, true)
    )
}

/// Schedule names: like queue names (`[A-Za-z0-9_.-]`, 1–128), without
/// ':' (the idempotency key uses it as a separator).
pub fn validate_schedule_name(name: &str) -> Result<(), String> {
    crate::job::validate_name(name).map_err(|m| format!("name: {m}"))?;
    if name.contains(':') {
        return Err("name: must not contain ':'".into());
    }
    Ok(())
}

/// A parsed cron expression in a time zone.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    cron: Cron,
    tz: Tz,
}

fn parser() -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
}

impl CronSchedule {
    /// Parses and checks `cron` and `timezone`; messages name the field.
    pub fn parse(cron: &str, timezone: &str) -> Result<CronSchedule, String> {
        if cron.len() > MAX_CRON_LEN {
            return Err(format!("cron: must be at most {MAX_CRON_LEN} characters"));
        }
        if cron.contains('\0') {
            return Err(
                "cron: must not contain the NUL character (\\u0000), which PostgreSQL cannot store"
                    .into(),
            );
        }
        if cron.chars().any(char::is_control) {
            // Only plain spaces separate fields.
            return Err("cron: must not contain control characters".into());
        }
        let trimmed = cron.trim();
        if trimmed.is_empty() {
            return Err("cron: must not be empty".into());
        }
        if !trimmed.starts_with('@') {
            let fields = trimmed.split_whitespace().count();
            if !(5..=6).contains(&fields) {
                return Err(format!(
                    "cron: expected 5 fields (minute hour day-of-month month day-of-week) or 6 (seconds first), got {fields}"
                ));
            }
        }
        let cron = parser().parse(trimmed).map_err(|e| format!("cron: {e}"))?;
        let tz = parse_timezone(timezone)?;
        let parsed = CronSchedule { cron, tz };
        if parsed.next_after(Utc::now()).is_none() {
            return Err("cron: never fires (no matching time in the future)".into());
        }
        Ok(parsed)
    }

    /// The first fire time strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = whole_second(t).with_timezone(&self.tz);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }

    /// The latest fire time at or before `t`.
    pub fn latest_at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = whole_second(t).with_timezone(&self.tz);
        self.cron
            .find_previous_occurrence(&local, true)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }
}

/// Fire times are whole seconds: drop the fraction.
fn whole_second(t: DateTime<Utc>) -> DateTime<Utc> {
    t.with_nanosecond(0).unwrap_or(t)
}

/// An IANA time zone name, e.g. `Europe/Paris`.
pub fn parse_timezone(raw: &str) -> Result<Tz, String> {
    if raw.len() > MAX_TIMEZONE_LEN {
        return Err(format!(
            "timezone: unknown time zone (longer than {MAX_TIMEZONE_LEN} characters)"
        ));
    }
    Tz::from_str(raw).map_err(|_| format!("timezone: unknown time zone {raw:?}"))
}

/// Parses the body of `PUT /api/v1/schedules/{name}` field by field, so
/// every error names its field (`cron: …`, `job.priority: …`); unknown
/// fields are refused.
pub fn parse_request(name: &str, body: &Value) -> Result<(ScheduleSpec, CronSchedule), String> {
    validate_schedule_name(name)?;
    let Value::Object(body) = body else {
        return Err("body: expected a JSON object".into());
    };
    for key in body.keys() {
        if !matches!(key.as_str(), "cron" | "timezone" | "job") {
            return Err(format!(
                "{}: unknown field (expected cron, timezone, job)",
                printable(key)
            ));
        }
    }
    let cron = match body.get("cron") {
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err("cron: must be a string".into()),
        None => return Err("cron: required".into()),
    };
    let timezone = match body.get("timezone") {
        None | Some(Value::Null) => "UTC".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => {
            return Err("timezone: must be a string (an IANA name like Europe/Paris)".into())
        }
    };
    let compiled = CronSchedule::parse(&cron, &timezone)?;
    let job = match body.get("job") {
        Some(Value::Object(job)) => parse_job(job)?,
        Some(_) => return Err("job: must be an object".into()),
        None => return Err("job: required".into()),
    };
    Ok((
        ScheduleSpec {
            name: name.to_string(),
            cron: cron.trim().to_string(),
            timezone,
            job,
        },
        compiled,
    ))
}

fn parse_job(job: &Map<String, Value>) -> Result<ScheduleJob, String> {
    for key in job.keys() {
        if !matches!(
            key.as_str(),
            "kind" | "payload" | "queue" | "priority" | "max_attempts"
        ) {
            return Err(format!(
                "job.{}: unknown field (expected kind, payload, queue, priority, max_attempts)",
                printable(key)
            ));
        }
    }
    match job.get("kind") {
        Some(Value::String(_)) => {}
        Some(_) => return Err("job.kind: must be a string".into()),
        None => return Err("job.kind: required".into()),
    }
    if job.get("queue").is_some_and(|q| !q.is_string()) {
        return Err("job.queue: must be a string".into());
    }
    // NewJob's own deserializer and validation, so a schedule's job obeys
    // exactly the rules of POST /api/v1/jobs; its messages start with the
    // field name, which becomes `job.<field>`.
    let new_job: NewJob = serde_json::from_value(Value::Object(job.clone())).map_err(|e| {
        let msg = e.to_string();
        if msg.starts_with("priority") || msg.starts_with("max_attempts") {
            format!("job.{msg}")
        } else {
            format!("job: {msg}")
        }
    })?;
    new_job.validate().map_err(|m| format!("job.{m}"))?;
    Ok(ScheduleJob {
        kind: new_job.kind,
        payload: new_job.payload,
        queue: new_job.queue,
        priority: new_job.priority,
        max_attempts: new_job.max_attempts,
    })
}

/// A client-supplied key, safe to echo in a message (short, escaped).
fn printable(key: &str) -> String {
    if key.len() <= 64 && !key.is_empty() && key.bytes().all(|b| b.is_ascii_graphic()) {
        key.to_string()
    } else {
        let short: String = key.chars().take(64).collect();
        format!("{short:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("test time")
            .with_timezone(&Utc)
    }

    fn cs(cron: &str, tz: &str) -> CronSchedule {
        CronSchedule::parse(cron, tz).expect("valid cron")
    }

    #[test]
    fn five_fields_fire_on_minutes() {
        let c = cs("*/5 * * * *", "UTC");
        let t = utc("2026-01-10T10:02:30.750Z");
        assert_eq!(c.next_after(t), Some(utc("2026-01-10T10:05:00Z")));
        assert_eq!(c.latest_at_or_before(t), Some(utc("2026-01-10T10:00:00Z")));
        // Exactly on a fire time: it is the latest, and not the next.
        let on = utc("2026-01-10T10:05:00Z");
        assert_eq!(c.latest_at_or_before(on), Some(on));
        assert_eq!(c.next_after(on), Some(utc("2026-01-10T10:10:00Z")));
    }

    #[test]
    fn six_fields_have_seconds_first() {
        let c = cs("*/10 * * * * *", "UTC");
        let t = utc("2026-01-10T10:02:31.100Z");
        assert_eq!(c.next_after(t), Some(utc("2026-01-10T10:02:40Z")));
        assert_eq!(c.latest_at_or_before(t), Some(utc("2026-01-10T10:02:30Z")));
        // Seconds first: "30 0 12 * * *" is 12:00:30, not minute 30.
        let c = cs("30 0 12 * * *", "UTC");
        assert_eq!(
            c.next_after(utc("2026-01-10T00:00:00Z")),
            Some(utc("2026-01-10T12:00:30Z"))
        );
        let every = cs("* * * * * *", "UTC");
        let t = utc("2026-01-10T10:00:00.400Z");
        assert_eq!(every.next_after(t), Some(utc("2026-01-10T10:00:01Z")));
        assert_eq!(
            every.latest_at_or_before(t),
            Some(utc("2026-01-10T10:00:00Z"))
        );
    }

    #[test]
    fn time_zone_shifts_the_wall_clock() {
        // 09:00 in Paris is 08:00 UTC in winter, 07:00 UTC in summer.
        let c = cs("0 9 * * *", "Europe/Paris");
        assert_eq!(
            c.next_after(utc("2026-01-10T00:00:00Z")),
            Some(utc("2026-01-10T08:00:00Z"))
        );
        assert_eq!(
            c.next_after(utc("2026-07-10T00:00:00Z")),
            Some(utc("2026-07-10T07:00:00Z"))
        );
        let ny = cs("0 9 * * MON-FRI", "America/New_York");
        // Saturday 2026-01-10: next is Monday 09:00 EST = 14:00 UTC.
        assert_eq!(
            ny.next_after(utc("2026-01-10T00:00:00Z")),
            Some(utc("2026-01-12T14:00:00Z"))
        );
    }

    #[test]
    fn dst_in_paris() {
        // 2026-03-29: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist.
        // A fixed-time schedule fires once, at the first instant after the
        // gap (03:00 CEST = 01:00 UTC), then normally the next day.
        let c = cs("30 2 * * *", "Europe/Paris");
        let fire = c.next_after(utc("2026-03-28T12:00:00Z"));
        assert_eq!(fire, Some(utc("2026-03-29T01:00:00Z")));
        assert_eq!(
            c.next_after(utc("2026-03-29T01:00:00Z")),
            Some(utc("2026-03-30T00:30:00Z"))
        );
        // 2026-10-25: 03:00 CEST falls back to 02:00 CET; 02:30 happens
        // twice. A fixed-time schedule fires once, at the first (CEST).
        let first = utc("2026-10-25T00:30:00Z"); // 02:30 CEST
        assert_eq!(c.next_after(utc("2026-10-24T12:00:00Z")), Some(first));
        assert_eq!(
            c.next_after(first),
            Some(utc("2026-10-26T01:30:00Z")) // 02:30 CET, next day
        );
        // An interval schedule keeps its real-time cadence through the
        // repeated hour: both 02:30 CEST and 02:30 CET fire.
        let every30 = cs("*/30 * * * *", "Europe/Paris");
        let mut t = utc("2026-10-25T00:00:00Z");
        let mut fires = Vec::new();
        for _ in 0..4 {
            t = every30.next_after(t).expect("next");
            fires.push(t);
        }
        assert_eq!(
            fires,
            vec![
                utc("2026-10-25T00:30:00Z"),
                utc("2026-10-25T01:00:00Z"),
                utc("2026-10-25T01:30:00Z"),
                utc("2026-10-25T02:00:00Z"),
            ]
        );
        // ... and has no fire times inside the spring gap.
        let t = utc("2026-03-29T00:45:00Z"); // 01:45 CET
        assert_eq!(every30.next_after(t), Some(utc("2026-03-29T01:00:00Z"))); // 03:00 CEST
    }

    #[test]
    fn rejects_bad_expressions_naming_the_field() {
        let long = "* ".repeat(200);
        let cases: &[(&str, &str, &str)] = &[
            ("", "UTC", "cron: must not be empty"),
            ("* * * *", "UTC", "cron: expected 5"),
            ("* * * * * * *", "UTC", "cron: expected 5"),
            ("61 * * * *", "UTC", "cron:"),
            ("* * * * * 2030", "UTC", "cron:"),
            ("bogus * * * *", "UTC", "cron:"),
            ("0 0 30 2 *", "UTC", "cron: never fires"),
            ("*\0 * * * *", "UTC", "cron: must not contain the NUL"),
            ("*\t* * * *", "UTC", "cron: must not contain control"),
            (&long, "UTC", "cron: must be at most 256"),
            (
                "* * * * *",
                "Mars/Olympus",
                "timezone: unknown time zone \"Mars/Olympus\"",
            ),
            ("* * * * *", "", "timezone: unknown time zone"),
            ("* * * * *", "Europe/Paris\0", "timezone: unknown time zone"),
        ];
        for (cron, tz, want) in cases {
            let err = CronSchedule::parse(cron, tz).expect_err(cron);
            assert!(err.starts_with(want), "{cron:?} {tz:?}: {err}");
        }
        assert!(CronSchedule::parse("@hourly", "UTC").is_ok());
        assert!(CronSchedule::parse(" 0 9 * * mon ", "Asia/Tokyo").is_ok());
    }

    #[test]
    fn request_parsing() {
        let body = json!({"cron": "*/5 * * * * *", "job": {"kind": "noop"}});
        let (spec, _) = parse_request("nightly", &body).expect("valid");
        assert_eq!(spec.timezone, "UTC");
        assert_eq!(spec.job.queue, "default");
        assert_eq!(spec.job.max_attempts, 5);
        assert_eq!(spec.job.payload, json!({}));
        let job = spec.job.to_new_job();
        assert!(job.validate().is_ok());

        let err = |name: &str, body: Value| parse_request(name, &body).expect_err("invalid");
        assert!(err("a:b", body.clone()).starts_with("name:"));
        assert!(err("", body.clone()).starts_with("name:"));
        assert!(err(
            "x",
            json!({"cron": "* * * * *", "job": {"kind": "n"}, "extra": 1})
        )
        .starts_with("extra: unknown field"));
        assert!(err(
            "x",
            json!({"cron": "* * * * *", "job": {"kind": "n", "run_at": "x"}})
        )
        .starts_with("job.run_at: unknown field"));
        assert!(err(
            "x",
            json!({"cron": "* * * * *", "job": {"kind": "n", "priority": 1e12}})
        )
        .starts_with("job.priority:"));
        assert!(err(
            "x",
            json!({"cron": "* * * * *", "job": {"kind": "n", "max_attempts": 0}})
        )
        .starts_with("job.max_attempts:"));
        assert!(err("x", json!({"cron": 5, "job": {"kind": "n"}})).starts_with("cron:"));
        assert!(err("x", json!([1])).starts_with("body:"));
    }

    #[test]
    fn idempotency_key_is_rfc3339_utc() {
        let t = Utc
            .with_ymd_and_hms(2026, 3, 29, 1, 0, 0)
            .single()
            .expect("time");
        assert_eq!(idempotency_key("n", t), "schedule:n:2026-03-29T01:00:00Z");
    }
}
