//! `GET /metrics`: the Prometheus exposition, rendered by `metrics-exporter-prometheus`.
//!
//! Each serve instance owns its recorder (none is installed globally), so that several
//! instances in one process (tests, an embedding application) keep their own figures. The
//! prefetcher's counters live in the prefetcher and are copied into the recorder when a scrape
//! comes; the latencies are recorded as they happen, as histograms with fixed buckets, so
//! that they can be aggregated across nodes (summaries cannot).

use std::sync::atomic::Ordering;
use std::time::Duration;

use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
    with_local_recorder,
};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use prescient_prefetch::{BreakerState, Snapshot};

use crate::stats::ServeStats;

/// Bucket bounds of every latency histogram, in seconds: 50 µs to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 10.0,
];

/// A serve instance's metrics: its recorder and the handle that renders it.
pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A recorder with the latency buckets set, and every metric described.
    pub fn new() -> Self {
        let builder = PrometheusBuilder::new();
        // `set_buckets` fails only on an empty list.
        let builder = match builder.set_buckets(LATENCY_BUCKETS) {
            Ok(b) => b,
            Err(_) => PrometheusBuilder::new(),
        };
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        let m = Metrics { recorder, handle };
        m.describe();
        m
    }

    fn describe(&self) {
        with_local_recorder(&self.recorder, || {
            for (name, help) in COUNTERS {
                describe_counter!(format!("prescient_{name}_total"), *help);
            }
            for (name, help) in SERVE_COUNTERS {
                describe_counter!(format!("prescient_{name}_total"), *help);
            }
            describe_gauge!(
                "prescient_queue_depth",
                "Prefetch plans waiting to be loaded."
            );
            describe_gauge!("prescient_in_flight", "Prefetch loads in flight.");
            describe_gauge!(
                "prescient_hit_ratio",
                "Consumer reads served from the cache: hits / (hits + joined + misses)."
            );
            describe_gauge!(
                "prescient_source_up",
                "1 when the event source answered last time."
            );
            describe_gauge!(
                "prescient_breaker_state",
                "The predictor circuit breaker's state: 1 for the current one."
            );
            describe_gauge!(
                "prescient_threshold",
                "The confidence a prediction needs to be prefetched, learned per relation."
            );
            describe_histogram!(
                "prescient_read_seconds",
                Unit::Seconds,
                "Latency of consumer reads through /get, by outcome (hit, joined, miss, error)."
            );
            describe_histogram!(
                "prescient_batch_seconds",
                Unit::Seconds,
                "Time to process one batch of events: invalidate, predict, schedule."
            );
            describe_histogram!(
                "prescient_predict_seconds",
                Unit::Seconds,
                "Latency of POST /predict."
            );
        });
    }

    /// Records a consumer read of `outcome` that took `d`.
    pub fn record_read(&self, outcome: &'static str, d: Duration) {
        with_local_recorder(&self.recorder, || {
            histogram!("prescient_read_seconds", "outcome" => outcome).record(d.as_secs_f64());
        });
    }

    /// Records the processing of one batch.
    pub fn record_batch(&self, d: Duration) {
        with_local_recorder(&self.recorder, || {
            histogram!("prescient_batch_seconds").record(d.as_secs_f64());
        });
    }

    /// Records one `POST /predict`.
    pub fn record_predict(&self, d: Duration) {
        with_local_recorder(&self.recorder, || {
            histogram!("prescient_predict_seconds").record(d.as_secs_f64());
        });
    }

    /// Copies the prefetcher's snapshot and the serve loop's counters into the recorder, and
    /// renders everything in the Prometheus text format. Every counter is
    /// `prescient_<name>_total`.
    pub fn render(&self, snap: &Snapshot, stats: &ServeStats) -> String {
        with_local_recorder(&self.recorder, || {
            for (name, v) in &snap.counters {
                counter!(format!("prescient_{name}_total")).absolute(*v);
            }
            counter!("prescient_retries_total").absolute(snap.retries);
            let ld = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
            for (name, v) in [
                ("messages_received", ld(&stats.received)),
                ("events_processed", ld(&stats.processed)),
                ("dead_letters", ld(&stats.dead_letters)),
                ("poison", ld(&stats.poison)),
                ("ack_errors", ld(&stats.ack_errors)),
                ("source_errors", ld(&stats.source_errors)),
            ] {
                counter!(format!("prescient_{name}_total")).absolute(v);
            }
            let get = |n: &str| {
                snap.counters
                    .iter()
                    .find(|(k, _)| *k == n)
                    .map_or(0, |(_, v)| *v)
            };
            let reads = get("hits") + get("joined") + get("misses");
            let ratio = if reads == 0 {
                0.0
            } else {
                get("hits") as f64 / reads as f64
            };
            gauge!("prescient_queue_depth").set(snap.queue_depth as f64);
            gauge!("prescient_in_flight").set(snap.in_flight as f64);
            gauge!("prescient_hit_ratio").set(ratio);
            gauge!("prescient_source_up")
                .set(f64::from(u8::from(stats.source_up.load(Ordering::Relaxed))));
            for (name, st) in [
                ("closed", BreakerState::Closed),
                ("open", BreakerState::Open),
                ("half_open", BreakerState::HalfOpen),
            ] {
                gauge!("prescient_breaker_state", "state" => name)
                    .set(f64::from(u8::from(snap.breaker == st)));
            }
            for (relation, t) in &snap.thresholds {
                gauge!("prescient_threshold", "relation" => *relation).set(f64::from(*t));
            }
        });
        self.handle.render()
    }
}

