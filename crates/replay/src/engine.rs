//! The simulator: one policy over a [`Workload`], in virtual time.
//!
//! Each policy runs the same consumer reads. `prescient` also runs the real prefetch manager:
//! the [`Predictor`] is asked after every event (through the circuit breaker), its predictions
//! go to the [`Planner`], and the planner's batches are loaded with the store latency and
//! written to the cache with the planner's TTL. Mutations invalidate cached entries.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use futures::FutureExt;
use prescient_core::{
    EntityKey, Observe, PredictError, PredictRequest, Predictor, Timestamp, Version,
};
use prescient_prefetch::{
    BatchItem, BreakerConfig, CoreConfig, CoreStats, Demand, Failure, Fill, Offer, PlanKey,
    PlannerConfig, PlannerStats, PrefetchCore,
};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rustc_hash::FxHashMap;

use crate::simcache::{NEVER, SimCache};
use crate::workload::Workload;

/// An entity in the simulator: its dense index and its kind (loads are batched by kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SimKey {
    /// Dense entity index.
    pub idx: u32,
    /// Dense kind index.
    pub kind: u16,
}

impl PlanKey for SimKey {
    type Kind = u16;
    fn kind(&self) -> u16 {
        self.kind
    }
}

/// A real store behind the simulated one: every simulated load also reads the row from it
/// (the version read is the one cached), and every mutation writes it. Time stays virtual.
pub trait BackingStore: Send + Sync + std::fmt::Debug {
    /// Reads the entity's row; returns its version, `None` if the row is missing.
    ///
    /// # Errors
    /// A description of the failure.
    fn load(&self, key: &EntityKey) -> Result<Option<u64>, String>;
    /// Writes a new version of the entity's row.
    ///
    /// # Errors
    /// A description of the failure.
    fn write(&self, key: &EntityKey, version: u64) -> Result<(), String>;
}

/// Settings shared by every policy of a run.
#[derive(Debug, Clone)]
pub struct SimSettings {
    /// A real store to read and write alongside the simulation, if any.
    pub backing: Option<std::sync::Arc<dyn BackingStore>>,
    /// Cache capacity in entries.
    pub capacity: usize,
    /// The data-age limit; `None` for no limit.
    pub ttl: Option<Duration>,
    /// Time of one store load.
    pub db_latency: Duration,
    /// Time of one cache hit.
    pub cache_latency: Duration,
    /// Delay between an event and the consumer's reads.
    pub consumer_delay: Duration,
    /// Share of prefetch loads that fail (transiently), to exercise retries.
    pub prefetch_failure_rate: f64,
    /// After this much event time without an event, the predictor is asked for what comes due
    /// ([`Predictor::tick`]), and again every as long; `None`: only at events.
    pub tick: Option<Duration>,
    /// Seed for injected failures.
    pub seed: u64,
}

/// What one policy measured.
#[derive(Debug, Clone, Default)]
pub struct PolicyStats {
    /// Consumer reads.
    pub reads: u64,
    /// Reads served from the cache.
    pub hits: u64,
    /// Reads that waited for a load in flight.
    pub joined: u64,
    /// Reads that loaded from the store.
    pub misses: u64,
    /// Loads against the store, from misses and prefetches.
    pub db_reads: u64,
    /// Reads that returned a version older than the store's.
    pub stale_reads: u64,
    /// Read latencies, microseconds.
    pub latencies_us: Vec<u32>,
    /// Loads issued by the prefetcher.
    pub prefetches: u64,
    /// Prefetches that served a read that would otherwise have missed.
    pub useful_prefetches: u64,
    /// Prefetch loads that failed (injected).
    pub prefetch_failures: u64,
    /// Predictor calls that failed or timed out.
    pub predictor_errors: u64,
    /// Times the breaker opened.
    pub breaker_opened: u64,
    /// Events on which prediction was skipped because the breaker was open.
    pub breaker_refused: u64,
    /// Planner counters.
    pub planner: Option<PlannerStats>,
    /// The prefetch core's counters.
    pub core: Option<CoreStats>,
    /// Wall-clock seconds of the run.
    pub wall_seconds: f64,
    /// Loads and writes against the backing store.
    pub backing_ops: u64,
    /// Backing-store loads that failed or returned another version than the simulated store.
    pub backing_mismatches: u64,
    /// The counters above that are per entity, per kind index.
    pub by_kind: Vec<KindStats>,
}

/// A policy's counters for the entities of one kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KindStats {
    /// Consumer reads.
    pub reads: u64,
    /// Reads served from the cache.
    pub hits: u64,
    /// Loads issued by the prefetcher.
    pub prefetches: u64,
    /// Prefetches that served a read that would otherwise have missed.
    pub useful_prefetches: u64,
}

