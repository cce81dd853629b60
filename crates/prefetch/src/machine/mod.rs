//! [`PrefetchCore`]: the prefetch manager as a sans-IO state machine.
//!
//! The core makes every decision of the prefetch path and performs none of its I/O. It holds
//! the [`Planner`] (threshold, just-in-time plans, budget, batches, retries, TTLs), the circuit
//! [`Breaker`], the record of what this node cached, what it is loading and what it prefetched
//! but nobody has read yet, the rule that credits a prefetch as used, and the fills the
//! predictor is to be told about. Drivers feed it plain calls with the time passed in (an event
//! arrived, a read hit or missed, a load finished, time passed) and carry out what it answers
//! (batches to load, TTLs to cache with, ticks to ask the predictor for). It never awaits,
//! sleeps or reads a clock.
//!
//! Two drivers run it: the tokio driver ([`crate::Prefetcher`], for `serve`) and the
//! virtual-time simulator of `prescient-replay` (`replay`, `demo`). Because both only relay
//! inputs and outputs, a replay measures the rules production runs; a parity test runs one log
//! through both and compares their decisions event by event.
//!
//! # The crediting rule
//! A prefetch is *used* when its entry serves a read that would otherwise have missed: the read
//! found the entity uncached, or found only a copy that would have expired before the read
//! (`shared/specs/replay.md`). So a prefetch is credited, once, when
//! - a read hits the entry it filled, and the copy it replaced was no longer valid at the
//!   read ([`PrefetchCore::on_hit`]); or
//! - a read misses and joins the prefetch while it is still in flight
//!   ([`PrefetchCore::on_joined`]).
//!
//! A prefetched entry that is replaced, invalidated or evicted before it was credited is
//! counted as wasted. Each credit is reported to the planner, whose thresholds learn from it.

mod state;
mod ticks;
mod tracking;

use std::collections::VecDeque;
use std::time::Duration;

use prescient_core::{PredictError, Relation, Timestamp, Version};
use serde::Serialize;

use crate::breaker::{Breaker, BreakerConfig, BreakerState};
use crate::planner::{Batch, BatchItem, Failure, InFlight, Offer, PlanKey, Planner, PlannerConfig};

pub use state::{CoreState, EntityState};
pub use ticks::MAX_QUIET_TICKS;
use ticks::Ticks;
use tracking::{Tracked, Tracking};

/// Settings of a [`PrefetchCore`].
#[derive(Debug, Clone, PartialEq)]
pub struct CoreConfig {
    /// The planner's settings.
    pub planner: PlannerConfig,
    /// The breaker's settings.
    pub breaker: BreakerConfig,
    /// TTL of entries filled by consumer misses (the data-age limit).
    pub demand_ttl: Duration,
    /// The most entities whose cached copy the core remembers (for "already cached" checks and
    /// the crediting rule). When full, expired records are dropped first, then all of them.
    pub max_tracked: usize,
    /// After this long without an event, the predictor is asked what comes due, and again every
    /// as long until the next event; `None`: only at events.
    pub tick: Option<Duration>,
    /// The most prefetch fills kept for the predictor between two predictions; older ones are
    /// dropped (a dropped fill only makes the model's idea of a copy's age a guess again).
    pub max_fills: usize,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            planner: PlannerConfig::default(),
            breaker: BreakerConfig::default(),
            demand_ttl: Duration::from_secs(3600),
            max_tracked: 1_000_000,
            tick: None,
            max_fills: 65_536,
        }
    }
}

/// What the core decided so far (monotonic counters).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CoreStats {
    /// Predicted entities offered to the planner.
    pub predictions: u64,
    /// Predictor calls that failed or timed out.
    pub predictor_errors: u64,
    /// Predictor calls refused because the breaker was open.
    pub breaker_refused: u64,
    /// Prefetch loads issued to the store.
    pub prefetches_issued: u64,
    /// Prefetches not loaded because, just before the load, the cache already held the entity
    /// (written by a read, or by another node sharing the cache).
    pub prefetches_skipped_cached: u64,
    /// Prefetches credited as used (see the crediting rule).
    pub prefetches_used: u64,
    /// Prefetched entries replaced, invalidated, evicted or forgotten before they were used.
    pub prefetches_wasted: u64,
    /// Prefetch loads that failed.
    pub prefetch_failures: u64,
    /// Invalidations the events asked for.
    pub invalidations: u64,
}

