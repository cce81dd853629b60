//! `prescient replay`: the real prefetch pipeline in virtual time, measured against
//! cache-aside baselines and an oracle, as `shared/specs/replay.md` defines.
//!
//! A [`Workload`] is a log sorted and interned once. [`run`] replays it under three policies
//! with the same capacity, data-age limit and latencies: `cache_aside_lru`,
//! `cache_aside_tinylfu` (moka's default policy), and `prescient` (the same reads plus the
//! [`prescient_prefetch::Planner`] fed by a [`prescient_core::Predictor`]). Time is virtual:
//! a store load takes `db_latency`, a hit `cache_latency`, and nothing waits on the wall clock.

mod engine;
pub mod simcache;
pub mod synth;
pub mod workload;

use std::time::Duration;

use prescient_core::Predictor;
use prescient_prefetch::{BreakerConfig, PlannerConfig};
use serde::Serialize;

pub use engine::{BackingStore, PolicyStats, SimKey, SimSettings};
pub use workload::Workload;

use engine::Sim;
use simcache::{LruTtl, MokaTtl};

/// Cache capacity: a number of entries, or a share of the log's distinct entities.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Capacity {
    /// This many entries.
    Entries(usize),
    /// `max(1, round(p / 100 × distinct entities))` entries.
    Percent(f64),
}

impl Capacity {
    /// The number of entries for a log with `distinct` entities.
    pub fn entries(self, distinct: usize) -> usize {
        match self {
            Capacity::Entries(n) => n.max(1),
            Capacity::Percent(p) => ((p / 100.0 * distinct as f64).round() as usize).max(1),
        }
    }
}

impl std::str::FromStr for Capacity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Some(p) = s.strip_suffix('%') {
            let p: f64 = p
                .trim()
                .parse()
                .map_err(|_| format!("invalid capacity {s:?}: expected e.g. 5% or 1000"))?;
            if !(p > 0.0 && p <= 100.0) {
                return Err(format!(
                    "invalid capacity {s:?}: a percentage must be in (0, 100]"
                ));
            }
            Ok(Capacity::Percent(p))
        } else {
            let n: usize = s
                .parse()
                .map_err(|_| format!("invalid capacity {s:?}: expected e.g. 5% or 1000"))?;
            if n == 0 {
                return Err("invalid capacity 0: at least one entry".into());
            }
            Ok(Capacity::Entries(n))
        }
    }
}

/// Everything a replay needs besides the workload and the predictor.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// The log's name, as reported.
    pub log: String,
    /// Cache capacity.
    pub capacity: Capacity,
    /// Data-age limit; `None` for none.
    pub ttl: Option<Duration>,
    /// Store latency.
    pub db_latency: Duration,
    /// Cache hit latency.
    pub cache_latency: Duration,
    /// Consumer delay after each event.
    pub consumer_delay: Duration,
    /// Kinds whose entities the events write (`--mutates`).
    pub mutates: Vec<String>,
    /// Share of prefetch loads that fail transiently (failure injection).
    pub prefetch_failure_rate: f64,
    /// The planner's settings.
    pub planner: PlannerConfig,
    /// The breaker's settings.
    pub breaker: BreakerConfig,
    /// Whether the predictor starts from a trained model (reported).
    pub model_source: String,
    /// Run the baselines too (the spec's output needs them).
    pub baselines: bool,
    /// Seed for injected failures and jitter.
    pub seed: u64,
    /// A real store read and written alongside the simulation (the demo's SQLite), if any.
    pub backing: Option<std::sync::Arc<dyn BackingStore>>,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            log: String::new(),
            capacity: Capacity::Percent(5.0),
            ttl: Some(Duration::from_secs(3600)),
            db_latency: Duration::from_millis(2),
            cache_latency: Duration::from_micros(100),
            consumer_delay: Duration::ZERO,
            mutates: Vec::new(),
            prefetch_failure_rate: 0.0,
            planner: PlannerConfig::default(),
            breaker: BreakerConfig::default(),
            model_source: "cold start".into(),
            baselines: true,
            seed: 42,
            backing: None,
        }
    }
}

