//! Log setup: JSON lines by default (`BERTH_LOG_FORMAT=text` for humans),
//! level from `BERTH_LOG`, else `RUST_LOG`, else `info`.
//!
//! Checks log one line per state change, never per probe, so the default
//! level is quiet in steady state.

use tracing_subscriber::EnvFilter;

pub fn init() {
    let directives = std::env::var("BERTH_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".into());
    // A bad directive must not stop a sidecar: fall back to info.
    let filter = EnvFilter::try_new(&directives).unwrap_or_else(|_| EnvFilter::new("info"));
    let text = std::env::var("BERTH_LOG_FORMAT")
        .map(|f| f.eq_ignore_ascii_case("text"))
        .unwrap_or(false);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        .with_target(false);
    let _ = if text {
        builder.with_ansi(false).try_init()
    } else {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init()
    };
}
