//! Prometheus metrics through the maintained `prometheus` crate (tikv's
//! rust-prometheus): one [`prometheus::Registry`] per process part, text
//! exposition format on `/metrics`.
//!
//! Names follow seed 000 (`job_created_total`, `job_completed_total`,
//! `job_failed_total`, `job_queue_depth`, `worker_lease_acquired_total`)
//! plus latency histograms. The thin wrappers below keep call sites short
//! (`metrics.job_completed_total.inc(&[queue, kind])`) and never panic: a
//! label-count mismatch is a programming error that is logged once, not a
//! crash of the worker's hot path.
//!
//! Families without a series yet still print their `# HELP`/`# TYPE`
//! lines (the crate omits them), so a scraper and `promtool check metrics`
//! see every metric from the first scrape.

use std::time::Duration;

use prometheus::core::Collector;
use prometheus::{Encoder, HistogramOpts, Opts, Registry, TextEncoder};

const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// Help and type of a family, for families without series.
struct Meta {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
}

/// A monotonically increasing counter with labels.
pub struct CounterVec {
    inner: prometheus::IntCounterVec,
    meta: Meta,
}

impl CounterVec {
    fn new(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Self {
        let inner = prometheus::IntCounterVec::new(Opts::new(name, help), labels)
            .unwrap_or_else(|e| panic!("metric {name} is misdefined: {e}"));
        CounterVec {
            inner,
            meta: Meta {
                name,
                help,
                kind: "counter",
            },
        }
    }
    pub fn inc(&self, labels: &[&str]) {
        self.inc_by(labels, 1);
    }
    pub fn inc_by(&self, labels: &[&str], n: u64) {
        match self.inner.get_metric_with_label_values(labels) {
            Ok(c) => c.inc_by(n),
            Err(e) => label_mismatch(self.meta.name, &e),
        }
    }
    pub fn get(&self, labels: &[&str]) -> u64 {
        self.inner
            .get_metric_with_label_values(labels)
            .map(|c| c.get())
            .unwrap_or(0)
    }
}

/// A value that goes up and down, with labels.
pub struct GaugeVec {
    inner: prometheus::GaugeVec,
    meta: Meta,
}

impl GaugeVec {
    fn new(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Self {
        let inner = prometheus::GaugeVec::new(Opts::new(name, help), labels)
            .unwrap_or_else(|e| panic!("metric {name} is misdefined: {e}"));
        GaugeVec {
            inner,
            meta: Meta {
                name,
                help,
                kind: "gauge",
            },
        }
    }
    pub fn set(&self, labels: &[&str], value: f64) {
        match self.inner.get_metric_with_label_values(labels) {
            Ok(g) => g.set(value),
            Err(e) => label_mismatch(self.meta.name, &e),
        }
    }
    /// Sets every existing series to 0 (so vanished label sets read 0
    /// instead of keeping their last value).
    pub fn reset_all(&self) {
        for family in self.inner.collect() {
            for m in family.get_metric() {
                let values: Vec<&str> = m.get_label().iter().map(|l| l.value()).collect();
                // The crate sorts label pairs by name; ours are declared
                // sorted too (queue < status), so the order matches.
                if let Ok(g) = self.inner.get_metric_with_label_values(&values) {
                    g.set(0.0);
                }
            }
        }
    }
    pub fn get(&self, labels: &[&str]) -> f64 {
        self.inner
            .get_metric_with_label_values(labels)
            .map(|g| g.get())
            .unwrap_or(0.0)
    }
}

/// A latency histogram (seconds) with labels.
pub struct HistogramVec {
    inner: prometheus::HistogramVec,
    meta: Meta,
}

impl HistogramVec {
    fn new(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Self {
        let inner = prometheus::HistogramVec::new(
            HistogramOpts::new(name, help).buckets(BUCKETS.to_vec()),
            labels,
        )
        .unwrap_or_else(|e| panic!("metric {name} is misdefined: {e}"));
        HistogramVec {
            inner,
            meta: Meta {
                name,
                help,
                kind: "histogram",
            },
        }
    }
    pub fn observe(&self, labels: &[&str], d: Duration) {
        match self.inner.get_metric_with_label_values(labels) {
            Ok(h) => h.observe(d.as_secs_f64()),
            Err(e) => label_mismatch(self.meta.name, &e),
        }
    }
    pub fn count(&self, labels: &[&str]) -> u64 {
        self.inner
            .get_metric_with_label_values(labels)
            .map(|h| h.get_sample_count())
            .unwrap_or(0)
    }
}

fn label_mismatch(name: &str, e: &prometheus::Error) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(
        || tracing::error!(metric = name, error = %e, "metric updated with wrong labels"),
    );
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
    pub schedule_fired_total: CounterVec,
    pub job_duration_seconds: HistogramVec,
    pub job_start_delay_seconds: HistogramVec,
    pub http_request_duration_seconds: HistogramVec,
    pub api_rate_limited_total: CounterVec,
    pub api_rate_limiter_redis_up: GaugeVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            job_created_total: CounterVec::new(
                "job_created_total",
                "Jobs created.",
                &["queue"],
            ),
            job_completed_total: CounterVec::new(
                "job_completed_total",
                "Jobs completed successfully.",
                &["queue", "kind"],
            ),
            job_failed_total: CounterVec::new(
                "job_failed_total",
                "Failed job attempts (retried or dead).",
                &["queue", "kind"],
            ),
            job_dead_total: CounterVec::new(
                "job_dead_total",
                "Jobs that exhausted their attempts.",
                &["queue", "kind"],
            ),
            job_queue_depth: GaugeVec::new(
                "job_queue_depth",
                "Jobs per queue and status (queued = waiting).",
                &["queue", "status"],
            ),
            worker_lease_acquired_total: CounterVec::new(
                "worker_lease_acquired_total",
                "Leases acquired by workers (one per claimed job).",
                &["queue"],
            ),
            worker_lease_lost_total: CounterVec::new(
                "worker_lease_lost_total",
                "Leases a worker lost before finishing (expired, re-claimed or cancelled): its writes were fenced off.",
                &[],
            ),
            worker_jobs_released_total: CounterVec::new(
                "worker_jobs_released_total",
                "Jobs handed back unfinished at shutdown.",
                &[],
            ),
            reaper_jobs_requeued_total: CounterVec::new(
                "reaper_jobs_requeued_total",
                "Jobs whose lease expired, by outcome (queued or dead).",
                &["outcome"],
            ),
            reaper_jobs_deleted_total: CounterVec::new(
                "reaper_jobs_deleted_total",
                "Finished jobs deleted after the retention period.",
                &[],
            ),
            schedule_fired_total: CounterVec::new(
                "schedule_fired_total",
                "Jobs enqueued by cron schedules (one per fire time).",
                &["schedule"],
            ),
            job_duration_seconds: HistogramVec::new(
                "job_duration_seconds",
                "Handler run time per attempt.",
                &["queue", "kind"],
            ),
            job_start_delay_seconds: HistogramVec::new(
                "job_start_delay_seconds",
                "Time from run_at (due) to the start of the attempt.",
                &["queue"],
            ),
            http_request_duration_seconds: HistogramVec::new(
                "http_request_duration_seconds",
                "API request latency.",
                &["method", "route", "status"],
            ),
            api_rate_limited_total: CounterVec::new(
                "api_rate_limited_total",
                "Job submissions rejected by the rate limiter.",
                &[],
            ),
            api_rate_limiter_redis_up: GaugeVec::new(
                "api_rate_limiter_redis_up",
                "1 when the rate limiter uses Redis, 0 when it fell back to the local limiter.",
                &[],
            ),
        }
    }
}