/// One policy's results, as the spec names them.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyReport {
    /// Hits divided by reads.
    pub hit_ratio: f64,
    /// Hits and joined reads divided by reads: the hit ratio if loads took no time.
    pub hit_or_joined_ratio: f64,
    /// Reads served from the cache.
    pub hits: u64,
    /// Reads that waited on a load already in flight.
    pub joined: u64,
    /// Reads that went to the store.
    pub misses: u64,
    /// Consumer reads.
    pub reads: u64,
    /// Every load against the store.
    pub db_reads: u64,
    /// Mean read latency.
    pub mean_read_latency_ms: f64,
    /// 99th percentile read latency.
    pub p99_read_latency_ms: f64,
    /// Reads that returned a version older than the store's.
    pub stale_reads: u64,
}

impl PolicyReport {
    fn from_stats(s: &mut PolicyStats) -> Self {
        let reads = s.reads;
        let mean = if s.latencies_us.is_empty() {
            0.0
        } else {
            s.latencies_us.iter().map(|&v| f64::from(v)).sum::<f64>()
                / s.latencies_us.len() as f64
                / 1e3
        };
        let p99 = percentile_ms(&mut s.latencies_us, 0.99);
        PolicyReport {
            hit_ratio: if reads == 0 {
                0.0
            } else {
                s.hits as f64 / reads as f64
            },
            hit_or_joined_ratio: if reads == 0 {
                0.0
            } else {
                (s.hits + s.joined) as f64 / reads as f64
            },
            hits: s.hits,
            joined: s.joined,
            misses: s.misses,
            reads,
            db_reads: s.db_reads,
            mean_read_latency_ms: mean,
            p99_read_latency_ms: p99,
            stale_reads: s.stale_reads,
        }
    }
}

fn percentile_ms(v: &mut [u32], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    let (_, x, _) = v.select_nth_unstable(rank);
    f64::from(*x) / 1e3
}

/// The `prescient` policy's results.
#[derive(Debug, Clone, Serialize)]
pub struct PrescientReport {
    /// The fields every policy has.
    #[serde(flatten)]
    pub base: PolicyReport,
    /// Loads issued by the prefetcher.
    pub prefetches: u64,
    /// Prefetches whose entry served a read that would otherwise have missed.
    pub useful_prefetches: u64,
    /// `useful_prefetches / prefetches`.
    pub prefetch_precision: f64,
    /// `(prescient - lru) / (oracle - lru)` hit ratio.
    pub gap_closed: f64,
    /// Events per wall-clock second of the Prescient run.
    pub events_per_sec: f64,
    /// Predictor calls that failed or timed out.
    pub predictor_errors: u64,
    /// Times the circuit breaker opened.
    pub breaker_opened: u64,
    /// Prefetch loads that failed (injected failures).
    pub prefetch_failures: u64,
    /// Reads and writes against the backing store (0 without one).
    pub backing_ops: u64,
    /// Backing-store operations that failed or disagreed with the simulated store.
    pub backing_mismatches: u64,
    /// What the planner did.
    pub planner: serde_json::Value,
}

/// The replay's JSON report.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayReport {
    /// The log.
    pub log: String,
    /// Events replayed.
    pub events: usize,
    /// Consumer reads.
    pub reads: u64,
    /// Distinct entities.
    pub distinct_entities: usize,
    /// Cache capacity in entries.
    pub capacity: usize,
    /// Data-age limit in seconds (`null` for none).
    pub ttl_s: Option<f64>,
    /// The hit ratio of a perfect just-in-time prefetcher.
    pub oracle_hit_ratio: f64,
    /// Store latency.
    pub db_latency_ms: f64,
    /// Cache hit latency.
    pub cache_latency_ms: f64,
    /// Consumer delay.
    pub consumer_delay_ms: f64,
    /// Kinds written by events.
    pub mutates: Vec<String>,
    /// The predictor.
    pub model: String,
    /// `cold start`, or the model file it started from.
    pub model_source: String,
    /// Cache-aside with LRU eviction.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_aside_lru: Option<PolicyReport>,
    /// Cache-aside with moka's TinyLFU.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_aside_tinylfu: Option<PolicyReport>,
    /// Prescient.
    pub prescient: PrescientReport,
}

