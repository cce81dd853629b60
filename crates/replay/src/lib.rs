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

use std::collections::BTreeMap;
use std::time::Duration;

use prescient_core::Predictor;
use prescient_prefetch::{BreakerConfig, PlannerConfig};
use serde::Serialize;

pub use engine::{BackingStore, CoreObserver, KindStats, PolicyStats, SimKey, SimSettings};
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
    /// After this much event time without an event, the predictor is asked what comes due,
    /// and again every as long until the next event ([`Predictor::tick`]); `None` (the
    /// default): only at events.
    pub tick: Option<Duration>,
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
            tick: None,
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
    /// The same measures per entity kind (the column, object type or `block`), by name.
    pub by_kind: BTreeMap<String, KindReport>,
}

/// What each policy did for the entities of one kind.
#[derive(Debug, Clone, Serialize)]
pub struct KindReport {
    /// Distinct entities of the kind that were read.
    pub distinct_entities: usize,
    /// Consumer reads of them.
    pub reads: u64,
    /// `1 - distinct / reads` for the kind.
    pub oracle_hit_ratio: f64,
    /// `cache_aside_lru`'s hit ratio on the kind (`null` without baselines).
    pub cache_aside_lru_hit_ratio: Option<f64>,
    /// `prescient`'s hit ratio on the kind.
    pub prescient_hit_ratio: f64,
    /// Prefetches of entities of the kind.
    pub prefetches: u64,
    /// Of those, the useful ones.
    pub useful_prefetches: u64,
    /// The share of the kind's own gap that Prescient closed (`null` without baselines or
    /// without a gap).
    pub gap_closed: Option<f64>,
}

fn ratio(n: u64, d: u64) -> f64 {
    if d == 0 { 0.0 } else { n as f64 / d as f64 }
}

/// Per-kind results of a run.
fn by_kind(
    w: &Workload,
    lru: Option<&[KindStats]>,
    ps: &[KindStats],
) -> BTreeMap<String, KindReport> {
    let mut distinct = vec![0usize; w.kind_names.len()];
    let mut seen = vec![false; w.keys.len()];
    for &idx in w.reads.iter().flatten() {
        if let Some(s) = seen.get_mut(idx as usize)
            && !*s
        {
            *s = true;
            if let Some(d) = w
                .kinds
                .get(idx as usize)
                .and_then(|&k| distinct.get_mut(usize::from(k)))
            {
                *d += 1;
            }
        }
    }
    let mut out = BTreeMap::new();
    for (k, name) in w.kind_names.iter().enumerate() {
        let p = ps.get(k).copied().unwrap_or_default();
        if p.reads == 0 {
            continue;
        }
        let oracle = 1.0 - distinct[k] as f64 / p.reads as f64;
        let lru_ratio = lru.and_then(|l| l.get(k)).map(|l| ratio(l.hits, l.reads));
        let hit = ratio(p.hits, p.reads);
        out.insert(
            name.to_string(),
            KindReport {
                distinct_entities: distinct[k],
                reads: p.reads,
                oracle_hit_ratio: oracle,
                cache_aside_lru_hit_ratio: lru_ratio,
                prescient_hit_ratio: hit,
                prefetches: p.prefetches,
                useful_prefetches: p.useful_prefetches,
                gap_closed: lru_ratio
                    .filter(|l| oracle - l > 1e-12)
                    .map(|l| (hit - l) / (oracle - l)),
            },
        );
    }
    out
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

/// Replays `w` under the `prescient` policy alone, calling `observer` with each event's index
/// and the prefetch core once every decision up to the next event's time is made
/// ([`CoreObserver`]): a test compares the core's decisions under this driver and under the
/// tokio one, event by event.
pub fn observe_prescient<'p>(
    w: &Workload,
    opts: &ReplayOptions,
    predictor: &'p dyn Predictor,
    observer: CoreObserver<'p>,
) -> PolicyStats {
    let capacity = opts.capacity.entries(w.distinct_entities());
    Sim::new(
        w,
        settings(opts, capacity),
        LruTtl::new(w.entity_slots(), capacity),
    )
    .with_prescient(predictor, opts.planner.clone(), opts.breaker)
    .with_observer(observer)
    .run(&mut |_| {})
}