/// How to cache a prefetched row ([`PrefetchCore::on_prefetch_loaded`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fill {
    /// The TTL to write it with.
    pub ttl: Duration,
    /// Whether a read joined the load in flight (and so credited it already).
    joined: bool,
}

/// What a read that missed the cache is to do ([`PrefetchCore::begin_demand`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Demand {
    /// Load the entity; report the outcome with [`PrefetchCore::end_demand`].
    Load(InFlight),
    /// A load of the entity is in flight already: wait for it.
    Join(InFlight),
}

/// The prefetch manager's state machine. See the module docs.
#[derive(Debug)]
pub struct PrefetchCore<K: PlanKey> {
    cfg: CoreConfig,
    planner: Planner<K>,
    breaker: Breaker,
    tracking: Tracking<K>,
    ticks: Ticks,
    fills: VecDeque<(K, Timestamp)>,
    stats: CoreStats,
}

impl<K: PlanKey> PrefetchCore<K> {
    /// A core with nothing planned, tracked or learned.
    pub fn new(cfg: CoreConfig) -> Self {
        PrefetchCore {
            planner: Planner::new(cfg.planner.clone()),
            breaker: Breaker::new(cfg.breaker),
            tracking: Tracking::new(cfg.max_tracked),
            ticks: Ticks::new(cfg.tick),
            fills: VecDeque::new(),
            stats: CoreStats::default(),
            cfg,
        }
    }

    /// The settings.
    pub fn config(&self) -> &CoreConfig {
        &self.cfg
    }

    /// The planner (read only: its stats, thresholds and queue lengths).
    pub fn planner(&self) -> &Planner<K> {
        &self.planner
    }

    /// The counters.
    pub fn stats(&self) -> CoreStats {
        self.stats
    }

    /// The breaker's state at `now`.
    pub fn breaker_state(&self, now: Timestamp) -> BreakerState {
        self.breaker.state(now)
    }

    /// The breaker (its counters).
    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    // ---- events -------------------------------------------------------------------------

    /// An event said that `key` now has at least `version`: the record of any older copy is
    /// dropped (a copy prefetched and not yet used is wasted). The driver sends the
    /// invalidation to the cache; until it holds, reads must not trust the cache for `key`.
    pub fn invalidate(&mut self, key: &K, version: Version) {
        self.stats.invalidations += 1;
        if let Some(t) = self.tracking.remove_below(key, version) {
            self.count_dropped(&t);
        }
    }

    /// Records that an event at `time` was processed (for the tick schedule).
    pub fn on_event_time(&mut self, time: Timestamp) {
        self.ticks.on_event(time);
    }

    /// The latest event time seen, if any event was processed.
    pub fn last_event(&self) -> Option<Timestamp> {
        self.ticks.last_event()
    }

    /// Records activity at `at` that was not an event's time (the wall clock of a processed
    /// batch): quiet-spell ticks count from it.
    pub fn on_activity(&mut self, at: Timestamp) {
        self.ticks.on_activity(at);
    }

    /// The next tick of the quiet spell before `until`, if one is due (see
    /// [`CoreConfig::tick`]): its time, which the caller then treats as now, asking the
    /// predictor what comes due ([`PrefetchCore::allow_predict`], then
    /// [`PrefetchCore::on_predicted`]). `until_is_event` says whether `until` is the time of the
    /// next event (a quiet spell the log had); when it is a wall clock, ticks go no further than
    /// [`MAX_QUIET_TICKS`] ticks past the last event, since a model knows the time only from its
    /// events and would otherwise judge windows of a log of long ago against today.
    pub fn next_tick(&mut self, until: Timestamp, until_is_event: bool) -> Option<Timestamp> {
        self.ticks.next(until, until_is_event)
    }

    // ---- prediction ---------------------------------------------------------------------

    /// Whether the predictor may be asked at `now` (the breaker; a refusal is counted).
    pub fn allow_predict(&mut self, now: Timestamp) -> bool {
        let allowed = self.breaker.allow(now);
        if !allowed {
            self.stats.breaker_refused += 1;
        }
        allowed
    }

    /// Whether the breaker is closed at `now`: every event of a batch may then go to the
    /// predictor in one call.
    pub fn breaker_closed(&self, now: Timestamp) -> bool {
        self.breaker.state(now) == BreakerState::Closed
    }

