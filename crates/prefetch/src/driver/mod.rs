//! The tokio driver of the prefetch core, and the consumer read API.
//!
//! [`Prefetcher`] relays between a [`PrefetchCore`] and the I/O: a [`Predictor`], a [`Cache`]
//! and a [`Store`]. It decides nothing itself; every rule (threshold, skips, crediting, waste,
//! ticks, breaker) is the core's, which the replay simulator drives in virtual time too.
//! - [`Prefetcher::on_events`] sends a batch's invalidations (retried until they hold), asks the
//!   predictor (awaited with the deadline, whether it is remote or an in-process model run
//!   [off the runtime](crate::Offloaded)), and hands its predictions to the core. Ack the events
//!   after it returns, as its [`Processed`] says.
//! - [`Prefetcher::run`] issues the loads the core says are due, writes them with their TTL,
//!   and reports each outcome back.
//! - [`Prefetcher::get`] is the consumer API: the cache first (only a current version), else
//!   join a load in flight, else the store, filling the cache. [`Prefetcher::get_many`] reads
//!   several entities with one cache round trip and one store batch per kind for the misses.
//!
//! # Time
//! Every decision takes its time from the [`Clock`]. With a wall clock the scheduler sleeps until
//! the next load is due. A clock that follows the events ([`prescient_core::EventClock`], told
//! each event's time through [`Clock::observe_event`]) moves only with the events; the loads due
//! are then issued event by event, and through the quiet spells between events, as the replay
//! simulator issues them in virtual time.
//!
//! # Concurrent calls on the same key
//! Concurrent [`Prefetcher::get`] misses on one entity run one store load; the others wait for it
//! (`joined`). A read that finds a prefetch of the entity in flight waits for it too. If the
//! shared load fails, each waiter falls back to its own store read.

mod invalidate;
mod load;
mod predict;
mod read;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use prescient_core::{Cache, Clock, EntityKey, Entry, Event, Predictor, Store, Timestamp, Version};
use rustc_hash::FxHashMap;
use tokio::sync::{Notify, oneshot};

use crate::breaker::{BreakerConfig, BreakerState};
use crate::machine::{CoreConfig, CoreState, CoreStats, PrefetchCore};
use crate::planner::{LoadId, PlannerConfig, PlannerStats};
use crate::retry::RetryConfig;

pub use read::{ReadError, ReadOutcome};

/// Settings of a [`Prefetcher`].
#[derive(Debug, Clone)]
pub struct PrefetcherConfig {
    /// The planner's settings.
    pub planner: PlannerConfig,
    /// The breaker's settings.
    pub breaker: BreakerConfig,
    /// How long the predictor may take per event. A call for a batch of events may take as
    /// many times this as it has events, up to ten.
    pub predict_timeout: Duration,
    /// How long a store load may take.
    pub store_timeout: Duration,
    /// TTL of entries filled by consumer misses (the data-age limit).
    pub demand_ttl: Duration,
    /// Entries remembered for "already cached" checks and the crediting rule.
    pub max_tracked: usize,
    /// After this long without an event, ask the predictor what comes due
    /// ([`Predictor::tick`]), and again every as long until the next event, as `replay --tick`
    /// does; `None`: only at events. Set it to the data-age limit.
    pub tick: Option<Duration>,
    /// How failed invalidations are retried. A transient failure (the cache unreachable) is
    /// retried until it holds, with this backoff; any other failure up to `max_attempts` times,
    /// after which the event is to be dead-lettered with the reason.
    pub invalidate_retry: RetryConfig,
    /// With a clock that follows the events, wait for the loads issued at one moment to
    /// finish before the clock moves on, as loads that take no time would. For drivers in
    /// virtual time and the test that compares them with the simulator; a live node leaves
    /// it off, so that loads overlap the next events.
    pub lockstep: bool,
}