fn settings(opts: &ReplayOptions, capacity: usize) -> SimSettings {
    SimSettings {
        capacity,
        ttl: opts.ttl,
        db_latency: opts.db_latency,
        cache_latency: opts.cache_latency,
        consumer_delay: opts.consumer_delay,
        prefetch_failure_rate: opts.prefetch_failure_rate,
        tick: opts.tick,
        seed: opts.seed,
        backing: opts.backing.clone(),
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
    let settings = settings(opts, capacity);
    let oracle = w.oracle_hit_ratio();
    let mut lru_kinds = None;
    let (lru, tinylfu) = if opts.baselines {
        let mut lru = Sim::new(w, settings.clone(), LruTtl::new(n, capacity))
            .run(&mut |d| progress(Policy::Lru, d));
        lru_kinds = Some(std::mem::take(&mut lru.by_kind));
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
    let by_kind = by_kind(w, lru_kinds.as_deref(), &ps.by_kind);
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
        by_kind,
    }
}

#[cfg(test)]
mod tests {
    use prescient_core::{Forecast, PredictError, PredictRequest, Prediction, Relation};

    use super::*;
    use crate::synth::{ShopConfig, generate_shop};

    /// Predicts every entity of an event again, half an hour later; counts the prefetch fills
    /// it is told of.
    #[derive(Debug, Default)]
    struct Again {
        fills: std::sync::atomic::AtomicU64,
    }

    #[async_trait::async_trait]
    impl Predictor for Again {
        fn name(&self) -> &str {
            "again"
        }

        fn filled(&self, _: &prescient_core::EntityKey, _: prescient_core::Timestamp) {
            self.fills
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }

        async fn predict(&self, req: PredictRequest<'_>) -> Result<Forecast, PredictError> {
            let at = req.event.time.plus(Duration::from_secs(1800));
            Ok(Forecast {
                next: Vec::new(),
                novelty_discount: None,
                entities: req
                    .event
                    .entities
                    .iter()
                    .map(|r| Prediction {
                        entity: r.key(),
                        confidence: 0.9,
                        expected_at: at,
                        latest: at.plus(Duration::from_secs(600)),
                        event_type: None,
                        relation: Relation::Same,
                    })
                    .collect(),
            })
        }
    }

    #[test]
    fn per_kind_counts_add_up_to_the_totals() {
        let events = generate_shop(&ShopConfig {
            days: 4,
            orders_per_day: 40,
            ..ShopConfig::default()
        });
        let w = Workload::prepare(events, &[]);
        let again = Again::default();
        let r = run(&w, &ReplayOptions::default(), &again, &mut |_, _| {});
        let kinds = &r.by_kind;
        assert!(kinds.len() >= 5, "{:?}", kinds.keys());
        let sum = |f: &dyn Fn(&KindReport) -> u64| kinds.values().map(f).sum::<u64>();
        assert_eq!(sum(&|k| k.reads), r.reads);
        assert_eq!(
            kinds.values().map(|k| k.distinct_entities).sum::<usize>(),
            r.distinct_entities
        );
        assert_eq!(sum(&|k| k.prefetches), r.prescient.prefetches);
        assert!(r.prescient.prefetches > 0);
        // Every prefetch that filled the cache was told to the predictor (none fails here).
        let told = again.fills.load(std::sync::atomic::Ordering::Relaxed);
        assert!(told > 0 && told <= r.prescient.prefetches, "{told}");
        assert_eq!(sum(&|k| k.useful_prefetches), r.prescient.useful_prefetches);
        let hits: f64 = kinds
            .values()
            .map(|k| k.prescient_hit_ratio * k.reads as f64)
            .sum();
        assert!((hits - r.prescient.base.hits as f64).abs() < 0.5);
        for (name, k) in kinds {
            let lru = k.cache_aside_lru_hit_ratio.unwrap_or(-1.0);
            assert!((0.0..=1.0).contains(&lru), "{name}: {lru}");
            assert!(k.oracle_hit_ratio >= lru, "{name}");
        }
    }

    /// Predicts nothing at events; at each tick, one entity five minutes later.
    #[derive(Debug)]
    struct OnTicks {
        entity: prescient_core::EntityKey,
        ticks: std::sync::atomic::AtomicU64,
    }

    #[async_trait::async_trait]
    impl Predictor for OnTicks {
        fn name(&self) -> &str {
            "on-ticks"
        }

        async fn predict(&self, _: PredictRequest<'_>) -> Result<Forecast, PredictError> {
            Ok(Forecast::default())
        }

        async fn tick(&self, now: prescient_core::Timestamp) -> Result<Forecast, PredictError> {
            self.ticks
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let at = now.plus(Duration::from_secs(300));
            Ok(Forecast {
                next: Vec::new(),
                novelty_discount: None,
                entities: vec![Prediction {
                    entity: self.entity.clone(),
                    confidence: 0.9,
                    expected_at: at,
                    latest: at.plus(Duration::from_secs(600)),
                    event_type: None,
                    relation: Relation::Refresh,
                }],
            })
        }
    }

    #[test]
    fn ticks_come_only_in_quiet_spells_and_only_when_asked() {
        let events = generate_shop(&ShopConfig {
            days: 3,
            orders_per_day: 30,
            ..ShopConfig::default()
        });
        let w = Workload::prepare(events, &[]);
        let p = OnTicks {
            entity: w.keys[0].clone(),
            ticks: Default::default(),
        };
        let load = std::sync::atomic::Ordering::Relaxed;
        let off = run(&w, &ReplayOptions::default(), &p, &mut |_, _| {});
        assert_eq!(p.ticks.load(load), 0);
        assert_eq!(off.prescient.prefetches, 0);
        let every = Duration::from_secs(600);
        let opts = ReplayOptions {
            tick: Some(every),
            ..ReplayOptions::default()
        };
        let on = run(&w, &opts, &p, &mut |_, _| {});
        let ticks = p.ticks.load(load);
        assert!(on.prescient.prefetches > 0);
        // One tick per full `every` of each gap between events (the last ones of a long gap).
        let expected: u64 = w
            .events
            .windows(2)
            .map(|e| {
                let gap = e[1].time.as_micros() - e[0].time.as_micros();
                let every = every.as_micros() as i64;
                let n = (gap - 1).max(0) / every;
                n.min(i64::from(prescient_prefetch::machine::MAX_QUIET_TICKS) - 1) as u64
            })
            .sum();
        assert_eq!(ticks, expected);
    }
}