impl Metrics {
    fn registry(&self) -> (Registry, Vec<&Meta>) {
        let registry = Registry::new();
        let mut metas = Vec::new();
        macro_rules! reg {
            ($($f:ident),*) => {$(
                // Registration only fails on duplicate names, which the
                // fixed list below cannot have.
                let _ = registry.register(Box::new(self.$f.inner.clone()));
                metas.push(&self.$f.meta);
            )*};
        }
        reg!(
            job_created_total,
            job_completed_total,
            job_failed_total,
            job_dead_total,
            job_queue_depth,
            worker_lease_acquired_total,
            worker_lease_lost_total,
            worker_jobs_released_total,
            reaper_jobs_requeued_total,
            reaper_jobs_deleted_total,
            schedule_fired_total,
            job_duration_seconds,
            job_start_delay_seconds,
            http_request_duration_seconds,
            api_rate_limited_total,
            api_rate_limiter_redis_up
        );
        (registry, metas)
    }

    /// The text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let (registry, metas) = self.registry();
        let families = registry.gather();
        let mut buf = Vec::with_capacity(4096);
        if let Err(e) = TextEncoder::new().encode(&families, &mut buf) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        let mut out = String::from_utf8_lossy(&buf).into_owned();
        for m in metas {
            if !families.iter().any(|f| f.name() == m.name) {
                out.push_str(&format!(
                    "# HELP {} {}\n# TYPE {} {}\n",
                    m.name, m.help, m.name, m.kind
                ));
            }
        }
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
            "job_duration_seconds_bucket{kind=\"noop\",queue=\"default\",le=\"0.005\"} 1\n"
        ));
        assert!(text.contains(
            "job_duration_seconds_bucket{kind=\"noop\",queue=\"default\",le=\"0.0025\"} 0\n"
        ));
        assert!(text.contains("# TYPE worker_lease_acquired_total counter"));
    }
}
