//! Logging setup: JSON lines (seed 000's shape: `timestamp`, `level`,
//! `message`, then the event's fields such as `job_id`, `worker_id`) or
//! human-readable console output.
//!
//! The JSON lines come from [`JsonLines`], not from `tracing-subscriber`'s
//! own JSON formatter. A worker logs every job twice at `INFO` ("job
//! started", "job succeeded"), and that formatter streams each line through
//! serde_json into a `fmt::Write` adaptor that re-validates every small
//! chunk as UTF-8: at concurrency 2048 the `jobqueue worker` binary ran
//! 55,000–58,000 jobs/s at `LOG_LEVEL=info` against 72,000–75,000 at
//! `warn`. [`JsonLines`] writes the same line (same keys, same order, same
//! escaping; a test holds the two together) into one buffer.

use std::fmt;
use std::io::Write as _;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::config::LogConfig;

/// Installs the global subscriber. `RUST_LOG`, when set, wins over
/// `LOG_LEVEL` (handy for `RUST_LOG=jobqueue=debug,tower_http=debug`).
pub fn init(cfg: &LogConfig) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| tracing_subscriber::EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new(&cfg.filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    // `try_init`: a second call (tests, embedding) is harmless.
    if cfg.json {
        let _ = builder.event_format(JsonLines).try_init();
    } else {
        let _ = builder.with_ansi(false).try_init();
    }
}

/// One JSON object per event, on one line: `timestamp` (RFC 3339, UTC,
/// microseconds), `level`, the event's fields in the order they were
/// recorded (`message` first), then `target`. No span fields.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut line = JsonLine::start(meta.level());
        event.record(&mut line);
        line.finish(meta.target());
        writer.write_str(line.as_str()?)
    }
}

/// The line being built, as bytes: serde_json writes into it directly.
struct JsonLine {
    buf: Vec<u8>,
}

impl JsonLine {
    fn start(level: &Level) -> Self {
        let mut buf = Vec::with_capacity(256);
        let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ");
        // Writing into a Vec cannot fail.
        let _ = write!(buf, "{{\"timestamp\":\"{now}\",\"level\":\"{level}\"");
        JsonLine { buf }
    }

    /// `,"name":` then `value` as serde_json writes it.
    fn field<T: serde::Serialize + ?Sized>(&mut self, name: &str, value: &T) {
        self.buf.push(b',');
        self.json(name);
        self.buf.push(b':');
        self.json(value);
    }

    fn json<T: serde::Serialize + ?Sized>(&mut self, value: &T) {
        if serde_json::to_writer(&mut self.buf, value).is_err() {
            // Only a failing Serialize impl gets here (none of the types
            // below has one); keep the line valid JSON.
            self.buf.extend_from_slice(b"null");
        }
    }

    fn finish(&mut self, target: &str) {
        self.field("target", target);
        self.buf.extend_from_slice(b"}\n");
    }

    fn as_str(&self) -> Result<&str, fmt::Error> {
        // Valid UTF-8 by construction (serde_json writes only UTF-8); one
        // check per line instead of one per chunk.
        std::str::from_utf8(&self.buf).map_err(|_| fmt::Error)
    }
}

