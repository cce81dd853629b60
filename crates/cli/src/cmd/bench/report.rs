//! What `bench live` reports: the latencies the consumer recorded, summed up per side, and the
//! result, printed as JSON (`--json`) or as text.

use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

/// One side of the comparison.
///
/// The consumer reads all the entities of an event together, in one call (one pipelined cache
/// round trip, then the store for the misses): a *read* below is one such call, timed from
/// the call to its answer.
#[derive(Debug, Serialize)]
pub struct Side {
    /// Entities served from the cache / entities read.
    pub hit_ratio: f64,
    /// Store round trips.
    pub store_loads: u64,
    /// Entities read.
    pub entity_reads: u64,
    /// Reads (calls) made: one per event.
    pub reads: u64,
    /// Median read latency.
    pub read_p50_ms: f64,
    /// 99th percentile read latency.
    pub read_p99_ms: f64,
    /// Median latency of reads whose entities were all in the cache.
    pub hit_p50_ms: f64,
    /// 99th percentile latency of reads whose entities were all in the cache.
    pub hit_p99_ms: f64,
    /// Reads whose entities were all in the cache.
    pub hit_reads: u64,
    /// Events per second the consumer read, from the first publish until its last read: whether
    /// it kept up with the stream at its `--consumer-concurrency`.
    pub consumer_events_per_sec: f64,
}

/// What the prefetcher did during the prescient run.
#[derive(Debug, Serialize)]
pub struct PrefetchCounts {
    /// Entities predicted.
    pub predictions: u64,
    /// Prefetch loads issued (entities).
    pub prefetches_issued: u64,
    /// Prefetches not loaded: just before the load, Redis held the entity already.
    pub prefetches_skipped_cached: u64,
    /// Prefetched entries read before they were replaced or expired.
    pub prefetches_used: u64,
    /// Prefetched entries dropped unread.
    pub prefetches_wasted: u64,
    /// Prefetch loads that failed.
    pub prefetch_failures: u64,
    /// Reads that joined a load in flight (a prefetch or another read's miss) instead of
    /// hitting the cache: they count as misses in `hit_ratio`.
    pub joined: u64,
    /// Wall time of the prediction step, in microseconds (see `predict_us_per_event`).
    pub predict_micros: u64,
    /// What the planner did with the predictions.
    pub planner: prescient_prefetch::PlannerStats,
}

/// The result.
#[derive(Debug, Serialize)]
pub struct LiveResult {
    /// Events in the run.
    pub events: usize,
    /// Which event times `serve` used: `event`, `now` or `arrival` (`--times`).
    pub times: &'static str,
    /// Which clock `serve` planned with: `event` or `wall` (`--clock`).
    pub clock: &'static str,
    /// The model `serve` hosted (`--model`).
    pub model: String,
    /// Events per second from the first publish until `serve` processed the last event.
    pub events_per_sec: f64,
    /// Events per second the publisher achieved (flush included).
    pub publish_events_per_sec: f64,
    /// Microseconds `serve` spent in the prediction step per event (the model, then offering
    /// its predictions to the planner; `prefetch.predict_micros` over the events). The model
    /// runs on one thread, so `events_per_sec` cannot exceed a million over this.
    pub predict_us_per_event: f64,
    /// Prescient's side.
    pub prescient: Side,
    /// Cache-aside's side.
    pub cache_aside: Side,
    /// The prefetcher's counters in the prescient run.
    pub prefetch: PrefetchCounts,
}

/// One read: its latency, the entities read and how many came from the cache.
#[derive(Debug, Clone, Copy)]
pub(super) struct Sample {
    pub(super) ms: f64,
    pub(super) keys: u32,
    pub(super) hits: u32,
}

/// The reads of one side, recorded by the consumer as they finish.
#[derive(Debug, Default)]
pub(super) struct Recorder {
    samples: Mutex<Vec<Sample>>,
}

