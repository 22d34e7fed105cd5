//! Prometheus text exposition of the cached state (format 0.0.4).
//!
//! Rendered by hand: a dozen series do not justify a metrics registry
//! crate, and a sidecar's footprint is part of its contract. Check names are
//! restricted by the config to `[A-Za-z0-9._-]`, so labels need no escaping.

use std::fmt::Write;

use crate::state::Status;
use crate::App;

pub fn render(app: &App) -> String {
    let h = &app.health;
    let mut out = String::with_capacity(2048);
    let cells = h.cells();
    let snapshots: Vec<_> = cells.iter().map(|c| c.snapshot()).collect();

    header(
        &mut out,
        "berth_check_up",
        "gauge",
        "1 if the check is up (after thresholds), 0 if down or unknown.",
    );
    for (cell, s) in cells.iter().zip(&snapshots) {
        let _ = writeln!(
            out,
            "berth_check_up{{check=\"{}\",type=\"{}\",critical=\"{}\"}} {}",
            cell.name,
            cell.kind,
            cell.critical,
            u8::from(s.status == Status::Up)
        );
    }
    header(
        &mut out,
        "berth_check_latency_seconds",
        "gauge",
        "Duration of the latest run of the check.",
    );
    for (cell, s) in cells.iter().zip(&snapshots) {
        if let Some(l) = s.latency {
            let _ = writeln!(
                out,
                "berth_check_latency_seconds{{check=\"{}\"}} {}",
                cell.name,
                l.as_secs_f64()
            );
        }
    }
    header(
        &mut out,
        "berth_check_failures_total",
        "counter",
        "Failed runs of the check.",
    );
    for (cell, s) in cells.iter().zip(&snapshots) {
        let _ = writeln!(
            out,
            "berth_check_failures_total{{check=\"{}\"}} {}",
            cell.name, s.failures_total
        );
    }
    header(
        &mut out,
        "berth_check_transitions_total",
        "counter",
        "Status changes of the check.",
    );
    for (cell, s) in cells.iter().zip(&snapshots) {
        let _ = writeln!(
            out,
            "berth_check_transitions_total{{check=\"{}\"}} {}",
            cell.name, s.transitions_total
        );
    }
    gauge(
        &mut out,
        "berth_ready",
        "1 if /api/v1/health/ready answers 200.",
        u8::from(h.ready()),
    );
    gauge(
        &mut out,
        "berth_started",
        "1 once the startup gate has passed.",
        u8::from(h.started()),
    );
    gauge(
        &mut out,
        "berth_draining",
        "1 once a drain (prestop or signal) has begun.",
        u8::from(h.draining()),
    );
    header(
        &mut out,
        "berth_uptime_seconds",
        "gauge",
        "Seconds since berth started.",
    );
    let _ = writeln!(out, "berth_uptime_seconds {:.3}", h.uptime().as_secs_f64());
    header(&mut out, "berth_build_info", "gauge", "Build information.");
    let _ = writeln!(
        out,
        "berth_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    out
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn gauge(out: &mut String, name: &str, help: &str, value: u8) {
    header(out, name, "gauge", help);
    let _ = writeln!(out, "{name} {value}");
}
