//! The tokio driver of the prefetch manager, and the consumer read API.
//!
//! [`Prefetcher`] connects a [`Planner`] to a [`Predictor`], a [`Cache`] and a [`Store`]:
//! - [`Prefetcher::on_event`] applies an event's invalidations, asks the predictor (through the
//!   circuit breaker, with a deadline) and schedules the predicted loads. Ack the event after it
//!   returns. [`Prefetcher::on_events`] does the same for a batch of events, sending all their
//!   invalidations at once; an in-process model predicts the batch on a blocking thread, off the
//!   async workers.
//! - [`Prefetcher::run`] loads due batches in the background, writes them with their TTL, and
//!   retries failures with backoff.
//! - [`Prefetcher::get`] is the consumer API: cache first (only a current version), else join a
//!   load in flight, else load from the store and fill the cache. [`Prefetcher::get_many`] reads
//!   several entities with one cache round trip and one store batch per kind for the misses.
//!
//! # Time
//! Every decision takes its time from the [`Clock`]. With a wall clock the scheduler sleeps until
//! the next load is due. A clock that follows the events ([`prescient_core::EventClock`], told
//! each event's time through [`Clock::observe_event`] before its predictions are offered) moves
//! only with the events, so the due loads are also issued event by event, as the replay
//! simulator issues them in virtual time: a log fed faster than it happened is then planned in
//! its own time frame.
//!
//! Loaded batches are written to the cache together (a multiplexed cache client such as Redis's
//! pipelines the writes), not one round trip after another.
//!
//! # Concurrent calls on the same key
//! Concurrent [`Prefetcher::get`] misses on one entity run one store load; the others wait for it
//! (`joined`). A read that finds a prefetch of the entity in flight waits for it too. If the
//! shared load fails, each waiter falls back to its own store read.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use prescient_core::{
    Cache, Clock, EntityKey, Entry, Event, Forecast, Observe, PredictError, PredictRequest,
    Predictor, Relation, SmolStr, Store, StoreError, Timestamp, Version,
};
use rustc_hash::FxHashMap;
use tokio::sync::{Notify, oneshot};

use crate::breaker::{Breaker, BreakerConfig, BreakerState};
use crate::planner::{
    Batch, BatchItem, Failure, LoadId, Offer, Planner, PlannerConfig, PlannerStats,
};

/// [`Prefetcher::on_events`] yields to the scheduler after this many predictions.
const YIELD_EVERY: usize = 32;

/// Settings of a [`Prefetcher`].
#[derive(Debug, Clone)]
pub struct PrefetcherConfig {
    /// The planner's settings.
    pub planner: PlannerConfig,
    /// The breaker's settings.
    pub breaker: BreakerConfig,
    /// How long the predictor may take per event.
    pub predict_timeout: Duration,
    /// How long a store load may take.
    pub store_timeout: Duration,
    /// TTL of entries filled by consumer misses (the data-age limit).
    pub demand_ttl: Duration,
    /// Entries remembered for "already cached" checks and waste accounting.
    pub max_tracked: usize,
    /// After this long without an event, ask the predictor what comes due
    /// ([`Predictor::tick`]), and again every as long until the next event, as `replay --tick`
    /// does; `None`: only at events. Set it to the data-age limit.
    pub tick: Option<Duration>,
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
        }
    }
}

/// The most ticks in one quiet spell ([`Prefetcher::tick_quiet`]).
pub const MAX_QUIET_TICKS: u32 = 288;

/// How a read was served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadOutcome {
    /// From the cache.
    Hit,
    /// By waiting for a load already in flight.
    Joined,
    /// From the store.
    Miss,
}

impl ReadOutcome {
    /// `hit`, `joined` or `miss`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReadOutcome::Hit => "hit",
            ReadOutcome::Joined => "joined",
            ReadOutcome::Miss => "miss",
        }
    }
}

/// Why a read failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The store has no such entity.
    #[error("no entity {0}")]
    NotFound(EntityKey),
    /// The store only has an older version than the reader needs (replication lag): returning
    /// it would be a stale read.
    #[error("{key}: the store has {have}, the reader needs at least {want}")]
    VersionUnavailable {
        /// The entity.
        key: EntityKey,
        /// What the store returned.
        have: Version,
        /// What the reader asked for.
        want: Version,
    },
    /// The store did not answer in time.
    #[error("store load of {0} timed out")]
    Timeout(EntityKey),
}

/// Counters of a running prefetcher (monotonic unless noted).
#[derive(Debug, Default)]
pub struct Metrics {
    /// Events processed.
    pub events: AtomicU64,
    /// Predicted entities offered to the planner.
    pub predictions: AtomicU64,
    /// Predictor calls that failed or timed out.
    pub predictor_errors: AtomicU64,
    /// Prefetch loads issued.
    pub prefetches_issued: AtomicU64,
    /// Prefetches not loaded because, just before the load, the cache held the entity
    /// already (written by a read, or by another process sharing the cache).
    pub prefetches_skipped_cached: AtomicU64,
    /// Prefetched entries later read from the cache.
    pub prefetches_used: AtomicU64,
    /// Prefetched entries overwritten, invalidated or forgotten unread.
    pub prefetches_wasted: AtomicU64,
    /// Prefetch loads that failed.
    pub prefetch_failures: AtomicU64,
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
    /// Invalidations applied.
    pub invalidations: AtomicU64,
    /// Wall time of the prediction step of events, in microseconds: the predictor's work
    /// (learning, ticks, predictions), then offering its predictions to the planner. With an
    /// in-process model, this over the events is what each event costs the model's thread.
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
}

#[derive(Debug, Clone, Copy)]
struct Tracked {
    version: Version,
    expires: Timestamp,
    prefetched_unread: bool,
    /// How the predictor found the entity (for a prefetched entry).
    relation: Relation,
}

type Waiter = oneshot::Sender<Result<Option<Entry>, ReadError>>;

#[derive(Debug)]
struct State {
    planner: Planner<EntityKey>,
    breaker: Breaker,
    waiters: FxHashMap<EntityKey, (LoadId, Vec<Waiter>)>,
    tracked: FxHashMap<EntityKey, Tracked>,
    /// The time of the last event processed or tick (`None` before the first event).
    last_activity: Option<Timestamp>,
    /// The latest event time seen.
    last_event: Option<Timestamp>,
    /// Prefetches that filled the cache since the predictor was last told
    /// ([`Predictor::filled`]), oldest first, at most [`MAX_FILLS`].
    fills: VecDeque<(EntityKey, Timestamp)>,
}