#[derive(Debug, Clone, Copy)]
struct Flight {
    seq: u64,
    done: i64,
    version: u64,
}

#[derive(Debug, Clone)]
enum LoadKind {
    Demand(prescient_prefetch::LoadId),
    Prefetch(BatchItem<SimKey>, bool),
}

/// Called with each event's index and the core once every decision up to the next event's
/// time is made (without a consumer delay; not for the last event): tests that compare drivers
/// decision by decision.
pub type CoreObserver<'p> = Box<dyn FnMut(usize, &PrefetchCore<SimKey>) + 'p>;

/// The Prescient policy's driver state: the real prefetch core and the predictor.
struct Prescient<'p> {
    predictor: &'p dyn Predictor,
    core: PrefetchCore<SimKey>,
    observer: Option<CoreObserver<'p>>,
    rng: SmallRng,
    /// Capacity evictions of the cache, to report to the core.
    evicted: Vec<u32>,
}

/// Runs one policy. `prescient` is `Some` for the Prescient policy.
pub(crate) struct Sim<'w, 'p, C> {
    w: &'w Workload,
    s: SimSettings,
    cache: C,
    ttl_us: i64,
    store_version: Vec<u64>,
    loads: BinaryHeap<Reverse<(i64, u64)>>,
    load_info: FxHashMap<u64, (u32, u64, LoadKind)>,
    inflight: FxHashMap<u32, Flight>,
    seq: u64,
    now: i64,
    stats: PolicyStats,
    prescient: Option<Prescient<'p>>,
}

