//! Logging setup: JSON lines (seed 000's shape: `timestamp`, `level`,
//! `message`, then the event's fields such as `job_id`, `worker_id`) or
//! human-readable console output.

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
        let _ = builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init();
    } else {
        let _ = builder.with_ansi(false).try_init();
    }
}
