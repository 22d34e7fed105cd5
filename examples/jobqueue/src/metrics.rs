//! Prometheus metrics: a tiny registry rendering the text exposition format.
//!
//! Names follow seed 000 (`job_created_total`, `job_completed_total`,
//! `job_failed_total`, `job_queue_depth`, `worker_lease_acquired_total`)
//! plus latency histograms. Hand-rolled rather than a crate because we need
//! five families and a `Mutex<HashMap>` per family is plenty: the worker's
//! hot path updates them once per job, uncontended.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

struct Family<T> {
    name: &'static str,
    help: &'static str,
    series: Mutex<BTreeMap<Vec<String>, T>>,
    label_names: &'static [&'static str],
}

impl<T: Default> Family<T> {
    fn new(name: &'static str, help: &'static str, label_names: &'static [&'static str]) -> Self {
        Family {
            name,
            help,
            series: Mutex::new(BTreeMap::new()),
            label_names,
        }
    }

    fn with<R>(&self, labels: &[&str], f: impl FnOnce(&mut T) -> R) -> R {
        let key: Vec<String> = labels.iter().map(|s| s.to_string()).collect();
        let mut map = self.series.lock().unwrap_or_else(|p| p.into_inner());
        f(map.entry(key).or_default())
    }
}

fn label_str(names: &[&str], values: &[String], extra: Option<(&str, &str)>) -> String {
    let mut s = String::new();
    let pairs = names.iter().copied().zip(values.iter().map(String::as_str));
    for (n, v) in pairs.chain(extra) {
        if !s.is_empty() {
            s.push(',');
        }
        let v = v
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n");
        let _ = write!(s, "{n}=\"{v}\"");
    }
    if s.is_empty() {
        s
    } else {
        format!("{{{s}}}")
    }
}

/// A monotonically increasing counter with labels.
pub struct CounterVec(Family<u64>);

impl CounterVec {
    pub fn inc(&self, labels: &[&str]) {
        self.inc_by(labels, 1);
    }
    pub fn inc_by(&self, labels: &[&str], n: u64) {
        self.0.with(labels, |v| *v += n);
    }
    pub fn get(&self, labels: &[&str]) -> u64 {
        self.0.with(labels, |v| *v)
    }
    fn render(&self, out: &mut String) {
        let f = &self.0;
        let _ = writeln!(
            out,
            "# HELP {} {}\n# TYPE {} counter",
            f.name, f.help, f.name
        );
        let map = f.series.lock().unwrap_or_else(|p| p.into_inner());
        for (k, v) in map.iter() {
            let _ = writeln!(out, "{}{} {}", f.name, label_str(f.label_names, k, None), v);
        }
    }
}

/// A value that goes up and down, with labels.
pub struct GaugeVec(Family<f64>);

impl GaugeVec {
    pub fn set(&self, labels: &[&str], value: f64) {
        self.0.with(labels, |v| *v = value);
    }
    /// Replaces every series at once (so vanished label sets read 0).
    pub fn reset_all(&self) {
        let mut map = self.0.series.lock().unwrap_or_else(|p| p.into_inner());
        for v in map.values_mut() {
            *v = 0.0;
        }
    }
    pub fn get(&self, labels: &[&str]) -> f64 {
        self.0.with(labels, |v| *v)
    }
    fn render(&self, out: &mut String) {
        let f = &self.0;
        let _ = writeln!(out, "# HELP {} {}\n# TYPE {} gauge", f.name, f.help, f.name);
        let map = f.series.lock().unwrap_or_else(|p| p.into_inner());
        for (k, v) in map.iter() {
            let _ = writeln!(out, "{}{} {}", f.name, label_str(f.label_names, k, None), v);
        }
    }
}

const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

#[derive(Default)]
struct Hist {
    counts: [u64; 16],
    sum: f64,
    count: u64,
}

/// A latency histogram (seconds) with labels.
pub struct HistogramVec(Family<Hist>);

impl HistogramVec {
    pub fn observe(&self, labels: &[&str], d: Duration) {
        let secs = d.as_secs_f64();
        self.0.with(labels, |h| {
            if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
                h.counts[i] += 1;
            }
            h.sum += secs;
            h.count += 1;
        });
    }
    pub fn count(&self, labels: &[&str]) -> u64 {
        self.0.with(labels, |h| h.count)
    }
    fn render(&self, out: &mut String) {
        let f = &self.0;
        let _ = writeln!(
            out,
            "# HELP {} {}\n# TYPE {} histogram",
            f.name, f.help, f.name
        );
        let map = f.series.lock().unwrap_or_else(|p| p.into_inner());
        for (k, h) in map.iter() {
            let mut cumulative = 0;
            for (i, b) in BUCKETS.iter().enumerate() {
                cumulative += h.counts[i];
                let le = b.to_string();
                let _ = writeln!(
                    out,
                    "{}_bucket{} {}",
                    f.name,
                    label_str(f.label_names, k, Some(("le", &le))),
                    cumulative
                );
            }
            let _ = writeln!(
                out,
                "{}_bucket{} {}",
                f.name,
                label_str(f.label_names, k, Some(("le", "+Inf"))),
                h.count
            );
            let l = label_str(f.label_names, k, None);
            let _ = writeln!(out, "{}_sum{} {}", f.name, l, h.sum);
            let _ = writeln!(out, "{}_count{} {}", f.name, l, h.count);
        }
    }
}