/// The prefetcher's counters ([`Snapshot::counters`]) and what each counts.
const COUNTERS: &[(&str, &str)] = &[
    ("events", "Events the prefetcher processed."),
    (
        "predictions",
        "Predictions the predictor made (above any threshold or not).",
    ),
    (
        "predictor_errors",
        "Predictor calls that failed, panicked or overran their deadline.",
    ),
    (
        "breaker_refused",
        "Events not predicted because the circuit breaker was open.",
    ),
    ("prefetches_issued", "Prefetch loads started."),
    (
        "prefetches_skipped_cached",
        "Predicted entities not loaded because a current copy was cached.",
    ),
    (
        "prefetches_used",
        "Prefetched copies read before they were replaced, invalidated or evicted.",
    ),
    (
        "prefetches_wasted",
        "Prefetched copies replaced, invalidated or evicted before any read.",
    ),
    (
        "prefetch_failures",
        "Prefetch loads that failed after their retries.",
    ),
    ("hits", "Consumer reads served from a current cached copy."),
    ("joined", "Consumer reads that joined a load in flight."),
    ("misses", "Consumer reads that loaded from the store."),
    ("store_loads", "Loads from the store (prefetch and reads)."),
    ("cache_errors", "Cache operations that failed."),
    (
        "invalidations",
        "Cached copies invalidated by a newer version in an event.",
    ),
    (
        "invalidation_retries",
        "Invalidations retried after a cache error.",
    ),
    (
        "invalidations_failed",
        "Invalidations that did not hold after their retries: events dead-lettered.",
    ),
    ("predict_micros", "Microseconds spent in the predictor."),
    ("retries", "Retries of failed prefetch loads."),
];

/// The serve loop's counters ([`ServeStats`]) and what each counts.
const SERVE_COUNTERS: &[(&str, &str)] = &[
    ("messages_received", "Deliveries taken from the source."),
    ("events_processed", "Events processed and acked."),
    (
        "dead_letters",
        "Deliveries dead-lettered: malformed, failed, or delivered too often.",
    ),
    (
        "poison",
        "Deliveries dead-lettered because the broker delivered them too often.",
    ),
    (
        "ack_errors",
        "Acks or dead-letterings that failed (the broker redelivers).",
    ),
    ("source_errors", "Errors of the event source."),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        Snapshot {
            counters: vec![("hits", 3), ("joined", 0), ("misses", 1), ("events", 7)],
            queue_depth: 2,
            in_flight: 1,
            retries: 4,
            breaker: BreakerState::Open,
            thresholds: vec![("involves", 0.25)],
        }
    }

    #[test]
    fn renders_counters_gauges_and_help_in_the_text_format() {
        let m = Metrics::new();
        let stats = ServeStats::default();
        stats.processed.store(5, Ordering::Relaxed);
        let text = m.render(&snapshot(), &stats);
        for line in [
            "prescient_events_total 7",
            "prescient_events_processed_total 5",
            "prescient_retries_total 4",
            "prescient_hit_ratio 0.75",
            "prescient_queue_depth 2",
            "prescient_breaker_state{state=\"open\"} 1",
            "prescient_breaker_state{state=\"closed\"} 0",
            "prescient_threshold{relation=\"involves\"} 0.25",
            "# HELP prescient_hits_total Consumer reads served from a current cached copy.",
            "# TYPE prescient_hits_total counter",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }

    #[test]
    fn latencies_are_histograms_with_buckets_per_instance() {
        let (a, b) = (Metrics::new(), Metrics::new());
        a.record_read("hit", Duration::from_micros(700));
        let text = a.render(&snapshot(), &ServeStats::default());
        assert!(
            text.contains("# TYPE prescient_read_seconds histogram"),
            "{text}"
        );
        assert!(
            text.contains("prescient_read_seconds_bucket{outcome=\"hit\",le=\"0.001\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("prescient_read_seconds_bucket{outcome=\"hit\",le=\"0.0005\"} 0"),
            "{text}"
        );
        let other = b.render(&snapshot(), &ServeStats::default());
        assert!(!other.contains("prescient_read_seconds_bucket"), "{other}");
    }
}