impl Visit for JsonLine {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.field(field.name(), &value);
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.field(field.name(), &value);
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.field(field.name(), &value);
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.field(field.name(), &value);
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.field(field.name(), value);
    }
    // 128-bit integers, errors and anything else: Visit's defaults hand
    // them to `record_debug` as text, as tracing-serde does.
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.field(field.name(), &format!("{value:?}"));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Collects what a subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn lines(&self) -> Vec<String> {
            let bytes = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
            String::from_utf8(bytes)
                .expect("UTF-8 output")
                .lines()
                .map(str::to_owned)
                .collect()
        }
    }

    /// Every kind of field a log line of ours carries, and hostile text.
    fn events() {
        let err = std::io::Error::other("disk \"full\"\n");
        tracing::info!(job_id = 42_i64, kind = %"noop", queue = "default", attempt = 1_u64, "job started");
        tracing::warn!(
            error = %err,
            sqlstate = "22P05",
            detail = "NUL \u{0} tab \t quote \" backslash \\ bell \u{7} é 日本 🚀",
            "database error"
        );
        tracing::error!(
            ratio = 0.5_f64,
            nan = f64::NAN,
            inf = f64::INFINITY,
            ok = false,
            "floats and bools"
        );
        tracing::info!(
            big = i128::MAX,
            huge = u128::MAX,
            neg = -7_i64,
            "wide integers"
        );
        tracing::info!(lanes = ?vec![("default", 2048)], debug_text = ?"a\"b", "debug values");
        tracing::debug!("debug line with {} interpolated", "text");
        tracing::info!(target: "custom::target", "\u{1F600} emoji message\r\nsecond line");
        tracing::error!(err = &err as &dyn std::error::Error, "an error value");
    }

    /// The lines `subscriber` (built around a writer) writes for [`events`].
    fn capture(subscriber: impl FnOnce(Captured) -> tracing::Dispatch) -> Vec<String> {
        let out = Captured::default();
        tracing::dispatcher::with_default(&subscriber(out.clone()), events);
        out.lines()
    }

    /// What `tracing-subscriber`'s JSON formatter writes for the same
    /// events, with the settings `init` used before [`JsonLines`].
    fn reference_lines() -> Vec<String> {
        capture(|out| {
            tracing_subscriber::fmt()
                .with_max_level(Level::TRACE)
                .with_writer(move || out.clone())
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false)
                .finish()
                .into()
        })
    }

    fn our_lines() -> Vec<String> {
        capture(|out| {
            tracing_subscriber::fmt()
                .with_max_level(Level::TRACE)
                .with_writer(move || out.clone())
                .event_format(JsonLines)
                .finish()
                .into()
        })
    }

    /// The line without its timestamp's value (the only part that differs
    /// between two runs), and that value.
    fn split_timestamp(line: &str) -> (String, String) {
        let head = "{\"timestamp\":\"";
        assert!(line.starts_with(head), "{line}");
        let rest = &line[head.len()..];
        let end = rest.find('"').expect("timestamp ends");
        (format!("{head}{}", &rest[end..]), rest[..end].to_string())
    }

    #[test]
    fn json_lines_match_tracing_subscribers_json_byte_for_byte() {
        let reference = reference_lines();
        let ours = our_lines();
        assert_eq!(reference.len(), 8, "{reference:#?}");
        assert_eq!(ours.len(), reference.len(), "{ours:#?}");
        for (mine, theirs) in ours.iter().zip(&reference) {
            let (mine_rest, mine_ts) = split_timestamp(mine);
            let (theirs_rest, theirs_ts) = split_timestamp(theirs);
            assert_eq!(mine_rest, theirs_rest);
            // Same timestamp shape: RFC 3339, UTC, microseconds.
            assert_eq!(mine_ts.len(), theirs_ts.len(), "{mine_ts} vs {theirs_ts}");
            chrono::DateTime::parse_from_rfc3339(&mine_ts).expect("RFC 3339");
            assert!(mine_ts.ends_with('Z'));
            // Every line is one JSON object.
            let v: serde_json::Value = serde_json::from_str(mine).expect("JSON");
            assert!(v.is_object());
        }
        // Spot checks, so that a change in both formatters at once (a
        // dependency update) cannot pass unnoticed.
        assert!(ours[0].contains(r#""level":"INFO","message":"job started","job_id":42,"kind":"noop","queue":"default","attempt":1,"target":"#));
        assert!(ours[1].contains(
            r#""detail":"NUL \u0000 tab \t quote \" backslash \\ bell \u0007 é 日本 🚀""#
        ));
        assert!(ours[2].contains(r#""nan":null,"inf":null,"ok":false"#));
    }
}
