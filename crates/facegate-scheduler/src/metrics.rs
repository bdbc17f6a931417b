//! Prometheus metrics of the service: queue depth, batch sizes, stage latencies, outcomes.

use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// The stages `stage` is called with.
pub const STAGES: [&str; 3] = ["prepare", "queue", "compute"];

/// Handles into one registry; clones share the same series.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// Requests accepted and not yet answered (what admission bounds); read from admission
    /// when rendered.
    in_flight: IntGauge,
    held_bytes: IntGauge,
    /// Prepared requests waiting for a device batch.
    pub queued: IntGauge,
    pub batch_size: Histogram,
    pub batch_failures: IntCounter,
    stage_seconds: HistogramVec,
    outcomes: IntCounterVec,
    decisions: IntCounterVec,
    rejections: IntCounterVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let in_flight = IntGauge::new("facegate_requests_in_flight", "Requests accepted and not yet answered").unwrap();
        let held_bytes = IntGauge::new(
            "facegate_held_bytes",
            "Bytes the accepted, unanswered requests are charged for (scheduler.max_queued_bytes bounds it)",
        )
        .unwrap();
        let queued = IntGauge::new("facegate_queue_depth", "Prepared requests waiting for a device batch").unwrap();
        let batch_size = Histogram::with_opts(
            HistogramOpts::new("facegate_batch_size", "Requests per device batch")
                .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0]),
        )
        .unwrap();
        let batch_failures = IntCounter::new(
            "facegate_batch_failures_total",
            "Device batches that failed as a whole (their requests were retried one by one)",
        )
        .unwrap();
        let stage_seconds = HistogramVec::new(
            HistogramOpts::new("facegate_stage_seconds", "Time per request in each stage")
                .buckets(prometheus::exponential_buckets(0.0005, 2.0, 16).unwrap()),
            &["stage"],
        )
        .unwrap();
        let outcomes = IntCounterVec::new(
            Opts::new("facegate_scheduler_requests_total", "Requests by scheduling outcome"),
            &["outcome"],
        )
        .unwrap();
        let decisions = IntCounterVec::new(
            Opts::new("facegate_decisions_total", "Verifications by decision"),
            &["decision"],
        )
        .unwrap();
        let rejections = IntCounterVec::new(
            Opts::new("facegate_rejections_total", "Rejected photos by reason"),
            &["reason"],
        )
        .unwrap();
        // Every labelled series starts at zero, so a rate or an alert sees it before its first
        // event (Prometheus cannot tell "never happened" from "not scraped" otherwise).
        for stage in STAGES {
            stage_seconds.with_label_values(&[stage]);
        }
        for outcome in std::iter::once("ok").chain(crate::ScheduleError::CODES) {
            outcomes.with_label_values(&[outcome]);
        }
        for d in facegate_core::Decision::ALL {
            decisions.with_label_values(&[d.as_str()]);
        }
        for code in facegate_core::Rejection::CODES {
            rejections.with_label_values(&[code]);
        }
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))
            .expect("one process collector");
        for c in [
            Box::new(in_flight.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(held_bytes.clone()),
            Box::new(queued.clone()),
            Box::new(batch_size.clone()),
            Box::new(batch_failures.clone()),
            Box::new(stage_seconds.clone()),
            Box::new(outcomes.clone()),
            Box::new(decisions.clone()),
            Box::new(rejections.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        Self {
            registry,
            in_flight,
            held_bytes,
            queued,
            batch_size,
            batch_failures,
            stage_seconds,
            outcomes,
            decisions,
            rejections,
        }
    }

    pub(crate) fn set_in_flight(&self, n: usize, bytes: u64) {
        self.in_flight.set(n as i64);
        self.held_bytes.set(bytes as i64);
    }

    /// Time `ms` spent in `stage` (one of [`STAGES`]).
    pub fn stage(&self, stage: &str, ms: f64) {
        self.stage_seconds.with_label_values(&[stage]).observe(ms / 1e3);
    }

    pub fn record_outcome(&self, outcome: &str) {
        self.outcomes.with_label_values(&[outcome]).inc();
    }

    pub fn record_decision(&self, v: &facegate_core::Verification) {
        self.decisions.with_label_values(&[v.decision.as_str()]).inc();
        for r in &v.reasons {
            self.rejections.with_label_values(&[r.code.as_str()]).inc();
        }
    }

    /// The text exposition format (`Scheduler::render_metrics` refreshes the in-flight gauge).
    pub(crate) fn render(&self) -> String {
        prometheus::TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_default()
    }
}