    /// The prefetches that filled the cache since the predictor was last told, oldest first:
    /// the driver tells the predictor before its next prediction.
    pub fn take_fills(&mut self) -> Vec<(K, Timestamp)> {
        self.fills.drain(..).collect()
    }

    /// Records the outcome of a predictor call made at `now` with the breaker, and offers its
    /// predictions to the planner. Returns the number offered, or `None` for a failure.
    pub fn on_predicted(
        &mut self,
        now: Timestamp,
        result: Result<impl IntoIterator<Item = Offer<K>>, &PredictError>,
    ) -> Option<usize> {
        match result {
            Ok(offers) => {
                self.breaker.record(now, true);
                let mut n = 0;
                for offer in offers {
                    self.planner.offer(now, offer);
                    n += 1;
                }
                self.stats.predictions += n as u64;
                Some(n)
            }
            Err(_) => {
                self.breaker.record(now, false);
                self.stats.predictor_errors += 1;
                None
            }
        }
    }

    // ---- loads --------------------------------------------------------------------------

    /// The earliest time at which [`PrefetchCore::poll`] may have new work, if any.
    pub fn next_due(&self) -> Option<Timestamp> {
        self.planner.next_due()
    }

    /// Whether due plans wait for budget or a free slot (poll again soon).
    pub fn has_ready(&self) -> bool {
        self.planner.has_ready()
    }

    /// The batches to load at `now`. Entities this node cached with a copy still usable at the
    /// expected read are skipped, as are those already being loaded.
    pub fn poll(&mut self, now: Timestamp) -> Vec<Batch<K>> {
        let tracking = &self.tracking;
        let batches = self
            .planner
            .poll(now, &mut |k, at| tracking.is_fresh(k, at));
        self.stats.prefetches_issued += batches.iter().map(|b| b.items.len() as u64).sum::<u64>();
        batches
    }

    /// Just before its load, the cache turned out to hold `item`'s entity already (filled by a
    /// read, or by another node sharing the cache): the prefetch ends without a load. It is
    /// neither used nor wasted.
    pub fn on_prefetch_cached(&mut self, item: &BatchItem<K>) {
        self.planner.complete_cached(item);
        self.stats.prefetches_issued = self.stats.prefetches_issued.saturating_sub(1);
        self.stats.prefetches_skipped_cached += 1;
    }

    /// The store answered the prefetch `item` at `now`: `Ok(true)` with a row, `Ok(false)`
    /// without one, or how it failed (a transient failure is retried with backoff). Returns
    /// how to cache the row (its TTL); report the write with
    /// [`PrefetchCore::on_prefetch_filled`].
    pub fn on_prefetch_loaded(
        &mut self,
        now: Timestamp,
        item: &BatchItem<K>,
        result: Result<bool, Failure>,
    ) -> Option<Fill> {
        match result {
            Ok(true) => {
                let joined = self
                    .planner
                    .in_flight(&item.key)
                    .is_some_and(|f| f.id == item.load && f.joined);
                let ttl = self
                    .planner
                    .complete(now, item, Ok(()))
                    .unwrap_or(self.cfg.planner.min_ttl);
                Some(Fill { ttl, joined })
            }
            Ok(false) => {
                self.planner.complete(now, item, Err(Failure::Permanent));
                None
            }
            Err(f) => {
                self.stats.prefetch_failures += 1;
                self.planner.complete(now, item, Err(f));
                None
            }
        }
    }

    /// The prefetched row of `item` (at `version`) was written to the cache at `now`, usable
    /// until `expires`. Records the copy with its prefetch tag (for the crediting rule; a
    /// read that joined the load in flight credited it already) and queues the fill for the
    /// predictor. A write the cache refused (it held a newer version) is not reported.
    pub fn on_prefetch_filled(
        &mut self,
        now: Timestamp,
        item: &BatchItem<K>,
        fill: Fill,
        version: Version,
        expires: Timestamp,
    ) {
        let prev_valid_until = self
            .tracking
            .get(&item.key)
            .filter(|t| t.expires > now)
            .map_or(Timestamp::from_micros(i64::MIN), |t| t.expires);
        let tracked = Tracked {
            version,
            expires,
            prefetch: Some(tracking::PrefetchTag {
                relation: item.relation,
                prev_valid_until,
                credited: fill.joined,
            }),
        };
        self.track(now, item.key.clone(), tracked);
        if self.fills.len() >= self.cfg.max_fills {
            self.fills.pop_front();
        }
        self.fills.push_back((item.key.clone(), now));
    }