impl Default for PrefetcherConfig {
    fn default() -> Self {
        PrefetcherConfig {
            planner: PlannerConfig::default(),
            breaker: BreakerConfig::default(),
            predict_timeout: Duration::from_millis(50),
            store_timeout: Duration::from_secs(2),
            demand_ttl: Duration::from_secs(3600),
            max_tracked: 1_000_000,
            tick: None,
            invalidate_retry: RetryConfig {
                max_attempts: 5,
                base: Duration::from_millis(50),
                max: Duration::from_secs(2),
                jitter: 0.2,
            },
            lockstep: false,
        }
    }
}

impl PrefetcherConfig {
    fn core(&self) -> CoreConfig {
        CoreConfig {
            planner: self.planner.clone(),
            breaker: self.breaker,
            demand_ttl: self.demand_ttl,
            max_tracked: self.max_tracked,
            tick: self.tick,
            ..CoreConfig::default()
        }
    }
}

/// The most ticks in one quiet spell.
pub use crate::machine::MAX_QUIET_TICKS;

/// Counters of the driver's own I/O (monotonic). The core counts its decisions
/// ([`CoreStats`]); [`Prefetcher::snapshot`] reports both.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Events processed.
    pub events: AtomicU64,
    /// Reads served from the cache.
    pub hits: AtomicU64,
    /// Reads that joined a load in flight.
    pub joined: AtomicU64,
    /// Reads that loaded from the store.
    pub misses: AtomicU64,
    /// Store round trips (batches and single loads).
    pub store_loads: AtomicU64,
    /// Cache operations that failed.
    pub cache_errors: AtomicU64,
    /// Invalidations retried after a failure.
    pub invalidation_retries: AtomicU64,
    /// Events whose invalidation could not be made to hold (to be dead-lettered).
    pub invalidations_failed: AtomicU64,
    /// Wall time of the prediction step of events, in microseconds: the predictor's work
    /// (learning, ticks, predictions), then offering its predictions to the core.
    pub predict_micros: AtomicU64,
}

/// A point-in-time view of the prefetcher, for `/metrics`.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Counter values, by name.
    pub counters: Vec<(&'static str, u64)>,
    /// Plans waiting (gauge).
    pub queue_depth: usize,
    /// Loads in flight (gauge).
    pub in_flight: usize,
    /// Retries scheduled so far.
    pub retries: u64,
    /// The breaker's state.
    pub breaker: BreakerState,
    /// The learned threshold of each relation, in the order of [`prescient_core::Relation::ALL`].
    pub thresholds: Vec<(&'static str, f32)>,
}

/// What [`Prefetcher::on_events`] did with a batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Processed {
    /// Predictions offered to the core.
    pub offered: usize,
    /// Events (by index in the batch) whose invalidations could not be made to hold, with the
    /// reason: dead-letter them. Ack the others.
    pub failed: Vec<(usize, String)>,
}

type Waiter = oneshot::Sender<Result<Option<Entry>, ReadError>>;

#[derive(Debug)]
struct State {
    core: PrefetchCore<EntityKey>,
    /// Readers waiting for the load of an entity, with the load they joined.
    waiters: FxHashMap<EntityKey, (LoadId, Vec<Waiter>)>,
    /// Invalidations sent but not yet known to hold: until they do, a cached copy older than
    /// this is not served.
    floors: FxHashMap<EntityKey, Version>,
}

#[derive(Debug)]
struct Inner {
    cfg: PrefetcherConfig,
    clock: Arc<dyn Clock>,
    predictor: RwLock<Arc<dyn Predictor>>,
    cache: Arc<dyn Cache>,
    store: Arc<dyn Store>,
    state: Mutex<State>,
    wake: Notify,
    idle: Notify,
    loads_running: AtomicU64,
    /// Whether the clock follows the events (an event has moved it).
    event_time: AtomicBool,
    metrics: Metrics,
}

/// The prefetch manager and consumer API. Cheap to clone; clones share state.
#[derive(Debug, Clone)]
pub struct Prefetcher {
    inner: Arc<Inner>,
}