impl Recorder {
    pub(super) fn record(&self, s: Sample) {
        if let Ok(mut v) = self.samples.lock() {
            v.push(s);
        }
    }

    pub(super) fn side(&self, store_loads: u64, took: Duration) -> Side {
        let samples = self.samples.lock().map(|l| l.clone()).unwrap_or_default();
        let mut all: Vec<f64> = samples.iter().map(|s| s.ms).collect();
        let mut hits: Vec<f64> = samples
            .iter()
            .filter(|s| s.hits == s.keys)
            .map(|s| s.ms)
            .collect();
        all.sort_by(f64::total_cmp);
        hits.sort_by(f64::total_cmp);
        let q = |v: &[f64], p: f64| {
            if v.is_empty() {
                0.0
            } else {
                v[((v.len() as f64 - 1.0) * p).round() as usize]
            }
        };
        let keys: u64 = samples.iter().map(|s| u64::from(s.keys)).sum();
        let hit_keys: u64 = samples.iter().map(|s| u64::from(s.hits)).sum();
        Side {
            hit_ratio: if keys == 0 {
                0.0
            } else {
                hit_keys as f64 / keys as f64
            },
            store_loads,
            entity_reads: keys,
            reads: all.len() as u64,
            read_p50_ms: q(&all, 0.5),
            read_p99_ms: q(&all, 0.99),
            hit_p50_ms: q(&hits, 0.5),
            hit_p99_ms: q(&hits, 0.99),
            hit_reads: hits.len() as u64,
            consumer_events_per_sec: samples.len() as f64 / took.as_secs_f64().max(1e-9),
        }
    }
}

impl LiveResult {
    /// Prints the result as text, one line per part.
    pub(super) fn print_text(&self) {
        println!(
            "{} events ({} times, {} clock, {} model): {:.0} events/s through NATS, serve and Redis (publisher {:.0}/s)",
            self.events,
            self.times,
            self.clock,
            self.model,
            self.events_per_sec,
            self.publish_events_per_sec
        );
        let p = &self.prefetch;
        println!(
            "     predict: {:.1} µs per event in serve's prediction step (the model and the planner)",
            self.predict_us_per_event
        );
        println!(
            "    prefetch: {} predictions, {} prefetches issued ({} more found in Redis), {} used, {} wasted, {} failed; {} reads joined a load in flight",
            p.predictions,
            p.prefetches_issued,
            p.prefetches_skipped_cached,
            p.prefetches_used,
            p.prefetches_wasted,
            p.prefetch_failures,
            p.joined
        );
        for (name, s) in [
            ("prescient", &self.prescient),
            ("cache-aside", &self.cache_aside),
        ] {
            println!(
                "{name:>12}: hit ratio {:.3}, store loads {}, reads {} ({} entities, {:.0} events/s), read p50 {:.3} ms, p99 {:.3} ms, all-hit reads {} with p99 {:.3} ms",
                s.hit_ratio,
                s.store_loads,
                s.reads,
                s.entity_reads,
                s.consumer_events_per_sec,
                s.read_p50_ms,
                s.read_p99_ms,
                s.hit_reads,
                s.hit_p99_ms
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hit_latencies_count_only_the_reads_that_all_hit() {
        let rec = Recorder::default();
        for i in 0..100 {
            rec.record(Sample {
                ms: f64::from(i),
                keys: 2,
                hits: if i < 50 { 2 } else { 1 },
            });
        }
        let side = rec.side(7, Duration::from_secs(2));
        assert_eq!(side.reads, 100);
        assert_eq!(side.hit_reads, 50);
        assert_eq!(side.store_loads, 7);
        assert!((side.hit_ratio - 0.75).abs() < 1e-9, "{}", side.hit_ratio);
        assert_eq!(side.hit_p99_ms, 49.0);
        assert_eq!(side.read_p99_ms, 98.0);
        assert_eq!(side.read_p50_ms, 50.0);
        assert!((side.consumer_events_per_sec - 50.0).abs() < 1e-9);
    }
}
