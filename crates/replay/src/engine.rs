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
    EntityKey, Observe, PredictError, PredictRequest, Predictor, Relation, Timestamp,
};
use prescient_prefetch::{
    BatchItem, Breaker, BreakerConfig, Failure, Offer, PlanKey, Planner, PlannerConfig,
    PlannerStats,
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
    prefetch: bool,
    useful: bool,
    relation: Relation,
}

#[derive(Debug, Clone)]
enum LoadKind {
    Demand,
    Prefetch(BatchItem<SimKey>, bool),
}

#[derive(Debug, Clone, Copy, Default)]
struct PrefetchTag {
    active: bool,
    counted: bool,
    prev_valid_until: i64,
    relation: Relation,
}

struct Prescient<'p> {
    predictor: &'p dyn Predictor,
    planner: Planner<SimKey>,
    breaker: Breaker,
    tags: Vec<PrefetchTag>,
    rng: SmallRng,
    /// The last tick or prediction, in microseconds (`None` before the first event).
    last_tick: Option<i64>,
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

/// The most ticks run in one quiet spell between two events.
pub(crate) const MAX_QUIET_TICKS: i64 = 288;

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
        mut planner: PlannerConfig,
        breaker: BreakerConfig,
    ) -> Self {
        if let Some(ttl) = self.s.ttl {
            planner.max_ttl = planner.max_ttl.min(ttl);
        }
        let seed = self.s.seed;
        self.prescient = Some(Prescient {
            predictor,
            planner: Planner::new(planner),
            breaker: Breaker::new(breaker),
            tags: vec![PrefetchTag::default(); self.w.entity_slots()],
            rng: SmallRng::seed_from_u64(seed),
            last_tick: None,
        });
        self
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
            self.stats.planner = Some(p.planner.stats().clone());

            self.stats.breaker_opened = p.breaker.opened;
            self.stats.breaker_refused = p.breaker.refused;
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
                .and_then(|p| p.planner.next_due())
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
        if self.prescient.is_some() {
            // Invalidation: the event says which entities it wrote, and to which version.
            for m in &self.w.events[i].mutations {
                if let Some(idx) = self.w.index_of(&m.key()) {
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
            if let Some(p) = &mut self.prescient {
                p.planner.on_read();
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
                if let Some(p) = &mut self.prescient {
                    let tag = &mut p.tags[idx as usize];
                    if tag.active && !tag.counted && tag.prev_valid_until <= t {
                        tag.counted = true;
                        self.stats.useful_prefetches += 1;
                        if let Some(k) = self.stats.by_kind.get_mut(kind) {
                            k.useful_prefetches += 1;
                        }
                        p.planner.on_prefetch_used(tag.relation);
                    }
                }
                continue;
            }
            // 2. A load in flight of a current version: join it.
            if let Some(f) = self.inflight.get_mut(&idx).filter(|f| f.version >= current) {
                self.stats.joined += 1;
                self.stats
                    .latencies_us
                    .push((f.done - t).clamp(0, u32::MAX as i64) as u32);
                if f.prefetch && !f.useful {
                    f.useful = true;
                    self.stats.useful_prefetches += 1;
                    if let Some(k) = self.stats.by_kind.get_mut(kind) {
                        k.useful_prefetches += 1;
                    }
                    if let Some(p) = &mut self.prescient {
                        p.planner.on_prefetch_used(f.relation);
                    }
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
        if let Some(p) = &mut self.prescient {
            let key = SimKey {
                idx,
                kind: self.w.kinds[idx as usize],
            };
            p.planner.begin_demand(Timestamp::from_micros(t), &key);
        }
        self.inflight.insert(
            idx,
            Flight {
                seq: self.seq,
                done,
                version,
                prefetch: false,
                useful: false,
                relation: Relation::Same,
            },
        );
        self.load_info
            .insert(self.seq, (idx, version, LoadKind::Demand));
        self.loads.push(Reverse((done, self.seq)));
    }

    fn predict(&mut self, i: usize, t: i64) {
        let Some(p) = &mut self.prescient else { return };
        let now = Timestamp::from_micros(t);
        p.last_tick = Some(t);
        if !p.breaker.allow(now) {
            return;
        }
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

    /// Records a prediction's outcome with the breaker and offers its entities to the planner,
    /// or counts the failure (`what`: the event, or a tick).
    fn take_result(
        &mut self,
        now: Timestamp,
        result: Result<prescient_core::Forecast, PredictError>,
        what: &str,
    ) {
        let Some(p) = &mut self.prescient else { return };
        let forecast = match result {
            Ok(forecast) => {
                p.breaker.record(now, true);
                forecast
            }
            Err(error) => {
                self.stats.predictor_errors += 1;
                p.breaker.record(now, false);
                tracing::debug!(message = "Prediction failed.", %error, event = what);
                return;
            }
        };
        for pred in forecast.entities {
            let Some(idx) = self.w.index_of(&pred.entity) else {
                continue;
            };
            let key = SimKey {
                idx,
                kind: self.w.kinds[idx as usize],
            };
            p.planner.offer(
                now,
                Offer {
                    key,
                    confidence: pred.confidence,
                    expected_at: pred.expected_at,
                    latest: pred.latest,
                    relation: pred.relation,
                },
            );
        }
    }

    /// Ticks the predictor before `t` (the next event) while no event came for
    /// [`SimSettings::tick`] of event time, every `tick`, and offers what comes due. Long quiet spells are ticked only in their last
    /// [`MAX_QUIET_TICKS`] ticks.
    fn tick_until(&mut self, t: i64) {
        let Some(every) = self.s.tick.map(us).filter(|&e| e > 0) else {
            return;
        };
        let Some(p) = &mut self.prescient else { return };
        let Some(mut last) = p.last_tick else {
            p.last_tick = Some(t);
            return;
        };
        last = last.max(t.saturating_sub(every.saturating_mul(MAX_QUIET_TICKS)));
        while last.saturating_add(every) < t {
            last += every;
            if let Some(p) = &mut self.prescient {
                p.last_tick = Some(last);
            }
            self.advance_to(last);
            let now = Timestamp::from_micros(last);
            let Some(p) = &mut self.prescient else { return };
            if !p.breaker.allow(now) {
                continue;
            }
            let result = p
                .predictor
                .tick(now)
                .now_or_never()
                .unwrap_or(Err(PredictError::Timeout));
            self.take_result(now, result, "(tick)");
            self.poll(last);
        }
    }

    /// Issues the planner's due batches at `t`.
    fn poll(&mut self, t: i64) {
        let Some(p) = &mut self.prescient else { return };
        let now = Timestamp::from_micros(t);
        let cache = &self.cache;
        let store_version = &self.store_version;
        let batches = p.planner.poll(now, &mut |k: &SimKey, at: Timestamp| {
            cache.peek(k.idx, now).is_some_and(|s| {
                s.version >= store_version[k.idx as usize] && s.expires > at.as_micros()
            })
        });
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
                        prefetch: true,
                        useful: false,
                        relation: item.relation,
                    },
                );
                self.load_info
                    .insert(self.seq, (idx, version, LoadKind::Prefetch(item, fails)));
                self.loads.push(Reverse((done, self.seq)));
            }
        }
    }

    fn complete(&mut self, done: i64, seq: u64) {
        let Some((idx, version, kind)) = self.load_info.remove(&seq) else {
            return;
        };
        let flight = self.inflight.get(&idx).copied().filter(|f| f.seq == seq);
        if flight.is_some() {
            self.inflight.remove(&idx);
        }
        let now = Timestamp::from_micros(done);
        match kind {
            LoadKind::Demand => {
                if let Some(p) = &mut self.prescient {
                    let key = SimKey {
                        idx,
                        kind: self.w.kinds[idx as usize],
                    };
                    // The planner's in-flight entry for this demand load has the planner's own id;
                    // the entity is no longer in flight either way.
                    if let Some(f) = p.planner.in_flight(&key).copied() {
                        p.planner.end_demand(&key, f.id);
                    }
                }
                let expires = done.saturating_add(self.ttl_us);
                if self.cache.insert(idx, version, now, expires)
                    && let Some(p) = &mut self.prescient
                {
                    p.tags[idx as usize].active = false;
                }
            }
            LoadKind::Prefetch(item, fails) => {
                let Some(p) = &mut self.prescient else { return };
                if fails {
                    self.stats.prefetch_failures += 1;
                    p.planner.complete(now, &item, Err(Failure::Transient));
                    self.poll(done);
                    return;
                }
                let Some(ttl) = p.planner.complete(now, &item, Ok(())) else {
                    return;
                };
                let expires = done
                    .saturating_add(us(ttl))
                    .min(done.saturating_add(self.ttl_us));
                let prev_valid_until = self
                    .cache
                    .peek(idx, now)
                    .filter(|s| s.version >= self.store_version[idx as usize])
                    .map_or(i64::MIN, |s| s.expires);
                let joined_useful = flight.is_some_and(|f| f.useful);
                if self.cache.insert(idx, version, now, expires) {
                    p.tags[idx as usize] = PrefetchTag {
                        active: true,
                        counted: joined_useful,
                        prev_valid_until,
                        relation: item.relation,
                    };
                    if let Some(key) = self.w.keys.get(idx as usize) {
                        p.predictor.filled(key, now);
                    }
                }
                self.poll(done);
            }
        }
    }
}

impl<'w, 'p, C: SimCache> Sim<'w, 'p, C> {
    /// The key of an entity index (for tests).
    #[allow(dead_code)] // used by tests
    pub(crate) fn sim_key(&self, idx: u32) -> SimKey {
        self.key(idx)
    }
}
