//! The job record and the request to create one.

use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Serialize};

/// Lifecycle of a job. A failed attempt with attempts left goes back to
/// `Queued` (with a backoff `run_at`); `Dead` means attempts are exhausted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Queued,
    Running,
    Succeeded,
    Dead,
    Cancelled,
}

impl Status {
    pub const ALL: [Status; 5] = [
        Status::Queued,
        Status::Running,
        Status::Succeeded,
        Status::Dead,
        Status::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Running => "running",
            Status::Succeeded => "succeeded",
            Status::Dead => "dead",
            Status::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A job as stored (the API's representation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Job {
    pub id: i64,
    pub queue: String,
    pub kind: String,
    pub payload: serde_json::Value,
    pub status: Status,
    pub attempts: i32,
    pub max_attempts: i32,
    pub priority: i32,
    pub run_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub idempotency_key: Option<String>,
    /// Jobs of one group run at most `WORKER_GROUP_CONCURRENCY` at a time.
    #[serde(default)]
    pub group: Option<String>,
    /// The handler is aborted after this long (a failed attempt, `timeout`).
    #[serde(default)]
    pub timeout_seconds: Option<i32>,
    /// What the handler returned (JSON), once it succeeded.
    #[serde(default)]
    pub output: Option<serde_json::Value>,
    /// What the handler last reported while running.
    #[serde(default)]
    pub progress: Option<serde_json::Value>,
    /// Start of the current (or last) attempt.
    #[serde(default)]
    pub started_at: Option<DateTime<Utc>>,
    /// The statuses in which the idempotency key is unique (absent: all).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub unique_while: Option<Vec<Status>>,
    /// Until when the idempotency key is unique (absent: for ever).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub unique_until: Option<DateTime<Utc>>,
}

/// Columns selected for [`Job::from_row`], in order. A running job's
/// start is its `updated_at` (the claim's stamp, see `queue/mod.rs`).
pub const JOB_COLUMNS: &str =
    "id, queue, kind, payload, status, attempts, max_attempts, priority, \
     run_at, created_at, updated_at, finished_at, last_error, idempotency_key, \
     group_key, timeout_seconds, output, progress, \
     CASE WHEN status = 'running' THEN updated_at ELSE started_at END, unique_states, unique_until";

impl Job {
    pub fn from_row(row: &tokio_postgres::Row) -> Result<Job, tokio_postgres::Error> {
        let status: String = row.try_get(4)?;
        Ok(Job {
            id: row.try_get(0)?,
            queue: row.try_get(1)?,
            kind: row.try_get(2)?,
            payload: row.try_get(3)?,
            // The CHECK constraint guarantees a known value.
            status: Status::parse(&status).unwrap_or(Status::Queued),
            attempts: row.try_get(5)?,
            max_attempts: row.try_get(6)?,
            priority: row.try_get(7)?,
            run_at: row.try_get(8)?,
            created_at: row.try_get(9)?,
            updated_at: row.try_get(10)?,
            finished_at: row.try_get(11)?,
            last_error: row.try_get(12)?,
            idempotency_key: row.try_get(13)?,
            group: row.try_get(14)?,
            timeout_seconds: row.try_get(15)?,
            output: row.try_get(16)?,
            progress: row.try_get(17)?,
            started_at: row.try_get(18)?,
            unique_while: row
                .try_get::<_, Option<Vec<String>>>(19)?
                .map(|v| v.iter().filter_map(|s| Status::parse(s)).collect()),
            unique_until: row.try_get(20)?,
        })
    }
}

/// A job to enqueue. `NewJob::new("sleep").payload(json!({"ms": 10}))`.
// The OpenAPI schema of each constrained field comes from `api::openapi`
// (`*_schema`), built from the constants below.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(description = "A job to submit. Only `kind` is required; unknown fields are rejected.")]
pub struct NewJob {
    #[schema(schema_with = crate::api::openapi::kind_schema)]
    pub kind: String,
    #[serde(default = "empty_object")]
    #[schema(schema_with = crate::api::openapi::payload_schema)]
    pub payload: serde_json::Value,
    #[serde(default = "default_queue")]
    #[schema(schema_with = crate::api::openapi::queue_schema)]
    pub queue: String,
    /// Higher runs first.
    #[serde(default, deserialize_with = "de_priority")]
    #[schema(schema_with = crate::api::openapi::priority_schema)]
    pub priority: i32,
    /// Not before this time (RFC 3339); default now.
    #[serde(default, deserialize_with = "de_run_at")]
    #[schema(schema_with = crate::api::openapi::run_at_schema)]
    pub run_at: Option<DateTime<Utc>>,
    #[serde(default = "default_max_attempts", deserialize_with = "de_max_attempts")]
    #[schema(schema_with = crate::api::openapi::max_attempts_schema)]
    pub max_attempts: i32,
    #[serde(default)]
    #[schema(schema_with = crate::api::openapi::idempotency_key_schema)]
    pub idempotency_key: Option<String>,
    /// Jobs of one group never run more at once than the workers'
    /// `WORKER_GROUP_CONCURRENCY` (default 1): per-key serialisation and
    /// tenant fairness (groups of a queue are served in turn).
    #[serde(default)]
    #[schema(schema_with = crate::api::openapi::group_schema)]
    pub group: Option<String>,
    /// Abort the handler after this many seconds (1 to 604800); the
    /// attempt fails with error kind `timeout`.
    #[serde(default, deserialize_with = "de_timeout")]
    #[schema(schema_with = crate::api::openapi::timeout_seconds_schema)]
    pub timeout_seconds: Option<i32>,
    /// Limit the idempotency key to jobs in these statuses, e.g.
    /// `["queued","running"]`: once the job finished, the key is free.
    #[serde(default, deserialize_with = "de_unique_while")]
    #[schema(schema_with = crate::api::openapi::unique_while_schema)]
    pub unique_while: Option<Vec<Status>>,
    /// Limit the idempotency key to this many seconds after enqueueing.
    #[serde(default, deserialize_with = "de_unique_for")]
    #[schema(schema_with = crate::api::openapi::unique_for_seconds_schema)]
    pub unique_for_seconds: Option<i32>,
}

fn empty_object() -> serde_json::Value {
    serde_json::json!({})
}
fn default_queue() -> String {
    "default".into()
}
fn default_max_attempts() -> i32 {
    5
}

pub const MAX_PRIORITY: i32 = 1_000_000;
/// A week: longer handlers should report progress and be split.
pub const MAX_TIMEOUT_SECONDS: i32 = 604_800;
/// A year.
pub const MAX_UNIQUE_FOR_SECONDS: i32 = 31_536_000;
pub const MAX_ATTEMPTS_LIMIT: i32 = 1000;

impl NewJob {
    pub fn new(kind: impl Into<String>) -> Self {
        NewJob {
            kind: kind.into(),
            payload: empty_object(),
            queue: default_queue(),
            priority: 0,
            run_at: None,
            max_attempts: default_max_attempts(),
            idempotency_key: None,
            group: None,
            timeout_seconds: None,
            unique_while: None,
            unique_for_seconds: None,
        }
    }
    pub fn payload(mut self, payload: serde_json::Value) -> Self {
        self.payload = payload;
        self
    }
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = queue.into();
        self
    }
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }
    pub fn run_at(mut self, at: DateTime<Utc>) -> Self {
        self.run_at = Some(at);
        self
    }
    pub fn max_attempts(mut self, n: i32) -> Self {
        self.max_attempts = n;
        self
    }
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }
    pub fn timeout_seconds(mut self, seconds: i32) -> Self {
        self.timeout_seconds = Some(seconds);
        self
    }
    /// The idempotency key is unique only while the job is in `states`.
    pub fn unique_while(mut self, states: &[Status]) -> Self {
        self.unique_while = Some(states.to_vec());
        self
    }
    /// The idempotency key is unique for `seconds` after enqueueing.
    pub fn unique_for_seconds(mut self, seconds: i32) -> Self {
        self.unique_for_seconds = Some(seconds);
        self
    }

    /// `unique_while` as stored (`unique_states`): status names.
    pub(crate) fn unique_states(&self) -> Option<Vec<&'static str>> {
        self.unique_while
            .as_ref()
            .map(|v| v.iter().map(|s| s.as_str()).collect())
    }

    /// Checks every field; the message names the field. Everything
    /// PostgreSQL would refuse is caught here (NUL characters, dates out of
    /// its range), so a client gets a 400 naming the field instead of a
    /// database error.
    pub fn validate(&self) -> Result<(), String> {
        validate_name(&self.kind).map_err(|m| format!("kind: {m}"))?;
        validate_queue_name(&self.queue).map_err(|m| format!("queue: {m}"))?;
        if !(1..=MAX_ATTEMPTS_LIMIT).contains(&self.max_attempts) {
            return Err(format!(
                "max_attempts: must be between 1 and {MAX_ATTEMPTS_LIMIT}"
            ));
        }
        if !(-MAX_PRIORITY..=MAX_PRIORITY).contains(&self.priority) {
            return Err(format!(
                "priority: must be between -{MAX_PRIORITY} and {MAX_PRIORITY}"
            ));
        }
        if let Some(key) = &self.idempotency_key {
            if key.is_empty() || key.len() > 255 {
                return Err("idempotency_key: must be 1 to 255 bytes".into());
            }
            if key.contains('\0') {
                return Err(NUL_MESSAGE.replace("{}", "idempotency_key"));
            }
        }
        if let Some(group) = &self.group {
            validate_name(group).map_err(|m| format!("group: {m}"))?;
        }
        if let Some(t) = self.timeout_seconds {
            if !(1..=MAX_TIMEOUT_SECONDS).contains(&t) {
                return Err(format!(
                    "timeout_seconds: must be between 1 and {MAX_TIMEOUT_SECONDS}"
                ));
            }
        }
        if let Some(s) = self.unique_for_seconds {
            if !(1..=MAX_UNIQUE_FOR_SECONDS).contains(&s) {
                return Err(format!(
                    "unique_for_seconds: must be between 1 and {MAX_UNIQUE_FOR_SECONDS}"
                ));
            }
        }
        if let Some(states) = &self.unique_while {
            if states.is_empty() {
                return Err("unique_while: must name at least one status".into());
            }
        }
        if self.idempotency_key.is_none() {
            if self.unique_while.is_some() {
                return Err("unique_while: needs an idempotency_key".into());
            }
            if self.unique_for_seconds.is_some() {
                return Err("unique_for_seconds: needs an idempotency_key".into());
            }
        }
        if let Some(at) = self.run_at {
            if !(min_run_at()..=max_run_at()).contains(&at) {
                return Err(
                    "run_at: must be between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z".into(),
                );
            }
        }
        check_json_for_nul(&self.payload, &mut "payload".to_string())?;
        Ok(())
    }
}