    // ---- reads --------------------------------------------------------------------------

    /// A consumer read happened (it earns budget).
    pub fn on_read(&mut self) {
        self.planner.on_read();
    }

    /// A read at `now` was served from the cache. Credits the prefetch that filled the entry,
    /// if the copy it replaced would not have served this read. Returns whether it credited.
    pub fn on_hit(&mut self, now: Timestamp, key: &K) -> bool {
        let Some(relation) = self.tracking.credit_hit(key, now) else {
            return false;
        };
        self.credit(relation);
        true
    }

    /// A read that missed joined the load of `key` in flight. Credits it, if it is a prefetch
    /// not credited yet. Returns whether it credited.
    pub fn on_joined(&mut self, key: &K) -> bool {
        let Some(relation) = self.planner.mark_joined(key) else {
            return false;
        };
        self.credit(relation);
        true
    }

    fn credit(&mut self, relation: Relation) {
        self.stats.prefetches_used += 1;
        self.planner.on_prefetch_used(relation);
    }

    /// A read of `key` at `now` missed the cache: join the load in flight, or load.
    pub fn begin_demand(&mut self, now: Timestamp, key: &K) -> Demand {
        match self.planner.begin_demand(now, key) {
            (f, true) => Demand::Load(f),
            (f, false) => Demand::Join(f),
        }
    }

    /// The demand load `load` of `key` finished (whatever its outcome).
    pub fn end_demand(&mut self, key: &K, load: crate::planner::LoadId) {
        self.planner.end_demand(key, load);
    }

    /// A read's load of `key` (at `version`) was written to the cache at `now`, usable until
    /// `expires` ([`CoreConfig::demand_ttl`] after it). A prefetched copy it replaced was not
    /// used, or the read would have hit it: it is wasted.
    pub fn on_demand_filled(
        &mut self,
        now: Timestamp,
        key: K,
        version: Version,
        expires: Timestamp,
    ) {
        let tracked = Tracked {
            version,
            expires,
            prefetch: None,
        };
        self.track(now, key, tracked);
    }

    /// The cache dropped `key` to make room (capacity, not expiry). A driver that knows of
    /// evictions reports them, so that the record of what is cached stays exact.
    pub fn on_evicted(&mut self, key: &K) {
        if let Some(t) = self.tracking.remove(key) {
            self.count_dropped(&t);
        }
    }

    /// Whether this node's record has a copy of `key` (usable or not).
    pub fn is_tracked(&self, key: &K) -> bool {
        self.tracking.get(key).is_some()
    }

    /// Whether this node's record says the cache holds a copy of `key` usable at `at`.
    pub fn is_fresh(&self, key: &K, at: Timestamp) -> bool {
        self.tracking.is_fresh(key, at)
    }

    fn track(&mut self, now: Timestamp, key: K, t: Tracked) {
        let mut wasted = 0;
        self.tracking.insert(now, key, t, &mut wasted);
        self.stats.prefetches_wasted += wasted;
    }

    fn count_dropped(&mut self, t: &Tracked) {
        if t.prefetch.is_some_and(|p| !p.credited) {
            self.stats.prefetches_wasted += 1;
        }
    }

    // ---- state that moves ---------------------------------------------------------------

    /// The per-entity state of the keys `select` picks: pending plans and the record of cached
    /// copies (with their prefetch tags), to be [imported](PrefetchCore::import) by another
    /// node that takes those keys over. Loads in flight do not move: they finish here.
    pub fn export(&self, select: &mut dyn FnMut(&K) -> bool) -> CoreState<K> {
        state::export(&self.planner, &self.tracking, select)
    }

    /// Takes over the per-entity state `state` exported elsewhere. An entity this core knows
    /// already keeps the newer of the two records.
    pub fn import(&mut self, now: Timestamp, state: CoreState<K>) {
        let mut wasted = 0;
        state::import(
            &mut self.planner,
            &mut self.tracking,
            now,
            state,
            &mut wasted,
        );
        self.stats.prefetches_wasted += wasted;
    }

    /// Drops the per-entity state of the keys `select` picks (after handing it over).
    pub fn forget(&mut self, select: &mut dyn FnMut(&K) -> bool) {
        self.planner.forget_where(select);
        self.tracking.retain(|k| !select(k));
    }
}

#[cfg(test)]
mod tests;