/// Every metric of the process. Each subcommand updates its own subset;
/// all render (families without series print only their HELP/TYPE).
pub struct Metrics {
    pub job_created_total: CounterVec,
    pub job_completed_total: CounterVec,
    pub job_failed_total: CounterVec,
    pub job_dead_total: CounterVec,
    pub job_queue_depth: GaugeVec,
    pub worker_lease_acquired_total: CounterVec,
    pub worker_lease_lost_total: CounterVec,
    pub worker_jobs_released_total: CounterVec,
    pub reaper_jobs_requeued_total: CounterVec,
    pub reaper_jobs_deleted_total: CounterVec,
    pub job_duration_seconds: HistogramVec,
    pub job_start_delay_seconds: HistogramVec,
    pub http_request_duration_seconds: HistogramVec,
    pub api_rate_limited_total: CounterVec,
    pub api_rate_limiter_redis_up: GaugeVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            job_created_total: CounterVec(Family::new(
                "job_created_total",
                "Jobs created.",
                &["queue"],
            )),
            job_completed_total: CounterVec(Family::new(
                "job_completed_total",
                "Jobs completed successfully.",
                &["queue", "kind"],
            )),
            job_failed_total: CounterVec(Family::new(
                "job_failed_total",
                "Failed job attempts (retried or dead).",
                &["queue", "kind"],
            )),
            job_dead_total: CounterVec(Family::new(
                "job_dead_total",
                "Jobs that exhausted their attempts.",
                &["queue", "kind"],
            )),
            job_queue_depth: GaugeVec(Family::new(
                "job_queue_depth",
                "Jobs per queue and status (queued = waiting).",
                &["queue", "status"],
            )),
            worker_lease_acquired_total: CounterVec(Family::new(
                "worker_lease_acquired_total",
                "Leases acquired by workers (one per claimed job).",
                &["queue"],
            )),
            worker_lease_lost_total: CounterVec(Family::new(
                "worker_lease_lost_total",
                "Leases a worker lost before finishing (expired, re-claimed or cancelled): its writes were fenced off.",
                &[],
            )),
            worker_jobs_released_total: CounterVec(Family::new(
                "worker_jobs_released_total",
                "Jobs handed back unfinished at shutdown.",
                &[],
            )),
            reaper_jobs_requeued_total: CounterVec(Family::new(
                "reaper_jobs_requeued_total",
                "Jobs whose lease expired, by outcome (queued or dead).",
                &["outcome"],
            )),
            reaper_jobs_deleted_total: CounterVec(Family::new(
                "reaper_jobs_deleted_total",
                "Finished jobs deleted after the retention period.",
                &[],
            )),
            job_duration_seconds: HistogramVec(Family::new(
                "job_duration_seconds",
                "Handler run time per attempt.",
                &["queue", "kind"],
            )),
            job_start_delay_seconds: HistogramVec(Family::new(
                "job_start_delay_seconds",
                "Time from run_at (due) to the start of the attempt.",
                &["queue"],
            )),
            http_request_duration_seconds: HistogramVec(Family::new(
                "http_request_duration_seconds",
                "API request latency.",
                &["method", "route", "status"],
            )),
            api_rate_limited_total: CounterVec(Family::new(
                "api_rate_limited_total",
                "Job submissions rejected by the rate limiter.",
                &[],
            )),
            api_rate_limiter_redis_up: GaugeVec(Family::new(
                "api_rate_limiter_redis_up",
                "1 when the rate limiter uses Redis, 0 when it fell back to the local limiter.",
                &[],
            )),
        }
    }
}

impl Metrics {
    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        self.job_created_total.render(&mut out);
        self.job_completed_total.render(&mut out);
        self.job_failed_total.render(&mut out);
        self.job_dead_total.render(&mut out);
        self.job_queue_depth.render(&mut out);
        self.worker_lease_acquired_total.render(&mut out);
        self.worker_lease_lost_total.render(&mut out);
        self.worker_jobs_released_total.render(&mut out);
        self.reaper_jobs_requeued_total.render(&mut out);
        self.reaper_jobs_deleted_total.render(&mut out);
        self.job_duration_seconds.render(&mut out);
        self.job_start_delay_seconds.render(&mut out);
        self.http_request_duration_seconds.render(&mut out);
        self.api_rate_limited_total.render(&mut out);
        self.api_rate_limiter_redis_up.render(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_text_format() {
        let m = Metrics::default();
        m.job_created_total.inc_by(&["default"], 3);
        m.job_queue_depth.set(&["q\"1", "queued"], 7.0);
        m.job_duration_seconds
            .observe(&["default", "noop"], Duration::from_millis(3));
        let text = m.render();
        assert!(
            text.contains("job_created_total{queue=\"default\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("job_queue_depth{queue=\"q\\\"1\",status=\"queued\"} 7\n"),
            "{text}"
        );
        assert!(text.contains(
            "job_duration_seconds_bucket{queue=\"default\",kind=\"noop\",le=\"0.005\"} 1\n"
        ));
        assert!(text.contains(
            "job_duration_seconds_bucket{queue=\"default\",kind=\"noop\",le=\"0.0025\"} 0\n"
        ));
        assert!(text.contains("# TYPE worker_lease_acquired_total counter"));
    }
}