const NUL_MESSAGE: &str =
    "{}: must not contain the NUL character (\\u0000), which PostgreSQL cannot store";

fn min_run_at() -> DateTime<Utc> {
    DateTime::<Utc>::MIN_UTC
        .with_year(1)
        .and_then(|d| d.with_ordinal(1))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

fn max_run_at() -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(253_402_300_799, 0).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// jsonb cannot hold `\u0000` in a string or a key (SQLSTATE 22P05): find
/// the first one and name its path, e.g. `payload.headers["x-a"]`.
fn check_json_for_nul(v: &serde_json::Value, path: &mut String) -> Result<(), String> {
    match v {
        serde_json::Value::String(s) if s.contains('\0') => Err(NUL_MESSAGE.replace("{}", path)),
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                check_json_for_nul(item, path)?;
                path.truncate(len);
            }
            Ok(())
        }
        serde_json::Value::Object(map) => {
            for (k, item) in map {
                let len = path.len();
                if k.contains('\0') {
                    return Err(NUL_MESSAGE.replace("{}", &format!("{path} (a key)")));
                }
                if k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') && !k.is_empty() {
                    path.push('.');
                    path.push_str(k);
                } else {
                    path.push_str(&format!("[{}]", serde_json::Value::from(k.as_str())));
                }
                check_json_for_nul(item, path)?;
                path.truncate(len);
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// An integer field that must fit in `[min, max]`: any JSON number is
/// read, so that `1e20` or `99999999999` yields "priority: must be…"
/// instead of serde's "expected i32" without the field name.
fn de_bounded<'de, D: serde::Deserializer<'de>>(
    d: D,
    field: &str,
    min: i32,
    max: i32,
) -> Result<i32, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    let n = v.as_i64().or_else(|| {
        v.as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 9e18)
            .map(|f| f as i64)
    });
    match n
        .and_then(|n| i32::try_from(n).ok())
        .filter(|n| (min..=max).contains(n))
    {
        Some(n) => Ok(n),
        None => Err(serde::de::Error::custom(format!(
            "{field}: must be an integer between {min} and {max}, got {v}"
        ))),
    }
}