fn us(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

impl<'w, 'p, C: SimCache> Sim<'w, 'p, C> {
    pub(crate) fn new(w: &'w Workload, s: SimSettings, cache: C) -> Self {
        let ttl_us = s.ttl.map_or(NEVER, us);
        Sim {
            w,
            cache,
            ttl_us,
            store_version: vec![1; w.entity_slots()],
            loads: BinaryHeap::new(),
            load_info: FxHashMap::default(),
            inflight: FxHashMap::default(),
            seq: 0,
            now: i64::MIN,
            stats: PolicyStats {
                by_kind: vec![KindStats::default(); w.kind_names.len()],
                ..PolicyStats::default()
            },
            prescient: None,
            s,
        }
    }

    pub(crate) fn with_prescient(
        mut self,
        predictor: &'p dyn Predictor,
        planner: PlannerConfig,
        breaker: BreakerConfig,
    ) -> Self {
        self.prescient = Some(Prescient {
            predictor,
            core: PrefetchCore::new(core_config(&self.s, planner, breaker, self.w)),
            observer: None,
            rng: SmallRng::seed_from_u64(self.s.seed),
            evicted: Vec::new(),
        });
        self
    }

    /// Has `observer` called after each event's prediction step.
    pub(crate) fn with_observer(mut self, observer: CoreObserver<'p>) -> Self {
        if let Some(p) = &mut self.prescient {
            p.observer = Some(observer);
        }
        self
    }

    fn observe(&mut self, i: usize) {
        if let Some(p) = &mut self.prescient
            && let Some(f) = &mut p.observer
        {
            f(i, &p.core);
        }
    }

    fn key(&self, idx: u32) -> SimKey {
        SimKey {
            idx,
            kind: self.w.kinds[idx as usize],
        }
    }

    /// Runs the whole workload; `progress(events_done)` is called now and then.
    pub(crate) fn run(mut self, progress: &mut dyn FnMut(usize)) -> PolicyStats {
        let started = Instant::now();
        let n = self.w.events.len();
        let delay = us(self.s.consumer_delay);
        let mut pi = 0;
        let mut ri = 0;
        while ri < n {
            if delay == 0 {
                let t = self.w.events[ri].time.as_micros();
                self.tick_until(t);
                self.advance_to(t);
                if ri > 0 {
                    // Every decision up to this event's time is made.
                    self.observe(ri - 1);
                }
                self.mutate(ri);
                self.read(ri, t);
                self.predict(ri, t);
                ri += 1;
                pi = ri;
            } else {
                let tp = if pi < n {
                    self.w.events[pi].time.as_micros()
                } else {
                    i64::MAX
                };
                let tr = self.w.events[ri].time.as_micros().saturating_add(delay);
                self.tick_until(tp.min(tr));
                if pi < n && tp <= tr {
                    self.advance_to(tp);
                    self.mutate(pi);
                    self.predict(pi, tp);
                    pi += 1;
                } else {
                    self.advance_to(tr);
                    self.read(ri, tr);
                    ri += 1;
                }
            }
            if ri % 4096 == 0 {
                progress(ri);
            }
        }
        self.advance_to(i64::MAX);
        progress(n);
        self.stats.wall_seconds = started.elapsed().as_secs_f64();
        if let Some(p) = &self.prescient {
            let core = p.core.stats();
            self.stats.planner = Some(p.core.planner().stats().clone());
            self.stats.core = Some(core);
            self.stats.breaker_opened = p.core.breaker().opened;
            self.stats.breaker_refused = p.core.breaker().refused;
            self.stats.useful_prefetches = core.prefetches_used;
            self.stats.predictor_errors = core.predictor_errors;
            self.stats.prefetch_failures = core.prefetch_failures;
        }
        self.stats
    }

    /// Completes loads and issues due prefetches, in time order, up to and including `t`.
    fn advance_to(&mut self, t: i64) {
        loop {
            let next_load = self.loads.peek().map_or(i64::MAX, |r| r.0.0);
            let next_due = self
                .prescient
                .as_ref()
                .and_then(|p| p.core.next_due())
                .map_or(i64::MAX, |d| d.as_micros());
            let next = next_load.min(next_due);
            if next > t || next == i64::MAX {
                break;
            }
            self.now = self.now.max(next);
            if next_load <= next_due {
                if let Some(Reverse((done, seq))) = self.loads.pop() {
                    self.complete(done, seq);
                }
            } else {
                self.poll(self.now);
            }
        }
        self.now = self.now.max(t);
    }

    /// Reads `idx` from the backing store, if any, checking it holds the simulated version.
    fn backing_load(&mut self, idx: u32, version: u64) {
        if let Some(b) = &self.s.backing {
            self.stats.backing_ops += 1;
            match b.load(&self.w.keys[idx as usize]) {
                Ok(Some(v)) if v == version => {}
                Ok(other) => {
                    self.stats.backing_mismatches += 1;
                    tracing::warn!(message = "Backing store disagrees.", entity = %self.w.keys[idx as usize], read = ?other, expected = version);
                }
                Err(error) => {
                    self.stats.backing_mismatches += 1;
                    tracing::warn!(message = "Backing store load failed.", %error);
                }
            }
        }
    }

    fn mutate(&mut self, i: usize) {
        for &(idx, v) in &self.w.writes[i] {
            let sv = &mut self.store_version[idx as usize];
            *sv = (*sv).max(v.0);
            let v = *sv;
            if let Some(b) = &self.s.backing {
                self.stats.backing_ops += 1;
                if let Err(error) = b.write(&self.w.keys[idx as usize], v) {
                    self.stats.backing_mismatches += 1;
                    tracing::warn!(message = "Backing store write failed.", %error);
                }
            }
        }
        if let Some(p) = &mut self.prescient {
            // Invalidation: the event says which entities it wrote, and to which version.
            for m in &self.w.events[i].mutations {
                if let Some(idx) = self.w.index_of(&m.key()) {
                    let key = SimKey {
                        idx,
                        kind: self.w.kinds[idx as usize],
                    };
                    p.core.invalidate(&key, m.version);
                    self.cache.invalidate(idx, m.version.0);
                }
            }
        }
    }

    fn read(&mut self, i: usize, t: i64) {
        let now = Timestamp::from_micros(t);
        for &idx in &self.w.reads[i] {
            self.stats.reads += 1;
            let kind = usize::from(self.w.kinds[idx as usize]);
            if let Some(k) = self.stats.by_kind.get_mut(kind) {
                k.reads += 1;
            }
            let current = self.store_version[idx as usize];
            let key = self.key(idx);
            if let Some(p) = &mut self.prescient {
                p.core.on_read();
            }
            // 1. The cache, if its version is current.
            if let Some(slot) = self.cache.get(idx, now).filter(|s| s.version >= current) {
                self.stats.hits += 1;
                if let Some(k) = self.stats.by_kind.get_mut(kind) {
                    k.hits += 1;
                }
                self.stats
                    .latencies_us
                    .push(us(self.s.cache_latency) as u32);
                if slot.version < current {
                    self.stats.stale_reads += 1;
                }
                if let Some(p) = &mut self.prescient
                    && p.core.on_hit(now, &key)
                    && let Some(k) = self.stats.by_kind.get_mut(kind)
                {
                    k.useful_prefetches += 1;
                }
                continue;
            }
            // 2. A load in flight of a current version: join it.
            if let Some(f) = self.inflight.get(&idx).filter(|f| f.version >= current) {
                self.stats.joined += 1;
                self.stats
                    .latencies_us
                    .push((f.done - t).clamp(0, u32::MAX as i64) as u32);
                if let Some(p) = &mut self.prescient
                    && p.core.on_joined(&key)
                    && let Some(k) = self.stats.by_kind.get_mut(kind)
                {
                    k.useful_prefetches += 1;
                }
                continue;
            }
            // 3. The store.
            self.stats.misses += 1;
            self.stats.latencies_us.push(us(self.s.db_latency) as u32);
            self.start_demand(idx, current, t);
        }
        self.poll(t);
    }

    fn start_demand(&mut self, idx: u32, version: u64, t: i64) {
        self.stats.db_reads += 1;
        self.backing_load(idx, version);
        self.seq += 1;
        let done = t.saturating_add(us(self.s.db_latency));
        let key = self.key(idx);
        let load = match &mut self.prescient {
            // A load in flight of an older version does not serve this read; the core keeps
            // its own record of that load and ends it when it lands.
            Some(p) => match p.core.begin_demand(Timestamp::from_micros(t), &key) {
                Demand::Load(f) | Demand::Join(f) => f.id,
            },
            None => prescient_prefetch::LoadId(0),
        };
        self.inflight.insert(
            idx,
            Flight {
                seq: self.seq,
                done,
                version,
            },
        );
        self.load_info
            .insert(self.seq, (idx, version, LoadKind::Demand(load)));
        self.loads.push(Reverse((done, self.seq)));
    }

    fn predict(&mut self, i: usize, t: i64) {
        let Some(p) = &mut self.prescient else { return };
        let now = Timestamp::from_micros(t);
        p.core.on_event_time(now);
        if !p.core.allow_predict(now) {
            return;
        }
        self.tell_fills();
        let Some(p) = &mut self.prescient else { return };
        let event = &self.w.events[i];
        let req = PredictRequest {
            event,
            observe: Observe::Learn,
            deadline: Some(now),
        };
        let result = p
            .predictor
            .predict(req)
            .now_or_never()
            .unwrap_or(Err(PredictError::Timeout));
        self.take_result(now, result, &event.id);
        self.poll(t);
    }

    /// Tells the predictor which prefetches filled the cache since it was last told.
    fn tell_fills(&mut self) {
        let Some(p) = &mut self.prescient else { return };
        for (key, at) in p.core.take_fills() {
            if let Some(k) = self.w.keys.get(key.idx as usize) {
                p.predictor.filled(k, at);
            }
        }
    }

    /// Offers a prediction's entities to the core (or counts the failure; `what`: the event,
    /// or a tick). Predicted entities the log never reads are left out.
    fn take_result(
        &mut self,
        now: Timestamp,
        result: Result<prescient_core::Forecast, PredictError>,
        what: &str,
    ) {
        let Some(p) = &mut self.prescient else { return };
        let w = self.w;
        match result {
            Ok(forecast) => {
                let offers = forecast.entities.into_iter().filter_map(|pred| {
                    let idx = w.index_of(&pred.entity)?;
                    Some(Offer {
                        key: SimKey {
                            idx,
                            kind: w.kinds[idx as usize],
                        },
                        confidence: pred.confidence,
                        expected_at: pred.expected_at,
                        latest: pred.latest,
                        relation: pred.relation,
                    })
                });
                p.core.on_predicted(now, Ok::<_, &PredictError>(offers));
            }
            Err(error) => {
                tracing::debug!(message = "Prediction failed.", %error, event = what);
                p.core
                    .on_predicted(now, Err::<[Offer<SimKey>; 0], _>(&error));
            }
        }
    }

    /// Ticks the predictor in the quiet spell before `t` (the next event), as the core
    /// schedules, and offers what comes due.
    fn tick_until(&mut self, t: i64) {
        loop {
            let Some(p) = &mut self.prescient else { return };
            let Some(at) = p.core.next_tick(Timestamp::from_micros(t), true) else {
                return;
            };
            let last = at.as_micros();
            self.advance_to(last);
            let Some(p) = &mut self.prescient else { return };
            if !p.core.allow_predict(at) {
                continue;
            }
            self.tell_fills();
            let Some(p) = &mut self.prescient else { return };
            let result = p
                .predictor
                .tick(at)
                .now_or_never()
                .unwrap_or(Err(PredictError::Timeout));
            self.take_result(at, result, "(tick)");
            self.poll(last);
        }
    }

    /// Issues the core's due batches at `t`.
    fn poll(&mut self, t: i64) {
        let Some(p) = &mut self.prescient else { return };
        let now = Timestamp::from_micros(t);
        let batches = p.core.poll(now);
        if batches.is_empty() {
            return;
        }
        let done = t.saturating_add(us(self.s.db_latency));
        if self.s.backing.is_some() {
            let loads: Vec<(u32, u64)> = batches
                .iter()
                .flat_map(|b| {
                    b.items
                        .iter()
                        .map(|i| (i.key.idx, self.store_version[i.key.idx as usize]))
                })
                .collect();
            for (idx, v) in loads {
                self.backing_load(idx, v);
            }
        }
        let Some(p) = &mut self.prescient else { return };
        for batch in batches {
            // One store round trip per batch; every entity counts as a load against the store.
            for item in batch.items {
                let idx = item.key.idx;
                let version = self.store_version[idx as usize];
                let fails = self.s.prefetch_failure_rate > 0.0
                    && p.rng.random_bool(self.s.prefetch_failure_rate.min(1.0));
                self.stats.prefetches += 1;
                if let Some(k) = self.stats.by_kind.get_mut(usize::from(item.key.kind)) {
                    k.prefetches += 1;
                }
                self.stats.db_reads += 1;
                self.seq += 1;
                self.inflight.insert(
                    idx,
                    Flight {
                        seq: self.seq,
                        done,
                        version,
                    },
                );
                self.load_info
                    .insert(self.seq, (idx, version, LoadKind::Prefetch(item, fails)));
                self.loads.push(Reverse((done, self.seq)));
            }
        }
    }

    /// Inserts into the cache and reports capacity evictions to the core.
    fn insert(&mut self, idx: u32, version: u64, now: Timestamp, expires: i64) -> bool {
        let stored = self.cache.insert(idx, version, now, expires);
        if let Some(p) = &mut self.prescient {
            self.cache.take_evicted(&mut p.evicted);
            for e in std::mem::take(&mut p.evicted) {
                let key = SimKey {
                    idx: e,
                    kind: self.w.kinds[e as usize],
                };
                p.core.on_evicted(&key);
            }
        }
        stored
    }

    fn complete(&mut self, done: i64, seq: u64) {
        let Some((idx, version, kind)) = self.load_info.remove(&seq) else {
            return;
        };
        if self.inflight.get(&idx).is_some_and(|f| f.seq == seq) {
            self.inflight.remove(&idx);
        }
        let now = Timestamp::from_micros(done);
        let key = self.key(idx);
        match kind {
            LoadKind::Demand(load) => {
                if let Some(p) = &mut self.prescient {
                    p.core.end_demand(&key, load);
                }
                let expires = done.saturating_add(self.ttl_us);
                if self.insert(idx, version, now, expires)
                    && let Some(p) = &mut self.prescient
                {
                    p.core.on_demand_filled(
                        now,
                        key,
                        Version(version),
                        Timestamp::from_micros(expires),
                    );
                }
            }
            LoadKind::Prefetch(item, fails) => {
                let Some(p) = &mut self.prescient else { return };
                let result = if fails {
                    Err(Failure::Transient)
                } else {
                    Ok(true)
                };
                let fill: Option<Fill> = p.core.on_prefetch_loaded(now, &item, result);
                if let Some(fill) = fill {
                    let expires = done
                        .saturating_add(us(fill.ttl))
                        .min(done.saturating_add(self.ttl_us));
                    if self.insert(idx, version, now, expires)
                        && let Some(p) = &mut self.prescient
                    {
                        p.core.on_prefetch_filled(
                            now,
                            &item,
                            fill,
                            Version(version),
                            Timestamp::from_micros(expires),
                        );
                    }
                }
                self.poll(done);
            }
        }
    }
}

/// The core's settings for a replay: the data-age limit caps prefetch TTLs and is the TTL of
/// demand fills; every entity of the log may be tracked.
fn core_config(
    s: &SimSettings,
    mut planner: PlannerConfig,
    breaker: BreakerConfig,
    w: &Workload,
) -> CoreConfig {
    if let Some(ttl) = s.ttl {
        planner.max_ttl = planner.max_ttl.min(ttl);
    }
    CoreConfig {
        planner,
        breaker,
        demand_ttl: s.ttl.unwrap_or(Duration::MAX),
        max_tracked: w.entity_slots().max(1),
        tick: s.tick,
        ..CoreConfig::default()
    }
}

impl<'w, 'p, C: SimCache> Sim<'w, 'p, C> {
    /// The key of an entity index (for tests).
    #[allow(dead_code)] // used by tests
    pub(crate) fn sim_key(&self, idx: u32) -> SimKey {
        self.key(idx)
    }
}