/// The most prefetch fills kept for the predictor between two predictions; older ones are
/// dropped (a dropped fill only makes the model's idea of a copy's age a guess again).
const MAX_FILLS: usize = 65_536;

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
            planner: Planner::new(cfg.planner.clone()),
            breaker: Breaker::new(cfg.breaker),
            waiters: FxHashMap::default(),
            tracked: FxHashMap::default(),
            last_activity: None,
            last_event: None,
            fills: VecDeque::new(),
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
        // A panic while holding the lock cannot leave the planner half-updated in a way that
        // breaks safety (every entry is checked against the cache's versions), so recover.
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The counters.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Replaces the predictor (hot swap). Events in progress finish with the old one.
    pub fn set_predictor(&self, predictor: Arc<dyn Predictor>) {
        let mut p = self
            .inner
            .predictor
            .write()
            .unwrap_or_else(|p| p.into_inner());
        *p = predictor;
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
        let (queue_depth, in_flight, retries, breaker) = {
            let s = self.state();
            let now = self.inner.clock.now();
            (
                s.planner.pending_len(),
                s.planner.in_flight_len(),
                s.planner.stats().retries,
                s.breaker.state(now),
            )
        };
        let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Snapshot {
            counters: vec![
                ("events", c(&m.events)),
                ("predictions", c(&m.predictions)),
                ("predictor_errors", c(&m.predictor_errors)),
                ("prefetches_issued", c(&m.prefetches_issued)),
                ("prefetches_skipped_cached", c(&m.prefetches_skipped_cached)),
                ("prefetches_used", c(&m.prefetches_used)),
                ("prefetches_wasted", c(&m.prefetches_wasted)),
                ("prefetch_failures", c(&m.prefetch_failures)),
                ("hits", c(&m.hits)),
                ("joined", c(&m.joined)),
                ("misses", c(&m.misses)),
                ("store_loads", c(&m.store_loads)),
                ("cache_errors", c(&m.cache_errors)),
                ("invalidations", c(&m.invalidations)),
                ("predict_micros", c(&m.predict_micros)),
            ],
            queue_depth,
            in_flight,
            retries,
            breaker,
        }
    }

    /// What the planner did with the predictions so far (offered, dropped and why, issued).
    pub fn planner_stats(&self) -> PlannerStats {
        self.state().planner.stats().clone()
    }

    /// Processes one event: invalidates what it wrote, asks the predictor and schedules the
    /// predicted loads. Returns the number of predictions offered. Acknowledge the event after
    /// this returns.
    ///
    /// # Cancel safety
    /// Cancelling may skip the prediction of this event; invalidations already sent stay applied.
    pub async fn on_event(&self, event: &Event) -> usize {
        self.on_events(std::slice::from_ref(event)).await
    }

    /// Processes several events, in order, as [`Prefetcher::on_event`] would one after the other,
    /// but with fewer round trips: the invalidations of all of them (the highest version of each
    /// written entity) are sent at once, before any of their predictions, and the scheduler is
    /// woken once. Returns the number of predictions offered. Acknowledge the events after this
    /// returns.
    ///
    /// Applying every invalidation of the batch first is safe: a floor only ever rises, so
    /// sending it earlier can only refuse more stale writes, never admit one.
    ///
    /// A [blocking](Predictor::is_blocking) predictor (an in-process model) predicts the whole
    /// batch on a thread of the blocking pool, not on an async worker; an asynchronous one is
    /// awaited event by event, with the timeout.
    ///
    /// # Cancel safety
    /// Cancelling may skip the predictions of some events; invalidations already sent stay
    /// applied.
    pub async fn on_events(&self, events: &[Event]) -> usize {
        let m = &self.inner.metrics;
        m.events.fetch_add(events.len() as u64, Ordering::Relaxed);
        self.invalidate_written(events).await;
        let predictor = self.predictor();
        let (offered, woke) = if predictor.is_blocking() {
            self.on_events_off_the_runtime(events, predictor).await
        } else {
            let started = std::time::Instant::now();
            let r = self.on_events_each(events).await;
            self.count_predict_time(started);
            r
        };
        if woke {
            self.inner.wake.notify_one();
        }
        offered
    }

    /// [`Prefetcher::on_events`] with an asynchronous predictor: ticks and predictions awaited
    /// one after the other. Returns the predictions offered and whether any prediction
    /// succeeded.
    async fn on_events_each(&self, events: &[Event]) -> (usize, bool) {
        self.tell_fills(&*self.predictor());
        let Some(every) = self.tick_every() else {
            return self.predict_each(events).await;
        };
        let (mut offered, mut woke, mut start) = (0, false, 0);
        while start < events.len() {
            let (end, quiet_until) = self.next_split(events, start, every);
            if let Some(until) = quiet_until {
                self.tick_quiet(until).await;
            }
            let (n, w) = self.predict_each(&events[start..end]).await;
            offered += n;
            woke |= w;
            self.end_split(&events[start..end]);
            start = end;
        }
        (offered, woke)
    }

    /// [`Prefetcher::on_events`] with a [blocking](Predictor::is_blocking) predictor: the
    /// ticks of the quiet spells and the predictions of the whole batch run on one thread of
    /// the runtime's blocking pool ([`tokio::task::spawn_blocking`], which a current-thread
    /// runtime has too), so that the model's CPU work does not hold up the async workers (cache
    /// reads, acks), and a batch costs one hand-over to that thread, not one per quiet spell.
    ///
    /// Cancelling the returned future lets the batch finish and offers its results regardless.
    async fn on_events_off_the_runtime(
        &self,
        events: &[Event],
        predictor: Arc<dyn Predictor>,
    ) -> (usize, bool) {
        let events = events.to_vec();
        self.off_the_runtime(move |this| {
            let started = std::time::Instant::now();
            let r = this.on_events_blocking(&events, &*predictor);
            this.count_predict_time(started);
            r
        })
        .await
        .unwrap_or((0, false))
    }

    /// Runs `f` on a thread of the runtime's blocking pool and returns what it returns; a
    /// panic in it is resumed here. `None` when the runtime is shutting down.
    async fn off_the_runtime<R: Send + 'static>(
        &self,
        f: impl FnOnce(Prefetcher) -> R + Send + 'static,
    ) -> Option<R> {
        let this = self.clone();
        match tokio::task::spawn_blocking(move || f(this)).await {
            Ok(r) => Some(r),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => None,
        }
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

    /// The body of [`Prefetcher::on_events_off_the_runtime`], on the calling thread.
    fn on_events_blocking(&self, events: &[Event], predictor: &dyn Predictor) -> (usize, bool) {
        self.tell_fills(predictor);
        let Some(every) = self.tick_every() else {
            return self.predict_blocking(events, predictor);
        };
        let (mut offered, mut woke, mut start) = (0, false, 0);
        while start < events.len() {
            let (end, quiet_until) = self.next_split(events, start, every);
            if let Some(until) = quiet_until {
                self.tick_quiet_blocking(until, every, predictor);
            }
            let (n, w) = self.predict_blocking(&events[start..end], predictor);
            offered += n;
            woke |= w;
            self.end_split(&events[start..end]);
            start = end;
        }
        (offered, woke)
    }

    /// Tells `predictor` which prefetches filled the cache since it was last told.
    fn tell_fills(&self, predictor: &dyn Predictor) {
        let fills = std::mem::take(&mut self.state().fills);
        for (key, at) in &fills {
            predictor.filled(key, *at);
        }
    }

    /// How often quiet spells are ticked ([`PrefetcherConfig::tick`]); `None`: never.
    fn tick_every(&self) -> Option<Duration> {
        self.inner.cfg.tick.filter(|d| !d.is_zero())
    }

    /// With ticks, a batch is split where a quiet spell of event time lies between two of its
    /// events, and the spell is ticked before the events after it, as if the events had come
    /// one by one. Returns the end of the split that starts at `start`, and until when the
    /// quiet spell before it is to be ticked (`None`: not at all).
    fn next_split(
        &self,
        events: &[Event],
        start: usize,
        every: Duration,
    ) -> (usize, Option<Timestamp>) {
        if self.inner.event_time.load(Ordering::Relaxed) {
            let mut end = start + 1;
            while end < events.len() && events[end].time.since(events[end - 1].time) <= every {
                end += 1;
            }
            (end, Some(events[start].time))
        } else if self.state().last_activity.is_some() {
            (events.len(), Some(self.inner.clock.now()))
        } else {
            // The first event, alone: it tells whether the clock follows events.
            (start + 1, None)
        }
    }

    /// Records the activity of a split of events that was predicted (for the next ticks).
    fn end_split(&self, split: &[Event]) {
        let last = if self.inner.event_time.load(Ordering::Relaxed) {
            split
                .last()
                .map_or_else(|| self.inner.clock.now(), |e| e.time)
        } else {
            self.inner.clock.now()
        };
        let latest = split.iter().map(|e| e.time).max();
        let mut s = self.state();
        s.last_activity = Some(s.last_activity.map_or(last, |l| l.max(last)));
        s.last_event = s.last_event.max(latest);
    }

    /// Ticks the predictor ([`Predictor::tick`]) in the quiet spell before `until`: once
    /// [`PrefetcherConfig::tick`] has passed without an event, and every `tick` after that
    /// (the last [`MAX_QUIET_TICKS`] of a long spell), offering what comes due. With a clock
    /// that follows the events, each tick moves it, and the loads due are issued as they fall
    /// due. Does nothing without a tick setting or before the first event. A
    /// [blocking](Predictor::is_blocking) predictor is ticked on the blocking pool.
    pub async fn tick_quiet(&self, until: Timestamp) {
        let Some(every) = self.tick_every() else {
            return;
        };
        let predictor = self.predictor();
        if predictor.is_blocking() {
            self.off_the_runtime(move |this| this.tick_quiet_blocking(until, every, &*predictor))
                .await;
            return;
        }
        while let Some((at, allowed)) = self.begin_tick(until, every) {
            if !allowed {
                continue;
            }
            let result = match tokio::time::timeout(
                self.inner.cfg.predict_timeout,
                predictor.tick(at),
            )
            .await
            {
                Ok(r) => r,
                Err(_) => Err(PredictError::Timeout),
            };
            self.end_tick(at, until, every, result);
        }
    }

    /// [`Prefetcher::tick_quiet`] with a blocking predictor, on the calling thread (no timeout:
    /// a computation in progress cannot be abandoned).
    fn tick_quiet_blocking(&self, until: Timestamp, every: Duration, predictor: &dyn Predictor) {
        while let Some((at, allowed)) = self.begin_tick(until, every) {
            if !allowed {
                continue;
            }
            // A blocking predictor that does not tick synchronously does not tick.
            let result = predictor
                .tick_blocking(at)
                .unwrap_or_else(|| Ok(Forecast::default()));
            self.end_tick(at, until, every, result);
        }
    }

    /// Starts the next tick of the quiet spell before `until`, if one is due: moves a clock
    /// that follows the events to it and issues the loads due by then. Returns its time and
    /// whether the breaker lets the predictor be asked; `None` when the spell is over.
    fn begin_tick(&self, until: Timestamp, every: Duration) -> Option<(Timestamp, bool)> {
        let at = {
            let mut s = self.state();
            let last = s.last_activity?;
            let last = last.max(until.minus(every.saturating_mul(MAX_QUIET_TICKS)));
            let at = last.plus(every);
            if at >= until {
                return None;
            }
            // A model knows the time only from its events: a wall clock far ahead of them
            // (a log of long ago fed live) would have it predict, and learn from, windows
            // it cannot judge.
            let span = every.saturating_mul(MAX_QUIET_TICKS);
            if s.last_event.is_none_or(|e| at.since(e) > span) {
                return None;
            }
            s.last_activity = Some(at);
            at
        };
        if self.inner.clock.observe_event(at) {
            self.inner.event_time.store(true, Ordering::Relaxed);
        }
        self.issue_due_in_event_time();
        let now = self.inner.clock.now();
        let allowed = self.state().breaker.allow(now);
        Some((at, allowed))
    }

    /// Ends the tick at `at`: offers what it predicted, issues what is due, and with a clock
    /// that follows the events, steps it through the loads due before the next tick.
    fn end_tick(
        &self,
        at: Timestamp,
        until: Timestamp,
        every: Duration,
        result: Result<Forecast, PredictError>,
    ) {
        if self.take_forecast(None, result).is_some() {
            self.inner.wake.notify_one();
        }
        self.issue_due_in_event_time();
        if self.inner.event_time.load(Ordering::Relaxed) {
            // Nothing else moves a clock that follows the events before the next tick or
            // event: step it through the loads that fall due in between.
            self.step_through_due(until.min(at.plus(every)));
        }
    }

    /// With a clock that follows the events, moves it to each load that falls due before
    /// `until` and issues it then, as the replay simulator does in virtual time.
    fn step_through_due(&self, until: Timestamp) {
        loop {
            let due = self.state().planner.next_due();
            let Some(due) = due.filter(|d| *d < until) else {
                return;
            };
            if !self.inner.clock.observe_event(due) && due <= self.inner.clock.now() {
                // Due already and still not issued (budget or concurrency): leave it for later.
                self.issue_due_in_event_time();
                return;
            }
            self.issue_due_in_event_time();
        }
    }

    /// Predicts `events` with an asynchronous predictor, one after the other; returns the
    /// predictions offered and whether any prediction succeeded.
    async fn predict_each(&self, events: &[Event]) -> (usize, bool) {
        let mut offered = 0;
        let mut woke = false;
        for (i, event) in events.iter().enumerate() {
            if i > 0 && i % YIELD_EVERY == 0 {
                // Predicting is CPU work: let the worker run other tasks (cache reads, acks)
                // now and then, so that a large batch does not delay them.
                tokio::task::yield_now().await;
            }
            let offers = self.predict_and_offer(event).await;
            self.issue_due_in_event_time();
            if let Some(n) = offers {
                offered += n;
                woke = true;
            }
        }
        (offered, woke)
    }

    /// Predicts `events` with a blocking predictor, on the calling thread, and offers the
    /// predictions in order. The breaker is asked as for [`Prefetcher::predict_and_offer`]
    /// event by event, but while it is closed all the remaining events go to the predictor in
    /// one batch ([`Predictor::predict_batch_blocking`]); if failures in that batch open it, the
    /// answers after the one that opened it are dropped, as if refused. A blocking computation
    /// cannot be abandoned, so there is no timeout.
    fn predict_blocking(&self, events: &[Event], predictor: &dyn Predictor) -> (usize, bool) {
        let mut offered = 0;
        let mut woke = false;
        let mut i = 0;
        while i < events.len() {
            let now = self.inner.clock.now();
            let take = {
                let mut s = self.state();
                if s.breaker.state(now) == BreakerState::Closed {
                    events.len() - i
                } else if s.breaker.allow(now) {
                    1
                } else {
                    0
                }
            };
            if take == 0 {
                self.advance_to(&events[i]);
                self.issue_due_in_event_time();
                i += 1;
                continue;
            }
            let round = &events[i..i + take];
            i += take;
            let deadline = now.plus(self.inner.cfg.predict_timeout);
            let reqs: Vec<PredictRequest<'_>> = round
                .iter()
                .map(|event| PredictRequest {
                    event,
                    observe: Observe::Learn,
                    deadline: Some(deadline),
                })
                .collect();
            let mut results = predictor
                .predict_batch_blocking(&reqs)
                .unwrap_or_default()
                .into_iter();
            for event in round {
                self.advance_to(event);
                let result = results.next().unwrap_or_else(|| {
                    Err(PredictError::Internal(format!(
                        "{} gave fewer answers than requests",
                        predictor.name()
                    )))
                });
                if let Some(n) = self.take_forecast(Some(event), result) {
                    offered += n;
                    woke = true;
                }
                self.issue_due_in_event_time();
                if self.state().breaker.state(self.inner.clock.now()) != BreakerState::Closed {
                    // Failures opened the breaker: it would have refused the rest.
                    break;
                }
            }
        }
        (offered, woke)
    }

    /// Sends the invalidations of `events`: for each written entity its highest version, all at
    /// once (a multiplexed cache client pipelines them).
    async fn invalidate_written(&self, events: &[Event]) {
        let mut floors: Vec<(EntityKey, Version)> = Vec::new();
        {
            let mut index: FxHashMap<EntityKey, usize> = FxHashMap::default();
            for mu in events.iter().flat_map(|e| &e.mutations) {
                let key = mu.key();
                match index.get(&key) {
                    Some(&i) => floors[i].1 = floors[i].1.max(mu.version),
                    None => {
                        index.insert(key.clone(), floors.len());
                        floors.push((key, mu.version));
                    }
                }
            }
        }
        if floors.is_empty() {
            return;
        }
        {
            let mut s = self.state();
            for (key, version) in &floors {
                self.forget_tracked_in(&mut s, key, Some(*version));
            }
        }
        let cache = &self.inner.cache;
        let results = futures::future::join_all(
            floors
                .iter()
                .map(|(key, version)| cache.invalidate(key, *version)),
        )
        .await;
        let m = &self.inner.metrics;
        for ((key, _), r) in floors.iter().zip(results) {
            match r {
                Ok(()) => {
                    m.invalidations.fetch_add(1, Ordering::Relaxed);
                }
                Err(error) => {
                    m.cache_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(message = "Invalidation failed.", %error, entity = %key);
                }
            }
        }
    }

    /// Asks the predictor about `event` (through the breaker, with the deadline) and offers the
    /// predictions to the planner. `None` when the breaker is open or the prediction failed.
    async fn predict_and_offer(&self, event: &Event) -> Option<usize> {
        self.advance_to(event);
        let now = self.inner.clock.now();
        if !self.state().breaker.allow(now) {
            return None;
        }
        let predictor = self.predictor();
        let deadline = now.plus(self.inner.cfg.predict_timeout);
        let req = PredictRequest {
            event,
            observe: Observe::Learn,
            deadline: Some(deadline),
        };
        let result = match tokio::time::timeout(
            self.inner.cfg.predict_timeout,
            predictor.predict(req),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(PredictError::Timeout),
        };
        self.take_forecast(Some(event), result)
    }

    /// Tells the clock the time of `event` ([`Clock::observe_event`]), before its predictions
    /// are offered. A clock that follows the events moves only here; then the loads that become
    /// due are issued event by event ([`Prefetcher::issue_due_in_event_time`]), as
    /// [`Prefetcher::run`] would issue them when woken: a batch of events may span hours of event
    /// time, and waiting for its end would let the windows of predictions made early in the
    /// batch pass unloaded.
    fn advance_to(&self, event: &Event) {
        if self.inner.clock.observe_event(event.time) {
            self.inner.event_time.store(true, Ordering::Relaxed);
        }
    }

    /// With a clock that follows the events (once [`Prefetcher::advance_to`] has moved it),
    /// issues the loads due now in the background. Called after each event's predictions are
    /// offered, so that a load due at once is not left for a later event, by which time its
    /// window may have passed.
    fn issue_due_in_event_time(&self) {
        if !self.inner.event_time.load(Ordering::Relaxed) {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            // Outside a runtime: the scheduler's next tick issues them.
            return;
        };
        for batch in self.poll_due(self.inner.clock.now()) {
            // Counted as running from now, so that `drain` waits for it even before it starts.
            self.inner.loads_running.fetch_add(1, Ordering::AcqRel);
            let this = self.clone();
            handle.spawn(async move { this.run_load(batch).await });
        }
    }

    /// Takes the batches due at `now` from the planner (skipping entities the cache holds fresh).
    fn poll_due(&self, now: Timestamp) -> Vec<Batch<EntityKey>> {
        let mut s = self.state();
        let State {
            planner, tracked, ..
        } = &mut *s;
        planner.poll(now, &mut |k, at| {
            tracked.get(k).is_some_and(|t| t.expires > at)
        })
    }

    /// Records the outcome of the prediction of `event` with the breaker and offers its
    /// predictions to the planner. `None` when the prediction failed.
    fn take_forecast(
        &self,
        event: Option<&Event>,
        result: Result<Forecast, PredictError>,
    ) -> Option<usize> {
        let now = self.inner.clock.now();
        let mut s = self.state();
        match result {
            Ok(forecast) => {
                s.breaker.record(now, true);
                let n = forecast.entities.len();
                for p in forecast.entities {
                    s.planner.offer(
                        now,
                        Offer {
                            key: p.entity,
                            confidence: p.confidence,
                            expected_at: p.expected_at,
                            latest: p.latest,
                            relation: p.relation,
                        },
                    );
                }
                drop(s);
                self.inner
                    .metrics
                    .predictions
                    .fetch_add(n as u64, Ordering::Relaxed);
                Some(n)
            }
            Err(error) => {
                s.breaker.record(now, false);
                drop(s);
                self.inner
                    .metrics
                    .predictor_errors
                    .fetch_add(1, Ordering::Relaxed);
                let event = event.map_or("(tick)", |e| e.id.as_str());
                tracing::warn!(message = "Prediction failed.", %error, event);
                None
            }
        }
    }

    fn forget_tracked_in(&self, s: &mut State, key: &EntityKey, below: Option<Version>) {
        if let Some(t) = s.tracked.get(key).copied()
            && below.is_none_or(|v| t.version < v)
        {
            s.tracked.remove(key);
            if t.prefetched_unread {
                self.inner
                    .metrics
                    .prefetches_wasted
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn track(&self, s: &mut State, key: EntityKey, t: Tracked) {
        if s.tracked.len() >= self.inner.cfg.max_tracked {
            let now = self.inner.clock.now();
            let mut wasted = 0;
            s.tracked.retain(|_, v| {
                let keep = v.expires > now;
                if !keep && v.prefetched_unread {
                    wasted += 1;
                }
                keep
            });
            if s.tracked.len() >= self.inner.cfg.max_tracked {
                s.tracked.clear();
            }
            self.inner
                .metrics
                .prefetches_wasted
                .fetch_add(wasted, Ordering::Relaxed);
        }
        if let Some(old) = s.tracked.insert(key, t)
            && old.prefetched_unread
            && old.expires > self.inner.clock.now()
        {
            self.inner
                .metrics
                .prefetches_wasted
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Reads `key` at `min_version` or newer: from the cache if it holds a current version, else by
    /// joining a load in flight, else from the store (filling the cache).
    ///
    /// # Errors
    /// [`ReadError`] when the store fails, lacks the entity, or only has an older version.
    ///
    /// # Cancel safety
    /// Cancel safe: a cancelled reader leaves any load it started to finish and fill the cache.
    pub async fn get(
        &self,
        key: &EntityKey,
        min_version: Version,
    ) -> Result<(Entry, ReadOutcome), ReadError> {
        let m = &self.inner.metrics;
        match self.inner.cache.get(key).await {
            Ok(Some(e)) if e.version >= min_version => {
                let mut s = self.state();
                self.record_hit(&mut s, key);
                return Ok((e, ReadOutcome::Hit));
            }
            Ok(_) => {}
            Err(error) => {
                m.cache_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(message = "Cache read failed; reading the store.", %error, entity = %key);
            }
        }
        self.read_missed(key, min_version).await
    }

    /// Reads several entities at `min_version` or newer, as [`Prefetcher::get`] would each, but
    /// with one cache round trip for all of them ([`Cache::get_many`]). A miss joins the load of
    /// its entity in flight if there is one; the other misses are loaded with one store batch
    /// per kind ([`Store::load_batch`]), and fill the cache. The results are in the order of
    /// `keys`.
    ///
    /// # Errors
    /// Each result fails as [`Prefetcher::get`] would for that entity.
    ///
    /// # Cancel safety
    /// Cancel safe: a cancelled reader leaves any load it started to finish and fill the cache.
    pub async fn get_many(
        &self,
        keys: &[EntityKey],
        min_version: Version,
    ) -> Vec<Result<(Entry, ReadOutcome), ReadError>> {
        let m = &self.inner.metrics;
        let cached = match self.inner.cache.get_many(keys).await {
            Ok(v) if v.len() == keys.len() => v,
            Ok(v) => {
                m.cache_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    message = "Cache returned the wrong number of entries; reading the store.",
                    got = v.len(),
                    keys = keys.len()
                );
                vec![None; keys.len()]
            }
            Err(error) => {
                m.cache_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(message = "Cache read failed; reading the store.", %error, entities = keys.len());
                vec![None; keys.len()]
            }
        };
        let mut out: Vec<Option<Result<(Entry, ReadOutcome), ReadError>>> =
            Vec::with_capacity(keys.len());
        let mut missed = Vec::new();
        {
            let mut s = self.state();
            for (i, (key, entry)) in keys.iter().zip(cached).enumerate() {
                match entry {
                    Some(e) if e.version >= min_version => {
                        self.record_hit(&mut s, key);
                        out.push(Some(Ok((e, ReadOutcome::Hit))));
                    }
                    _ => {
                        missed.push(i);
                        out.push(None);
                    }
                }
            }
        }
        if !missed.is_empty() {
            let refs: Vec<&EntityKey> = missed.iter().map(|&i| &keys[i]).collect();
            let loads = self.read_missed_many(&refs, min_version).await;
            for (i, r) in missed.into_iter().zip(loads) {
                out[i] = Some(r);
            }
        }
        out.into_iter()
            .zip(keys)
            .map(|(r, key)| r.unwrap_or_else(|| Err(ReadError::NotFound(key.clone()))))
            .collect()
    }

    /// Counts a cache hit on `key` (and the use of its prefetch, if it was prefetched).
    fn record_hit(&self, s: &mut State, key: &EntityKey) {
        let m = &self.inner.metrics;
        m.hits.fetch_add(1, Ordering::Relaxed);
        s.planner.on_read();
        if let Some(t) = s.tracked.get_mut(key)
            && t.prefetched_unread
        {
            t.prefetched_unread = false;
            m.prefetches_used.fetch_add(1, Ordering::Relaxed);
            let relation = t.relation;
            s.planner.on_prefetch_used(relation);
        }
    }

    /// The read path after a cache miss: join a load in flight, or load from the store and fill
    /// the cache.
    async fn read_missed(
        &self,
        key: &EntityKey,
        min_version: Version,
    ) -> Result<(Entry, ReadOutcome), ReadError> {
        match self.begin_read(key) {
            Some(rx) => self.await_joined(key, rx, min_version).await,
            None => {
                let result = self.load_and_fill(key).await;
                self.end_read(key, result, min_version)
            }
        }
    }

    /// The read path after cache misses on several entities: each joins a load in flight where
    /// there is one; the others are loaded with one store batch per kind, and fill the cache.
    async fn read_missed_many(
        &self,
        keys: &[&EntityKey],
        min_version: Version,
    ) -> Vec<Result<(Entry, ReadOutcome), ReadError>> {
        let mut joined = Vec::new();
        let mut own: Vec<(usize, &EntityKey)> = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            match self.begin_read(key) {
                Some(rx) => joined.push((i, *key, rx)),
                None => own.push((i, *key)),
            }
        }
        // One store batch per kind, in the order kinds first appear.
        let mut kinds: Vec<Vec<(usize, &EntityKey)>> = Vec::new();
        for (i, key) in own {
            match kinds.iter_mut().find(|g| g[0].1.kind == key.kind) {
                Some(g) => g.push((i, key)),
                None => kinds.push(vec![(i, key)]),
            }
        }
        let loads = futures::future::join_all(kinds.into_iter().map(|group| async move {
            let ks: Vec<&EntityKey> = group.iter().map(|(_, k)| *k).collect();
            let results = self.load_many_and_fill(&ks).await;
            group
                .into_iter()
                .zip(results)
                .map(|((i, key), r)| (i, self.end_read(key, r, min_version)))
                .collect::<Vec<_>>()
        }));
        let waits =
            futures::future::join_all(joined.into_iter().map(|(i, key, rx)| async move {
                (i, self.await_joined(key, rx, min_version).await)
            }));
        let (loaded, waited) = futures::future::join(loads, waits).await;
        let mut out: Vec<Option<Result<(Entry, ReadOutcome), ReadError>>> =
            (0..keys.len()).map(|_| None).collect();
        for (i, r) in loaded.into_iter().flatten().chain(waited) {
            out[i] = Some(r);
        }
        out.into_iter()
            .zip(keys)
            .map(|(r, key)| r.unwrap_or_else(|| Err(ReadError::NotFound((*key).clone()))))
            .collect()
    }

    /// Joins the load in flight for `key` (returns its receiver), or registers a new demand
    /// load that the caller must run and finish with [`Prefetcher::end_read`] (returns `None`).
    fn begin_read(
        &self,
        key: &EntityKey,
    ) -> Option<oneshot::Receiver<Result<Option<Entry>, ReadError>>> {
        let now = self.inner.clock.now();
        let mut s = self.state();
        s.planner.on_read();
        let (flight, new) = s.planner.begin_demand(now, key);
        if new {
            s.waiters.insert(key.clone(), (flight.id, Vec::new()));
            None
        } else {
            let (tx, rx) = oneshot::channel();
            let entry = s
                .waiters
                .entry(key.clone())
                .or_insert_with(|| (flight.id, Vec::new()));
            entry.1.push(tx);
            Some(rx)
        }
    }

    /// Waits for the load `key` joined; falls back to a store read of its own when that load
    /// fails or brings an older version than `min_version`.
    async fn await_joined(
        &self,
        key: &EntityKey,
        rx: oneshot::Receiver<Result<Option<Entry>, ReadError>>,
        min_version: Version,
    ) -> Result<(Entry, ReadOutcome), ReadError> {
        if let Ok(Ok(Some(e))) = rx.await
            && e.version >= min_version
        {
            self.inner.metrics.joined.fetch_add(1, Ordering::Relaxed);
            return Ok((e, ReadOutcome::Joined));
        }
        // The shared load failed or brought an older version: read the store ourselves.
        self.load_direct(key, min_version)
            .await
            .map(|e| (e, ReadOutcome::Miss))
    }

    /// Ends the demand load of `key` started by [`Prefetcher::begin_read`]: hands its result to
    /// the readers that joined it, and turns it into this reader's answer.
    fn end_read(
        &self,
        key: &EntityKey,
        result: Result<Option<Entry>, ReadError>,
        min_version: Version,
    ) -> Result<(Entry, ReadOutcome), ReadError> {
        {
            let mut s = self.state();
            let load = s.waiters.get(key).map(|w| w.0);
            if let Some(load) = load {
                s.planner.end_demand(key, load);
                if let Some((_, waiters)) = s.waiters.remove(key) {
                    for w in waiters {
                        let _ = w.send(result.clone());
                    }
                }
            }
        }
        self.inner.metrics.misses.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(Some(e)) if e.version >= min_version => Ok((e, ReadOutcome::Miss)),
            Ok(Some(e)) => Err(ReadError::VersionUnavailable {
                key: key.clone(),
                have: e.version,
                want: min_version,
            }),
            Ok(None) => Err(ReadError::NotFound(key.clone())),
            Err(e) => Err(e),
        }
    }

    async fn load_direct(&self, key: &EntityKey, min_version: Version) -> Result<Entry, ReadError> {
        self.inner.metrics.misses.fetch_add(1, Ordering::Relaxed);
        match self.load_and_fill(key).await? {
            Some(e) if e.version >= min_version => Ok(e),
            Some(e) => Err(ReadError::VersionUnavailable {
                key: key.clone(),
                have: e.version,
                want: min_version,
            }),
            None => Err(ReadError::NotFound(key.clone())),
        }
    }

    async fn load_and_fill(&self, key: &EntityKey) -> Result<Option<Entry>, ReadError> {
        self.inner
            .metrics
            .store_loads
            .fetch_add(1, Ordering::Relaxed);
        let loaded =
            tokio::time::timeout(self.inner.cfg.store_timeout, self.inner.store.load(key)).await;
        let entry = match loaded {
            Err(_) => return Err(ReadError::Timeout(key.clone())),
            Ok(Err(e)) => return Err(ReadError::Store(e)),
            Ok(Ok(e)) => e,
        };
        if let Some(e) = &entry {
            let ttl = self.inner.cfg.demand_ttl;
            match self.inner.cache.put(key, e.clone(), ttl).await {
                Ok(_) => {
                    let expires = self.inner.clock.now().plus(ttl);
                    let mut s = self.state();
                    self.track(
                        &mut s,
                        key.clone(),
                        Tracked {
                            version: e.version,
                            expires,
                            prefetched_unread: false,
                            relation: Relation::Same,
                        },
                    );
                }
                Err(error) => {
                    self.inner
                        .metrics
                        .cache_errors
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(message = "Cache fill failed.", %error, entity = %key);
                }
            }
        }
        Ok(entry)
    }

    /// Loads several entities of one kind with one store batch, and fills the cache with those
    /// found (the writes go out together). The results are in the order of `keys`.
    async fn load_many_and_fill(
        &self,
        keys: &[&EntityKey],
    ) -> Vec<Result<Option<Entry>, ReadError>> {
        let Some(first) = keys.first() else {
            return Vec::new();
        };
        if keys.len() == 1 {
            return vec![self.load_and_fill(first).await];
        }
        self.inner
            .metrics
            .store_loads
            .fetch_add(1, Ordering::Relaxed);
        let ids: Vec<SmolStr> = keys.iter().map(|k| k.id.clone()).collect();
        let loaded = tokio::time::timeout(
            self.inner.cfg.store_timeout,
            self.inner.store.load_batch(&first.kind, &ids),
        )
        .await;
        let entries = match loaded {
            Err(_) => {
                return keys
                    .iter()
                    .map(|k| Err(ReadError::Timeout((*k).clone())))
                    .collect();
            }
            Ok(Err(e)) => {
                return keys
                    .iter()
                    .map(|_| Err(ReadError::Store(e.clone())))
                    .collect();
            }
            Ok(Ok(entries)) if entries.len() != keys.len() => {
                let e = StoreError::Query(format!(
                    "store returned {} rows for {} ids",
                    entries.len(),
                    keys.len()
                ));
                return keys
                    .iter()
                    .map(|_| Err(ReadError::Store(e.clone())))
                    .collect();
            }
            Ok(Ok(entries)) => entries,
        };
        let ttl = self.inner.cfg.demand_ttl;
        let cache = &self.inner.cache;
        let puts = futures::future::join_all(keys.iter().zip(&entries).map(|(k, e)| async move {
            match e {
                Some(e) => Some(cache.put(k, e.clone(), ttl).await),
                None => None,
            }
        }))
        .await;
        let expires = self.inner.clock.now().plus(ttl);
        let mut failed = 0u64;
        {
            let mut s = self.state();
            for ((k, e), put) in keys.iter().zip(&entries).zip(puts) {
                match (e, put) {
                    (Some(e), Some(Ok(_))) => self.track(
                        &mut s,
                        (*k).clone(),
                        Tracked {
                            version: e.version,
                            expires,
                            prefetched_unread: false,
                            relation: Relation::Same,
                        },
                    ),
                    (_, Some(Err(error))) => {
                        failed += 1;
                        if failed == 1 {
                            tracing::warn!(message = "Cache fill failed.", %error, entity = %k);
                        }
                    }
                    _ => {}
                }
            }
        }
        if failed > 0 {
            self.inner
                .metrics
                .cache_errors
                .fetch_add(failed, Ordering::Relaxed);
        }
        entries.into_iter().map(Ok).collect()
    }

    /// Issues the loads that are due now and waits for them to finish. [`Prefetcher::run`] calls
    /// this in a loop; tests call it directly.
    pub async fn tick(&self) {
        let batches = self.poll_due(self.inner.clock.now());
        let loads: Vec<_> = batches.into_iter().map(|b| self.load_batch(b)).collect();
        futures::future::join_all(loads).await;
    }

    async fn load_batch(&self, batch: Batch<EntityKey>) {
        self.inner.loads_running.fetch_add(1, Ordering::AcqRel);
        self.run_load(batch).await;
    }

    /// Loads `batch`, counted in `loads_running` by the caller (and uncounted here when done).
    async fn run_load(&self, batch: Batch<EntityKey>) {
        if let Some(batch) = self.drop_cached(batch).await {
            self.load_from_store(batch).await;
        }
        if self.inner.loads_running.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.inner.idle.notify_waiters();
        }
    }

    /// Asks the cache for the entities of `batch` just before loading them, and ends the
    /// prefetch of those it holds already: a read filled them since they were planned, or
    /// another process sharing the cache (a replica, a consumer) did. This process's own record
    /// of what it cached is checked when the plans fall due; the cache itself is the only
    /// witness of what others wrote, and a round trip to it costs less than store rows. Returns
    /// what is left to load, if anything. When the cache fails, everything is loaded.
    async fn drop_cached(&self, mut batch: Batch<EntityKey>) -> Option<Batch<EntityKey>> {
        let keys: Vec<EntityKey> = batch.items.iter().map(|i| i.key.clone()).collect();
        let cached = tokio::time::timeout(
            self.inner.cfg.store_timeout,
            self.inner.cache.get_many(&keys),
        )
        .await;
        match cached {
            Ok(Ok(entries)) if entries.len() == keys.len() => {
                let mut left = Vec::with_capacity(batch.items.len());
                for (item, entry) in batch.items.drain(..).zip(entries) {
                    match entry {
                        Some(entry) => self.finish_cached(&item, entry),
                        None => left.push(item),
                    }
                }
                batch.items = left;
            }
            Ok(Ok(_)) => {}
            Ok(Err(error)) => {
                self.inner
                    .metrics
                    .cache_errors
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(message = "Cache check before a prefetch failed; loading.", %error);
            }
            Err(_) => {
                tracing::debug!(message = "Cache check before a prefetch timed out; loading.");
            }
        }
        (!batch.items.is_empty()).then_some(batch)
    }

    /// Ends the prefetch of `item`, which the cache held already (see
    /// [`Prefetcher::drop_cached`]): readers that joined it get the cached entry. It is not
    /// recorded as this process's prefetch (it is neither used nor wasted).
    fn finish_cached(&self, item: &BatchItem<EntityKey>, entry: Entry) {
        self.inner
            .metrics
            .prefetches_skipped_cached
            .fetch_add(1, Ordering::Relaxed);
        let waiters = {
            let mut s = self.state();
            s.planner.complete_cached(item);
            Self::take_waiters(&mut s, item)
        };
        for w in waiters {
            let _ = w.send(Ok(Some(entry.clone())));
        }
    }

    /// The readers waiting for the prefetch `item` (none if its load is no longer the one
    /// they joined), taken from `s`.
    fn take_waiters(s: &mut State, item: &BatchItem<EntityKey>) -> Vec<Waiter> {
        match s.waiters.get(&item.key) {
            Some((load, _)) if *load == item.load => {
                s.waiters.remove(&item.key).map_or_else(Vec::new, |w| w.1)
            }
            _ => Vec::new(),
        }
    }

    /// Loads `batch` from the store in one round trip and caches what it brings.
    async fn load_from_store(&self, batch: Batch<EntityKey>) {
        let m = &self.inner.metrics;
        m.prefetches_issued
            .fetch_add(batch.items.len() as u64, Ordering::Relaxed);
        m.store_loads.fetch_add(1, Ordering::Relaxed);
        let ids: Vec<SmolStr> = batch.items.iter().map(|i| i.key.id.clone()).collect();
        let result = tokio::time::timeout(
            self.inner.cfg.store_timeout,
            self.inner.store.load_batch(&batch.kind, &ids),
        )
        .await
        .unwrap_or_else(|_| Err(StoreError::Unavailable("timed out".into())));
        match result {
            Ok(entries) if entries.len() == batch.items.len() => {
                // The cache writes of a batch go out together (a multiplexed cache client
                // pipelines them) rather than one round trip after another.
                futures::future::join_all(
                    batch
                        .items
                        .iter()
                        .zip(entries)
                        .map(|(item, entry)| self.finish_item(item, Ok(entry))),
                )
                .await;
            }
            Ok(entries) => {
                let error = StoreError::Query(format!(
                    "store returned {} rows for {} ids",
                    entries.len(),
                    ids.len()
                ));
                for item in &batch.items {
                    self.finish_item(item, Err(error.clone())).await;
                }
            }
            Err(error) => {
                tracing::warn!(message = "Prefetch failed.", %error, kind = %batch.kind, entities = batch.items.len());
                for item in &batch.items {
                    self.finish_item(item, Err(error.clone())).await;
                }
            }
        }
    }

    async fn finish_item(
        &self,
        item: &BatchItem<EntityKey>,
        result: Result<Option<Entry>, StoreError>,
    ) {
        let now = self.inner.clock.now();
        let outcome: Result<Option<Entry>, ReadError> = match result {
            Ok(Some(entry)) => {
                let ttl = self
                    .state()
                    .planner
                    .complete(now, item, Ok(()))
                    .unwrap_or(self.inner.cfg.planner.min_ttl);
                match self.inner.cache.put(&item.key, entry.clone(), ttl).await {
                    Ok(_) => {
                        let mut s = self.state();
                        let t = Tracked {
                            version: entry.version,
                            expires: now.plus(ttl),
                            prefetched_unread: true,
                            relation: item.relation,
                        };
                        self.track(&mut s, item.key.clone(), t);
                        if s.fills.len() >= MAX_FILLS {
                            s.fills.pop_front();
                        }
                        s.fills.push_back((item.key.clone(), now));
                    }
                    Err(error) => {
                        self.inner
                            .metrics
                            .cache_errors
                            .fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(message = "Prefetch cache write failed.", %error, entity = %item.key);
                    }
                }
                Ok(Some(entry))
            }
            Ok(None) => {
                self.state()
                    .planner
                    .complete(now, item, Err(Failure::Permanent));
                Ok(None)
            }
            Err(error) => {
                self.inner
                    .metrics
                    .prefetch_failures
                    .fetch_add(1, Ordering::Relaxed);
                let failure = if error.is_transient() {
                    Failure::Transient
                } else {
                    Failure::Permanent
                };
                self.state().planner.complete(now, item, Err(failure));
                Err(ReadError::Store(error))
            }
        };
        let waiters = Self::take_waiters(&mut self.state(), item);
        for w in waiters {
            let _ = w.send(outcome.clone());
        }
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
                match s.planner.next_due() {
                    Some(due) if s.planner.has_ready() => {
                        due.since(now).min(Duration::from_millis(10))
                    }
                    Some(due) => due.since(now).min(Duration::from_secs(1)),
                    None if s.planner.has_ready() => Duration::from_millis(10),
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
                self.tick_quiet(self.inner.clock.now()).await;
            }
            let this = self.clone();
            tokio::spawn(async move { this.tick().await });
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
mod tests {
    #![allow(clippy::unwrap_used)] // a test: an unwrap that fails is a failed test

    use std::collections::HashMap;

    use async_trait::async_trait;
    use prescient_cache_mem::MemCache;
    use prescient_core::{EntityRef, EventClock, Mutation, Prediction, Relation, SystemClock};

    use super::*;

    /// A store of fixed versions that counts its round trips.
    #[derive(Debug, Default)]
    struct Rows {
        rows: HashMap<EntityKey, u64>,
        calls: AtomicU64,
    }

    #[async_trait]
    impl Store for Rows {
        async fn load_batch(
            &self,
            kind: &str,
            ids: &[SmolStr],
        ) -> Result<Vec<Option<Entry>>, StoreError> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            Ok(ids
                .iter()
                .map(|id| {
                    self.rows
                        .get(&EntityKey::new(kind, id.clone()))
                        .map(|v| Entry::new(Version(*v), "x"))
                })
                .collect())
        }
    }

    #[derive(Debug)]
    struct Nothing;

    #[async_trait]
    impl Predictor for Nothing {
        fn name(&self) -> &str {
            "nothing"
        }
        async fn predict(&self, _: PredictRequest<'_>) -> Result<Forecast, PredictError> {
            Ok(Forecast::default())
        }
    }

    fn prefetcher(rows: &[(&str, &str, u64)]) -> (Prefetcher, Arc<Rows>, Arc<MemCache>) {
        let store = Arc::new(Rows {
            rows: rows
                .iter()
                .map(|(k, i, v)| (EntityKey::new(*k, *i), *v))
                .collect(),
            calls: AtomicU64::new(0),
        });
        let cache = Arc::new(MemCache::new(100, Duration::from_secs(60)));
        let pf = Prefetcher::new(
            PrefetcherConfig::default(),
            Arc::new(SystemClock),
            Arc::new(Nothing),
            cache.clone(),
            store.clone(),
        );
        (pf, store, cache)
    }

    /// An in-process model: predicts entity `a/<event id>` for each event, keeps the ids it
    /// saw in order and the threads it ran on, and fails when told to.
    #[derive(Debug, Default)]
    struct InProcess {
        fail: bool,
        seen: Mutex<Vec<String>>,
        threads: Mutex<Vec<std::thread::ThreadId>>,
        fills: Mutex<Vec<EntityKey>>,
        /// How long each batch takes.
        work: Duration,
    }

    #[async_trait]
    impl Predictor for InProcess {
        fn name(&self) -> &str {
            "in-process"
        }
        async fn predict(&self, _: PredictRequest<'_>) -> Result<Forecast, PredictError> {
            Err(PredictError::Internal(
                "awaited, not called on a blocking thread".into(),
            ))
        }
        fn is_blocking(&self) -> bool {
            true
        }
        fn filled(&self, key: &EntityKey, _: Timestamp) {
            self.fills.lock().unwrap().push(key.clone());
        }
        fn predict_batch_blocking(
            &self,
            reqs: &[PredictRequest<'_>],
        ) -> Option<Vec<Result<Forecast, PredictError>>> {
            self.threads
                .lock()
                .unwrap()
                .push(std::thread::current().id());
            std::thread::sleep(self.work);
            Some(
                reqs.iter()
                    .map(|r| {
                        self.seen.lock().unwrap().push(r.event.id.to_string());
                        if self.fail {
                            return Err(PredictError::Unavailable("down".into()));
                        }
                        let mut f = Forecast::default();
                        f.entities.push(Prediction {
                            entity: EntityKey::new("a", r.event.id.clone()),
                            confidence: 0.9,
                            expected_at: r.event.time,
                            latest: r.event.time.plus(Duration::from_secs(60)),
                            event_type: None,
                            relation: Relation::Same,
                        });
                        Ok(f)
                    })
                    .collect(),
            )
        }
    }

    fn in_process(cfg: PrefetcherConfig, model: Arc<InProcess>) -> Prefetcher {
        Prefetcher::new(
            cfg,
            Arc::new(SystemClock),
            model,
            Arc::new(MemCache::new(100, Duration::from_secs(60))),
            Arc::new(Rows::default()),
        )
    }

    fn events(pf: &Prefetcher, ids: &[&str]) -> Vec<Event> {
        ids.iter()
            .map(|id| Event::new(*id, "t", pf.now()).with_entity(EntityRef::new("a", *id)))
            .collect()
    }

    async fn predicts_a_batch_off_the_runtime_in_order() {
        let model = Arc::new(InProcess::default());
        let pf = in_process(PrefetcherConfig::default(), model.clone());
        let offered = pf.on_events(&events(&pf, &["e1", "e2", "e3"])).await;
        assert_eq!(offered, 3);
        assert_eq!(pf.metrics().predictions.load(Ordering::Relaxed), 3);
        assert_eq!(pf.metrics().predictor_errors.load(Ordering::Relaxed), 0);
        assert_eq!(*model.seen.lock().unwrap(), ["e1", "e2", "e3"]);
        let threads = model.threads.lock().unwrap().clone();
        assert_eq!(threads.len(), 1, "one batch");
        assert_ne!(threads[0], std::thread::current().id());
        assert_eq!(pf.snapshot().queue_depth, 3);
    }

    #[tokio::test]
    async fn the_time_of_the_prediction_step_is_counted() {
        // In-process: each batch takes 20 ms on the blocking thread.
        let model = Arc::new(InProcess {
            work: Duration::from_millis(20),
            ..InProcess::default()
        });
        let pf = in_process(PrefetcherConfig::default(), model);
        let micros = |pf: &Prefetcher| {
            let snap = pf.snapshot();
            let c = snap.counters.iter().find(|(k, _)| *k == "predict_micros");
            c.map(|(_, v)| *v)
        };
        assert_eq!(micros(&pf), Some(0));
        pf.on_events(&events(&pf, &["e1", "e2"])).await;
        pf.on_events(&events(&pf, &["e3"])).await;
        assert!(micros(&pf).unwrap() >= 40_000, "{:?}", micros(&pf));
        // Awaited: a remote predictor that answers after 20 ms, event by event.
        #[derive(Debug)]
        struct Remote;
        #[async_trait]
        impl Predictor for Remote {
            fn name(&self) -> &str {
                "remote"
            }
            async fn predict(&self, _: PredictRequest<'_>) -> Result<Forecast, PredictError> {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok(Forecast::default())
            }
        }
        let pf = Prefetcher::new(
            PrefetcherConfig::default(),
            Arc::new(SystemClock),
            Arc::new(Remote),
            Arc::new(MemCache::new(100, Duration::from_secs(60))),
            Arc::new(Rows::default()),
        );
        pf.on_events(&events(&pf, &["e1", "e2"])).await;
        assert!(micros(&pf).unwrap() >= 40_000, "{:?}", micros(&pf));
    }

    #[tokio::test]
    async fn a_blocking_predictor_predicts_a_batch_off_a_current_thread_runtime() {
        predicts_a_batch_off_the_runtime_in_order().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_blocking_predictor_predicts_a_batch_off_a_multi_thread_runtime() {
        predicts_a_batch_off_the_runtime_in_order().await;
    }

    #[tokio::test]
    async fn failures_in_a_blocking_batch_open_the_breaker_and_the_rest_is_refused() {
        let model = Arc::new(InProcess {
            fail: true,
            ..InProcess::default()
        });
        let cfg = PrefetcherConfig {
            breaker: BreakerConfig {
                failure_threshold: 2,
                open_for: Duration::from_secs(3600),
            },
            ..PrefetcherConfig::default()
        };
        let pf = in_process(cfg, model.clone());
        let offered = pf.on_events(&events(&pf, &["e1", "e2", "e3", "e4"])).await;
        assert_eq!(offered, 0);
        assert_eq!(pf.metrics().predictor_errors.load(Ordering::Relaxed), 2);
        assert_eq!(pf.snapshot().breaker, BreakerState::Open);
        let asked = model.seen.lock().unwrap().len();
        pf.on_events(&events(&pf, &["e5", "e6"])).await;
        assert_eq!(
            model.seen.lock().unwrap().len(),
            asked,
            "the open breaker refuses"
        );
        assert_eq!(pf.metrics().predictor_errors.load(Ordering::Relaxed), 2);
        assert_eq!(pf.metrics().events.load(Ordering::Relaxed), 6);
    }

    #[tokio::test]
    async fn the_predictor_is_told_which_prefetches_filled_the_cache() {
        let model = Arc::new(InProcess::default());
        let store = rows_a(&["e1", "e2"]);
        let pf = Prefetcher::new(
            PrefetcherConfig::default(),
            Arc::new(EventClock::default()),
            model.clone(),
            Arc::new(MemCache::new(100, Duration::from_secs(60))),
            store,
        );
        // Each event predicts `a/<its id>` within a minute; `a/e3` has no row, so its prefetch
        // fills nothing.
        let start = Timestamp::from_secs(1_680_000_000);
        let hour = Duration::from_secs(3600);
        pf.on_events(&spaced(&["e1", "e2", "e3"], start, hour))
            .await;
        pf.drain().await;
        assert_eq!(pf.metrics().prefetches_issued.load(Ordering::Relaxed), 3);
        let before = model.fills.lock().unwrap().len();
        pf.on_events(&spaced(&["e4"], start.plus(hour * 3), hour))
            .await;
        pf.drain().await;
        let mut told = model.fills.lock().unwrap().clone();
        told.sort();
        assert_eq!(told, [EntityKey::new("a", "e1"), EntityKey::new("a", "e2")]);
        assert!(before < 2, "a fill is told at the next prediction after it");
        pf.on_events(&spaced(&["e5"], start.plus(hour * 4), hour))
            .await;
        assert_eq!(
            model.fills.lock().unwrap().len(),
            2,
            "each fill is told once"
        );
    }

    /// Events `ids`, one every `gap`, from `start`.
    fn spaced(ids: &[&str], start: Timestamp, gap: Duration) -> Vec<Event> {
        ids.iter()
            .enumerate()
            .map(|(i, id)| {
                let t = start.plus(gap * i as u32);
                Event::new(*id, "t", t).with_entity(EntityRef::new("a", *id))
            })
            .collect()
    }

    /// A store with version 1 of `a/<id>` for each of `ids`.
    fn rows_a(ids: &[&str]) -> Arc<Rows> {
        Arc::new(Rows {
            rows: ids.iter().map(|i| (EntityKey::new("a", *i), 1)).collect(),
            calls: AtomicU64::new(0),
        })
    }

    async fn prefetches_in_event_time(clock: Arc<dyn Clock>) -> (Prefetcher, Arc<Rows>) {
        // Each event predicts the read of `a/<its id>` within a minute of it; the events are an
        // hour apart in a log of long ago, and come in one batch.
        let store = rows_a(&["e1", "e2", "e3"]);
        let pf = Prefetcher::new(
            PrefetcherConfig::default(),
            clock,
            Arc::new(InProcess::default()),
            Arc::new(MemCache::new(100, Duration::from_secs(60))),
            store.clone(),
        );
        let batch = spaced(
            &["e1", "e2", "e3"],
            Timestamp::from_secs(1_680_000_000),
            Duration::from_secs(3600),
        );
        assert_eq!(pf.on_events(&batch).await, 3);
        pf.drain().await;
        (pf, store)
    }

    /// Predicts nothing at events; each tick predicts `a/t<n>` (its n-th tick) a minute later.
    #[derive(Debug, Default)]
    struct Ticking {
        ticks: Mutex<Vec<Timestamp>>,
        /// Computes in-process ([`Predictor::is_blocking`]), as a `Local` model does.
        blocking: bool,
        /// The threads the ticks ran on.
        threads: Mutex<Vec<std::thread::ThreadId>>,
    }

    impl Ticking {
        fn tick_now(&self, now: Timestamp) -> Result<Forecast, PredictError> {
            self.threads
                .lock()
                .unwrap()
                .push(std::thread::current().id());
            let mut ticks = self.ticks.lock().unwrap();
            ticks.push(now);
            let at = now.plus(Duration::from_secs(60));
            Ok(Forecast {
                next: Vec::new(),
                novelty_discount: None,
                entities: vec![Prediction {
                    entity: EntityKey::new("a", format!("t{}", ticks.len())),
                    confidence: 0.9,
                    expected_at: at,
                    latest: at.plus(Duration::from_secs(60)),
                    event_type: None,
                    relation: Relation::Tick,
                }],
            })
        }
    }

    #[async_trait]
    impl Predictor for Ticking {
        fn name(&self) -> &str {
            "ticking"
        }
        async fn predict(&self, _: PredictRequest<'_>) -> Result<Forecast, PredictError> {
            Ok(Forecast::default())
        }
        async fn tick(&self, now: Timestamp) -> Result<Forecast, PredictError> {
            self.tick_now(now)
        }
        fn is_blocking(&self) -> bool {
            self.blocking
        }
        fn predict_batch_blocking(
            &self,
            reqs: &[PredictRequest<'_>],
        ) -> Option<Vec<Result<Forecast, PredictError>>> {
            self.blocking
                .then(|| reqs.iter().map(|_| Ok(Forecast::default())).collect())
        }
        fn tick_blocking(&self, now: Timestamp) -> Option<Result<Forecast, PredictError>> {
            self.blocking.then(|| self.tick_now(now))
        }
    }

    #[tokio::test]
    async fn quiet_spells_are_ticked_in_event_time() {
        quiet_spells_ticked_in_event_time(false).await;
    }

    #[tokio::test]
    async fn a_blocking_model_is_ticked_in_event_time_off_the_runtime() {
        let model = quiet_spells_ticked_in_event_time(true).await;
        // The runtime of a `#[tokio::test]` runs on the test's own thread.
        let threads = model.threads.lock().unwrap();
        assert_eq!(threads.len(), 3);
        assert!(threads.iter().all(|t| *t != std::thread::current().id()));
    }

    /// Ticks the quiet spells of a log in event time and checks what was ticked and loaded;
    /// returns the model, to check where it ran.
    async fn quiet_spells_ticked_in_event_time(blocking: bool) -> Arc<Ticking> {
        let store = Arc::new(Rows {
            rows: ["t1", "t2", "t3"]
                .iter()
                .map(|i| (EntityKey::new("a", *i), 1))
                .collect(),
            calls: AtomicU64::new(0),
        });
        let model = Arc::new(Ticking {
            blocking,
            ..Ticking::default()
        });
        let pf = Prefetcher::new(
            PrefetcherConfig {
                tick: Some(Duration::from_secs(3600)),
                ..PrefetcherConfig::default()
            },
            Arc::new(EventClock::default()),
            model.clone(),
            Arc::new(MemCache::new(100, Duration::from_secs(3600))),
            store.clone(),
        );
        let t0 = Timestamp::from_secs(1_680_000_000);
        // Two events close together, then two and a half hours of quiet, in one batch; then a
        // later batch after another quiet hour and a half.
        let mut batch = spaced(&["e1", "e2"], t0, Duration::from_secs(60));
        batch.push(Event::new(
            "e3",
            "t",
            t0.plus(Duration::from_secs(60 + 9000)),
        ));
        pf.on_events(&batch).await;
        let first = t0.plus(Duration::from_secs(60));
        assert_eq!(
            *model.ticks.lock().unwrap(),
            vec![
                first.plus(Duration::from_secs(3600)),
                first.plus(Duration::from_secs(7200))
            ]
        );
        let later = t0.plus(Duration::from_secs(60 + 9000 + 5400));
        pf.on_events(&[Event::new("e4", "t", later)]).await;
        assert_eq!(model.ticks.lock().unwrap().len(), 3);
        pf.drain().await;
        // Each tick's prediction was loaded in its window, before the next event.
        assert_eq!(
            pf.metrics().prefetches_issued.load(Ordering::Relaxed),
            3,
            "{:?}",
            pf.planner_stats()
        );
        let got = pf.get(&EntityKey::new("a", "t3"), Version::ZERO).await;
        assert_eq!(got.unwrap().1, ReadOutcome::Hit);
        model
    }

    #[tokio::test]
    async fn a_wall_clock_does_not_tick_a_log_of_long_ago() {
        let model = Arc::new(Ticking::default());
        let pf = Prefetcher::new(
            PrefetcherConfig {
                tick: Some(Duration::from_millis(1)),
                ..PrefetcherConfig::default()
            },
            Arc::new(SystemClock),
            model.clone(),
            Arc::new(MemCache::new(100, Duration::from_secs(3600))),
            Arc::new(Rows::default()),
        );
        let old = spaced(
            &["e1", "e2"],
            Timestamp::from_secs(1_680_000_000),
            Duration::from_secs(60),
        );
        pf.on_events(&old).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        pf.tick_quiet(pf.now()).await;
        assert!(model.ticks.lock().unwrap().is_empty());
        // Live events (stamped now) are ticked once quiet.
        let live = spaced(&["e3"], pf.now(), Duration::ZERO);
        pf.on_events(&live).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        pf.tick_quiet(pf.now()).await;
        assert!(!model.ticks.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn an_event_clock_plans_and_loads_in_the_events_time() {
        let (pf, store) = prefetches_in_event_time(Arc::new(EventClock::default())).await;
        assert_eq!(pf.now(), Timestamp::from_secs(1_680_000_000 + 7200));
        let issued = pf.metrics().prefetches_issued.load(Ordering::Relaxed);
        assert_eq!(
            issued, 3,
            "each event's prediction is loaded in its own window"
        );
        assert_eq!(store.calls.load(Ordering::Relaxed), 3);
        assert_eq!(pf.metrics().prefetch_failures.load(Ordering::Relaxed), 0);
        let got = pf.get(&EntityKey::new("a", "e1"), Version::ZERO).await;
        assert_eq!(got.unwrap().1, ReadOutcome::Hit);
        assert_eq!(pf.metrics().prefetches_used.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn a_prefetch_the_cache_already_holds_is_not_loaded() {
        // As in `prefetches_in_event_time`, but another process sharing the cache has written
        // `a/e2` already.
        let store = Arc::new(Rows {
            rows: ["e1", "e2", "e3"]
                .iter()
                .map(|i| (EntityKey::new("a", *i), 1))
                .collect(),
            calls: AtomicU64::new(0),
        });
        let cache = Arc::new(MemCache::new(100, Duration::from_secs(60)));
        let e2 = EntityKey::new("a", "e2");
        cache
            .put(&e2, Entry::new(Version(1), "x"), Duration::from_secs(60))
            .await
            .unwrap();
        let pf = Prefetcher::new(
            PrefetcherConfig::default(),
            Arc::new(EventClock::default()),
            Arc::new(InProcess::default()),
            cache,
            store.clone(),
        );
        let batch = spaced(
            &["e1", "e2", "e3"],
            Timestamp::from_secs(1_680_000_000),
            Duration::from_secs(3600),
        );
        pf.on_events(&batch).await;
        pf.drain().await;
        let m = pf.metrics();
        assert_eq!(m.prefetches_issued.load(Ordering::Relaxed), 2);
        assert_eq!(m.prefetches_skipped_cached.load(Ordering::Relaxed), 1);
        assert_eq!(store.calls.load(Ordering::Relaxed), 2);
        assert_eq!(pf.planner_stats().skipped_cached, 1);
        // The entry is served from the cache, but it was not this process's prefetch.
        let got = pf.get(&e2, Version(1)).await.unwrap();
        assert_eq!(got.1, ReadOutcome::Hit);
        assert_eq!(m.prefetches_used.load(Ordering::Relaxed), 0);
        let got = pf
            .get(&EntityKey::new("a", "e3"), Version(1))
            .await
            .unwrap();
        assert_eq!(got.1, ReadOutcome::Hit);
        assert_eq!(m.prefetches_used.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn a_wall_clock_finds_the_windows_of_an_old_log_over() {
        let (pf, store) = prefetches_in_event_time(Arc::new(SystemClock)).await;
        pf.tick().await;
        assert_eq!(pf.metrics().prefetches_issued.load(Ordering::Relaxed), 0);
        assert_eq!(store.calls.load(Ordering::Relaxed), 0);
    }

    fn outcomes(rs: &[Result<(Entry, ReadOutcome), ReadError>]) -> Vec<&'static str> {
        rs.iter()
            .map(|r| match r {
                Ok((_, o)) => o.as_str(),
                Err(ReadError::NotFound(_)) => "not found",
                Err(_) => "error",
            })
            .collect()
    }

    #[tokio::test]
    async fn get_many_loads_misses_in_one_batch_per_kind_then_hits() {
        let (pf, store, _) = prefetcher(&[("a", "1", 1), ("a", "2", 2), ("b", "1", 1)]);
        let keys = [
            EntityKey::new("a", "1"),
            EntityKey::new("b", "1"),
            EntityKey::new("a", "2"),
            EntityKey::new("a", "9"),
        ];
        let first = pf.get_many(&keys, Version::ZERO).await;
        assert_eq!(outcomes(&first), ["miss", "miss", "miss", "not found"]);
        assert_eq!(store.calls.load(Ordering::Relaxed), 2, "one batch per kind");
        assert_eq!(first[2].as_ref().unwrap().0.version, Version(2));
        let second = pf.get_many(&keys, Version::ZERO).await;
        assert_eq!(outcomes(&second), ["hit", "hit", "hit", "not found"]);
        assert_eq!(pf.metrics().hits.load(Ordering::Relaxed), 3);
        // A version newer than the store has is refused, as `get` refuses it.
        let newer = pf.get_many(&keys[..1], Version(5)).await;
        assert!(matches!(
            newer[0],
            Err(ReadError::VersionUnavailable { .. })
        ));
    }

    #[tokio::test]
    async fn get_many_with_a_repeated_key_loads_it_once() {
        let (pf, store, _) = prefetcher(&[("a", "1", 1)]);
        let keys = [EntityKey::new("a", "1"), EntityKey::new("a", "1")];
        let rs = pf.get_many(&keys, Version::ZERO).await;
        assert_eq!(outcomes(&rs), ["miss", "joined"]);
        assert_eq!(store.calls.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn on_events_applies_the_highest_invalidation_of_the_batch() {
        let (pf, _, cache) = prefetcher(&[("a", "1", 1)]);
        let key = EntityKey::new("a", "1");
        pf.get(&key, Version::ZERO).await.unwrap();
        let write = |id: &str, v: u64| {
            let mut e = Event::new(id, "write", pf.now());
            e.mutations.push(Mutation {
                kind: "a".into(),
                id: "1".into(),
                version: Version(v),
            });
            e
        };
        pf.on_events(&[write("e1", 3), write("e2", 2)]).await;
        assert_eq!(pf.metrics().events.load(Ordering::Relaxed), 2);
        assert_eq!(pf.metrics().invalidations.load(Ordering::Relaxed), 1);
        assert_eq!(cache.get(&key).await.unwrap(), None);
        // The floor is 3: an older write is refused.
        let put = cache
            .put(&key, Entry::new(Version(2), "old"), Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(
            put,
            prescient_core::PutOutcome::KeptNewer {
                current: Version(3)
            }
        );
    }
}