/// RFC 3339; a parse error names the field (chrono's own message does not).
fn de_run_at<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    let Some(raw) = Option::<String>::deserialize(d)? else {
        return Ok(None);
    };
    DateTime::parse_from_rfc3339(&raw)
        .map(|t| Some(t.with_timezone(&Utc)))
        .map_err(|e| {
            serde::de::Error::custom(format!(
                "run_at: expected an RFC 3339 time like 2030-01-01T09:00:00Z ({e})"
            ))
        })
}

fn de_priority<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    de_bounded(d, "priority", -MAX_PRIORITY, MAX_PRIORITY)
}

/// An optional bounded integer: `null` is "not set".
fn de_opt_bounded<'de, D: serde::Deserializer<'de>>(
    d: D,
    field: &str,
    min: i32,
    max: i32,
) -> Result<Option<i32>, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    if v.is_null() {
        return Ok(None);
    }
    de_bounded(v, field, min, max)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

fn de_timeout<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i32>, D::Error> {
    de_opt_bounded(d, "timeout_seconds", 1, MAX_TIMEOUT_SECONDS)
}

fn de_unique_for<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i32>, D::Error> {
    de_opt_bounded(d, "unique_for_seconds", 1, MAX_UNIQUE_FOR_SECONDS)
}

/// Status names; an unknown one is named with the field.
fn de_unique_while<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Vec<Status>>, D::Error> {
    let Some(names) = Option::<Vec<String>>::deserialize(d).map_err(|_| {
        serde::de::Error::custom(
            "unique_while: expected a list of statuses like [\"queued\",\"running\"]",
        )
    })?
    else {
        return Ok(None);
    };
    names
        .iter()
        .map(|n| {
            Status::parse(n).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "unique_while: unknown status {n:?} (expected queued, running, succeeded, dead, cancelled)"
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

fn de_max_attempts<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    de_bounded(d, "max_attempts", 1, MAX_ATTEMPTS_LIMIT)
}

/// Queue names: as [`validate_name`], without ':' (`WORKER_QUEUES` writes
/// a queue's own concurrency after a ':').
pub fn validate_queue_name(name: &str) -> Result<(), String> {
    validate_name(name)?;
    if name.contains(':') {
        return Err("may not contain ':' (WORKER_QUEUES uses it for a concurrency)".into());
    }
    Ok(())
}

/// Kind and group names: 1–128 chars of `[A-Za-z0-9_.:-]`.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 128 {
        return Err("must be 1 to 128 characters".into());
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
    {
        return Err("may contain only letters, digits, '_', '-', '.', ':'".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_job_defaults_and_validation() {
        let j: NewJob = serde_json::from_str(r#"{"kind":"noop"}"#).expect("valid");
        assert_eq!(j, NewJob::new("noop"));
        assert!(j.validate().is_ok());
        assert!(NewJob::new("").validate().is_err());
        assert!(NewJob::new("a b").validate().is_err());
        assert!(NewJob::new("x").max_attempts(0).validate().is_err());
        assert!(NewJob::new("x").priority(i32::MAX).validate().is_err());
        assert!(serde_json::from_str::<NewJob>(r#"{"kind":"x","bogus":1}"#).is_err());
        assert!(serde_json::from_str::<NewJob>(r#"{"kind":"x","run_at":"yesterday"}"#).is_err());
    }
}