/// Which policy a progress report is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// `cache_aside_lru`.
    Lru,
    /// `cache_aside_tinylfu`.
    TinyLfu,
    /// `prescient`.
    Prescient,
}

impl Policy {
    /// The report's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Policy::Lru => "cache_aside_lru",
            Policy::TinyLfu => "cache_aside_tinylfu",
            Policy::Prescient => "prescient",
        }
    }
}

/// Replays `w` under every policy. `progress(policy, events_done)` reports progress.
pub fn run(
    w: &Workload,
    opts: &ReplayOptions,
    predictor: &dyn Predictor,
    progress: &mut dyn FnMut(Policy, usize),
) -> ReplayReport {
    let n = w.entity_slots();
    let capacity = opts.capacity.entries(w.distinct_entities());
    let settings = SimSettings {
        capacity,
        ttl: opts.ttl,
        db_latency: opts.db_latency,
        cache_latency: opts.cache_latency,
        consumer_delay: opts.consumer_delay,
        prefetch_failure_rate: opts.prefetch_failure_rate,
        seed: opts.seed,
        backing: opts.backing.clone(),
    };
    let oracle = w.oracle_hit_ratio();
    let (lru, tinylfu) = if opts.baselines {
        let mut lru = Sim::new(w, settings.clone(), LruTtl::new(n, capacity))
            .run(&mut |d| progress(Policy::Lru, d));
        let mut tlfu = Sim::new(w, settings.clone(), MokaTtl::new(n, capacity))
            .run(&mut |d| progress(Policy::TinyLfu, d));
        (
            Some(PolicyReport::from_stats(&mut lru)),
            Some(PolicyReport::from_stats(&mut tlfu)),
        )
    } else {
        (None, None)
    };
    let mut ps = Sim::new(w, settings, LruTtl::new(n, capacity))
        .with_prescient(predictor, opts.planner.clone(), opts.breaker)
        .run(&mut |d| progress(Policy::Prescient, d));
    let base = PolicyReport::from_stats(&mut ps);
    let gap_closed = match &lru {
        Some(l) if oracle - l.hit_ratio > 1e-12 => {
            (base.hit_ratio - l.hit_ratio) / (oracle - l.hit_ratio)
        }
        _ => 0.0,
    };
    let planner = ps
        .planner
        .as_ref()
        .and_then(|s| serde_json::to_value(s).ok())
        .unwrap_or(serde_json::Value::Null);
    let prescient = PrescientReport {
        prefetches: ps.prefetches,
        useful_prefetches: ps.useful_prefetches,
        prefetch_precision: if ps.prefetches == 0 {
            0.0
        } else {
            ps.useful_prefetches as f64 / ps.prefetches as f64
        },
        gap_closed,
        events_per_sec: if ps.wall_seconds > 0.0 {
            w.events.len() as f64 / ps.wall_seconds
        } else {
            0.0
        },
        predictor_errors: ps.predictor_errors,
        breaker_opened: ps.breaker_opened,
        prefetch_failures: ps.prefetch_failures,
        backing_ops: ps.backing_ops,
        backing_mismatches: ps.backing_mismatches,
        planner,
        base,
    };
    ReplayReport {
        log: opts.log.clone(),
        events: w.events.len(),
        reads: w.total_reads(),
        distinct_entities: w.distinct_entities(),
        capacity,
        ttl_s: opts.ttl.map(|d| d.as_secs_f64()),
        oracle_hit_ratio: oracle,
        db_latency_ms: opts.db_latency.as_secs_f64() * 1e3,
        cache_latency_ms: opts.cache_latency.as_secs_f64() * 1e3,
        consumer_delay_ms: opts.consumer_delay.as_secs_f64() * 1e3,
        mutates: opts.mutates.clone(),
        model: predictor.name().to_owned(),
        model_source: opts.model_source.clone(),
        cache_aside_lru: lru,
        cache_aside_tinylfu: tinylfu,
        prescient,
    }
}