impl Prefetcher {
    /// A prefetcher over the given predictor, cache, store and clock.
    pub fn new(
        cfg: PrefetcherConfig,
        clock: Arc<dyn Clock>,
        predictor: Arc<dyn Predictor>,
        cache: Arc<dyn Cache>,
        store: Arc<dyn Store>,
    ) -> Self {
        let state = State {
            core: PrefetchCore::new(cfg.core()),
            waiters: FxHashMap::default(),
            floors: FxHashMap::default(),
        };
        Prefetcher {
            inner: Arc::new(Inner {
                cfg,
                clock,
                predictor: RwLock::new(predictor),
                cache,
                store,
                state: Mutex::new(state),
                wake: Notify::new(),
                idle: Notify::new(),
                loads_running: AtomicU64::new(0),
                event_time: AtomicBool::new(false),
                metrics: Metrics::default(),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // The core is plain data updated in place; a panic while holding the lock cannot leave
        // it in a state that breaks safety (every entry is checked against the cache's
        // versions), so recover.
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The driver's counters.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The core's counters.
    pub fn core_stats(&self) -> CoreStats {
        self.state().core.stats()
    }

    /// Replaces the predictor (hot swap). Events in progress finish with the old one.
    pub fn set_predictor(&self, predictor: Arc<dyn Predictor>) {
        *self
            .inner
            .predictor
            .write()
            .unwrap_or_else(|p| p.into_inner()) = predictor;
    }

    /// The current predictor.
    pub fn predictor(&self) -> Arc<dyn Predictor> {
        self.inner
            .predictor
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A snapshot of counters and gauges.
    pub fn snapshot(&self) -> Snapshot {
        let m = &self.inner.metrics;
        let now = self.inner.clock.now();
        let (core, queue_depth, in_flight, retries, breaker, thresholds) = {
            let s = self.state();
            let p = s.core.planner();
            (
                s.core.stats(),
                p.pending_len(),
                p.in_flight_len(),
                p.stats().retries,
                s.core.breaker_state(now),
                prescient_core::Relation::ALL
                    .iter()
                    .map(|r| (r.as_str(), p.threshold(*r)))
                    .collect(),
            )
        };
        let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Snapshot {
            counters: vec![
                ("events", c(&m.events)),
                ("predictions", core.predictions),
                ("predictor_errors", core.predictor_errors),
                ("breaker_refused", core.breaker_refused),
                ("prefetches_issued", core.prefetches_issued),
                ("prefetches_skipped_cached", core.prefetches_skipped_cached),
                ("prefetches_used", core.prefetches_used),
                ("prefetches_wasted", core.prefetches_wasted),
                ("prefetch_failures", core.prefetch_failures),
                ("hits", c(&m.hits)),
                ("joined", c(&m.joined)),
                ("misses", c(&m.misses)),
                ("store_loads", c(&m.store_loads)),
                ("cache_errors", c(&m.cache_errors)),
                ("invalidations", core.invalidations),
                ("invalidation_retries", c(&m.invalidation_retries)),
                ("invalidations_failed", c(&m.invalidations_failed)),
                ("predict_micros", c(&m.predict_micros)),
            ],
            queue_depth,
            in_flight,
            retries,
            breaker,
            thresholds,
        }
    }

    /// What the planner did with the predictions so far (offered, dropped and why, issued).
    pub fn planner_stats(&self) -> PlannerStats {
        self.state().core.planner().stats().clone()
    }

    /// The per-entity state of the keys `select` picks, to hand a partition to another node
    /// ([`PrefetchCore::export`]).
    pub fn export_state(&self, select: &mut dyn FnMut(&EntityKey) -> bool) -> CoreState<EntityKey> {
        self.state().core.export(select)
    }

    /// Takes over per-entity state exported by another node ([`PrefetchCore::import`]).
    pub fn import_state(&self, state: CoreState<EntityKey>) {
        let now = self.inner.clock.now();
        self.state().core.import(now, state);
        self.inner.wake.notify_one();
    }

    /// Drops the per-entity state of the keys `select` picks (a partition handed over).
    pub fn forget_state(&self, select: &mut dyn FnMut(&EntityKey) -> bool) {
        self.state().core.forget(select);
    }

    /// Processes one event ([`Prefetcher::on_events`] for a batch of one).
    ///
    /// # Cancel safety
    /// See [`Prefetcher::on_events`].
    pub async fn on_event(&self, event: &Event) -> Processed {
        self.on_events(std::slice::from_ref(event)).await
    }

    /// Processes several events, in order, as one after the other would be, with fewer round
    /// trips: the invalidations of all of them (the highest version of each written entity)
    /// are sent at once, before any prediction, and retried until they hold; then the
    /// predictor is asked about the events (in one call while the breaker is closed), and the
    /// loads due are issued. Acknowledge each event after this returns, unless
    /// [`Processed::failed`] names it: dead-letter that one with the reason.
    ///
    /// Applying every invalidation of the batch first is safe: a floor only ever rises, so
    /// sending it earlier can only refuse more stale writes, never admit one.
    ///
    /// # Cancel safety
    /// Cancelling may skip the predictions of some events and leave invalidations unconfirmed;
    /// do not ack the events then (the broker redelivers them, and processing is idempotent).
    pub async fn on_events(&self, events: &[Event]) -> Processed {
        let failed = self.invalidate(events).await;
        let offered = self.predict(events).await;
        Processed { offered, failed }
    }

    /// The first half of [`Prefetcher::on_events`]: counts the events and sends their
    /// invalidations, retried until they hold. Returns the events whose invalidations could
    /// not be made to hold, with the reason. A driver that interleaves reads with the events
    /// (in virtual time, reads come after an event's writes and before its predictions) calls
    /// the halves apart.
    ///
    /// # Cancel safety
    /// See [`Prefetcher::on_events`].
    pub async fn invalidate(&self, events: &[Event]) -> Vec<(usize, String)> {
        self.inner
            .metrics
            .events
            .fetch_add(events.len() as u64, Ordering::Relaxed);
        self.invalidate_written(events).await
    }

    /// The second half of [`Prefetcher::on_events`]: asks the predictor about the events and
    /// issues the loads due. Returns the predictions offered.
    ///
    /// # Cancel safety
    /// Cancelling may skip the predictions of some events.
    pub async fn predict(&self, events: &[Event]) -> usize {
        let started = std::time::Instant::now();
        let offered = self.predict_events(events).await;
        self.count_predict_time(started);
        self.inner.wake.notify_one();
        offered
    }

    /// Adds the time since `started` to the `predict_micros` counter. A measurement only: what
    /// the prefetcher decides follows its [`Clock`].
    fn count_predict_time(&self, started: std::time::Instant) {
        let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.inner
            .metrics
            .predict_micros
            .fetch_add(us, Ordering::Relaxed);
    }

    /// Runs the scheduler until `shutdown` resolves, then waits for loads in flight to finish.
    ///
    /// # Cancel safety
    /// Prefer resolving `shutdown` to dropping this future: dropping it may abandon loads in flight
    /// (their readers fall back to the store).
    pub async fn run(&self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let sleep_for = {
                let s = self.state();
                let now = self.inner.clock.now();
                match s.core.next_due() {
                    Some(due) if s.core.has_ready() => {
                        due.since(now).min(Duration::from_millis(10))
                    }
                    Some(due) => due.since(now).min(Duration::from_secs(1)),
                    None if s.core.has_ready() => Duration::from_millis(10),
                    None => Duration::from_secs(1),
                }
            };
            tokio::select! {
                _ = &mut shutdown => break,
                _ = self.inner.wake.notified() => {}
                _ = tokio::time::sleep(sleep_for) => {}
            }
            if !self.inner.event_time.load(Ordering::Relaxed) {
                // Wall-clock time: quiet spells pass here, not between events.
                self.tick_quiet(self.inner.clock.now(), false).await;
            }
            self.spawn_due();
        }
        self.drain().await;
    }

    /// Waits until no prefetch load is running.
    pub async fn drain(&self) {
        loop {
            let idle = self.inner.idle.notified();
            if self.inner.loads_running.load(Ordering::Acquire) == 0 {
                return;
            }
            let _ = tokio::time::timeout(Duration::from_millis(50), idle).await;
        }
    }

    /// The clock's current time.
    pub fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }
}

#[cfg(test)]
mod tests;
