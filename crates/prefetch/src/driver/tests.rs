//! Tests of the tokio driver.

#![allow(clippy::unwrap_used)] // a test: an unwrap that fails is a failed test

use std::collections::HashMap;
use std::sync::atomic::AtomicU32;

use async_trait::async_trait;
use prescient_cache_mem::MemCache;
use prescient_core::{
    CacheError, EntityRef, EventClock, Forecast, Local, Mutation, Observe, OnlineModel,
    PredictError, PredictRequest, Prediction, PutOutcome, Relation, SmolStr, StoreError,
    SystemClock,
};

use super::*;
use crate::Offloaded;

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

/// A store with version 1 of `a/<id>` for each of `ids`.
fn rows_a(ids: &[&str]) -> Arc<Rows> {
    Arc::new(Rows {
        rows: ids.iter().map(|i| (EntityKey::new("a", *i), 1)).collect(),
        calls: AtomicU64::new(0),
    })
}

fn count(pf: &Prefetcher, name: &str) -> u64 {
    pf.snapshot()
        .counters
        .iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| *v)
        .unwrap()
}

/// Predicts entity `a/<event id>` for each event, within a minute of it; records the events it
/// saw, the batches it was called with and the fills it was told; fails when told to.
#[derive(Debug, Default)]
struct Echo {
    fail: bool,
    seen: Vec<String>,
    fills: Vec<EntityKey>,
    /// How long each event takes.
    work: Duration,
}

impl OnlineModel for Echo {
    fn name(&self) -> &str {
        "echo"
    }
    fn observe(&mut self, e: &Event, _: Observe) {
        self.seen.push(e.id.to_string());
        std::thread::sleep(self.work);
        assert!(e.event_type != "boom", "boom");
    }
    fn forecast(&mut self, e: &Event) -> Forecast {
        let mut f = Forecast::default();
        if !self.fail {
            f.entities.push(Prediction {
                entity: EntityKey::new("a", e.id.clone()),
                confidence: 0.9,
                expected_at: e.time,
                latest: e.time.plus(Duration::from_secs(60)),
                event_type: None,
                relation: Relation::Same,
            });
        }
        f
    }
    fn filled(&mut self, key: &EntityKey, _: Timestamp) {
        self.fills.push(key.clone());
    }
}

/// Fails every call when `fail` is set; counts its calls.
#[derive(Debug)]
struct Failing {
    inner: Local<Echo>,
    fail: bool,
    calls: AtomicU32,
}

#[async_trait]
impl Predictor for Failing {
    fn name(&self) -> &str {
        "failing"
    }
    async fn predict(&self, req: PredictRequest<'_>) -> Result<Forecast, PredictError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if self.fail {
            return Err(PredictError::Unavailable("down".into()));
        }
        self.inner.predict(req).await
    }
}

fn offloaded(model: Echo) -> (Arc<Offloaded>, Arc<Local<Echo>>) {
    let local = Arc::new(Local::new(model));
    (Arc::new(Offloaded::new(local.clone()).unwrap()), local)
}

fn prefetcher_with(
    cfg: PrefetcherConfig,
    clock: Arc<dyn Clock>,
    predictor: Arc<dyn Predictor>,
    store: Arc<Rows>,
) -> (Prefetcher, Arc<MemCache>) {
    let cache = Arc::new(MemCache::new(100, Duration::from_secs(3600)));
    let pf = Prefetcher::new(cfg, clock, predictor, cache.clone(), store);
    (pf, cache)
}

fn events(pf: &Prefetcher, ids: &[&str]) -> Vec<Event> {
    ids.iter()
        .map(|id| Event::new(*id, "t", pf.now()).with_entity(EntityRef::new("a", *id)))
        .collect()
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

async fn an_offloaded_model_predicts_a_batch_in_order_off_the_runtime() {
    let (p, local) = offloaded(Echo::default());
    let (pf, _) = prefetcher_with(
        PrefetcherConfig::default(),
        Arc::new(SystemClock),
        p,
        Arc::new(Rows::default()),
    );
    let done = pf.on_events(&events(&pf, &["e1", "e2", "e3"])).await;
    assert_eq!(done.offered, 3);
    assert_eq!(count(&pf, "predictions"), 3);
    assert_eq!(count(&pf, "predictor_errors"), 0);
    assert_eq!(
        local.with_model(|m| m.seen.clone()).unwrap(),
        ["e1", "e2", "e3"]
    );
    assert_eq!(pf.snapshot().queue_depth, 3);
}

#[tokio::test]
async fn an_offloaded_model_predicts_off_a_current_thread_runtime() {
    an_offloaded_model_predicts_a_batch_in_order_off_the_runtime().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offloaded_model_predicts_off_a_multi_thread_runtime() {
    an_offloaded_model_predicts_a_batch_in_order_off_the_runtime().await;
}

#[tokio::test]
async fn the_time_of_the_prediction_step_is_counted() {
    let (p, _) = offloaded(Echo {
        work: Duration::from_millis(10),
        ..Echo::default()
    });
    let (pf, _) = prefetcher_with(
        PrefetcherConfig::default(),
        Arc::new(SystemClock),
        p,
        Arc::new(Rows::default()),
    );
    assert_eq!(count(&pf, "predict_micros"), 0);
    pf.on_events(&events(&pf, &["e1", "e2"])).await;
    pf.on_events(&events(&pf, &["e3"])).await;
    assert!(count(&pf, "predict_micros") >= 30_000);
}

#[tokio::test]
async fn failures_open_the_breaker_and_the_rest_is_refused() {
    let p = Arc::new(Failing {
        inner: Local::new(Echo::default()),
        fail: true,
        calls: AtomicU32::new(0),
    });
    let cfg = PrefetcherConfig {
        breaker: BreakerConfig {
            failure_threshold: 2,
            open_for: Duration::from_secs(3600),
        },
        ..PrefetcherConfig::default()
    };
    let (pf, _) = prefetcher_with(
        cfg,
        Arc::new(SystemClock),
        p.clone(),
        Arc::new(Rows::default()),
    );
    let done = pf.on_events(&events(&pf, &["e1", "e2", "e3", "e4"])).await;
    assert_eq!(done.offered, 0);
    assert_eq!(count(&pf, "predictor_errors"), 2);
    assert_eq!(pf.snapshot().breaker, BreakerState::Open);
    let asked = p.calls.load(Ordering::Relaxed);
    pf.on_events(&events(&pf, &["e5", "e6"])).await;
    assert_eq!(
        p.calls.load(Ordering::Relaxed),
        asked,
        "the open breaker refuses"
    );
    assert_eq!(count(&pf, "predictor_errors"), 2);
    assert_eq!(count(&pf, "events"), 6);
}

#[tokio::test]
async fn a_panicking_model_trips_the_breaker_and_serving_goes_on() {
    let (p, _) = offloaded(Echo::default());
    let cfg = PrefetcherConfig {
        breaker: BreakerConfig {
            failure_threshold: 1,
            open_for: Duration::from_secs(3600),
        },
        ..PrefetcherConfig::default()
    };
    let store = rows_a(&["r"]);
    let (pf, _) = prefetcher_with(cfg, Arc::new(SystemClock), p, store);
    let boom = Event::new("b", "boom", pf.now()).with_entity(EntityRef::new("a", "r"));
    pf.on_events(&[boom]).await;
    assert_eq!(count(&pf, "predictor_errors"), 1);
    assert_eq!(pf.snapshot().breaker, BreakerState::Open);
    // Serving goes on as a plain cache.
    let key = EntityKey::new("a", "r");
    assert_eq!(pf.get(&key, Version(1)).await.unwrap().1, ReadOutcome::Miss);
    assert_eq!(pf.get(&key, Version(1)).await.unwrap().1, ReadOutcome::Hit);
    pf.on_events(&events(&pf, &["e2"])).await;
    assert_eq!(count(&pf, "events"), 2);
}

/// Never answers: a model stuck in a loop.
#[derive(Debug)]
struct Stuck;

impl OnlineModel for Stuck {
    fn name(&self) -> &str {
        "stuck"
    }
    fn observe(&mut self, _: &Event, _: Observe) {
        loop {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    fn forecast(&mut self, _: &Event) -> Forecast {
        Forecast::default()
    }
}

#[tokio::test]
async fn a_model_that_never_answers_is_given_up_on_at_the_deadline() {
    let p = Arc::new(Offloaded::new(Arc::new(Local::new(Stuck))).unwrap());
    let cfg = PrefetcherConfig {
        predict_timeout: Duration::from_millis(20),
        breaker: BreakerConfig {
            failure_threshold: 3,
            open_for: Duration::from_secs(3600),
        },
        ..PrefetcherConfig::default()
    };
    let (pf, _) = prefetcher_with(cfg, Arc::new(SystemClock), p, rows_a(&["x"]));
    for i in 0..4 {
        let e = events(&pf, &[&format!("e{i}")]);
        tokio::time::timeout(Duration::from_secs(5), pf.on_events(&e))
            .await
            .expect("each batch ends");
    }
    assert_eq!(count(&pf, "predictor_errors"), 3);
    assert_eq!(pf.snapshot().breaker, BreakerState::Open);
    let got = pf.get(&EntityKey::new("a", "x"), Version(1)).await;
    assert_eq!(got.unwrap().1, ReadOutcome::Miss, "reads are served");
}

#[tokio::test]
async fn the_predictor_is_told_which_prefetches_filled_the_cache() {
    let (p, local) = offloaded(Echo::default());
    let (pf, _) = prefetcher_with(
        PrefetcherConfig::default(),
        Arc::new(EventClock::default()),
        p,
        rows_a(&["e1", "e2"]),
    );
    // Each event predicts `a/<its id>` within a minute; `a/e3` has no row, so its prefetch
    // fills nothing.
    let start = Timestamp::from_secs(1_680_000_000);
    let hour = Duration::from_secs(3600);
    pf.on_events(&spaced(&["e1", "e2", "e3"], start, hour))
        .await;
    pf.drain().await;
    assert_eq!(count(&pf, "prefetches_issued"), 3);
    let before = local.with_model(|m| m.fills.len()).unwrap();
    pf.on_events(&spaced(&["e4"], start.plus(hour * 3), hour))
        .await;
    pf.drain().await;
    let mut told = local.with_model(|m| m.fills.clone()).unwrap();
    told.sort();
    assert_eq!(told, [EntityKey::new("a", "e1"), EntityKey::new("a", "e2")]);
    assert!(before < 2, "a fill is told at the next prediction after it");
    pf.on_events(&spaced(&["e5"], start.plus(hour * 4), hour))
        .await;
    assert_eq!(
        local.with_model(|m| m.fills.len()).unwrap(),
        2,
        "each fill is told once"
    );
}

async fn prefetches_in_event_time(clock: Arc<dyn Clock>) -> (Prefetcher, Arc<Rows>) {
    // Each event predicts the read of `a/<its id>` within a minute of it; the events are an
    // hour apart in a log of long ago, and come in one batch.
    let store = rows_a(&["e1", "e2", "e3"]);
    let (p, _) = offloaded(Echo::default());
    let (pf, _) = prefetcher_with(PrefetcherConfig::default(), clock, p, store.clone());
    let batch = spaced(
        &["e1", "e2", "e3"],
        Timestamp::from_secs(1_680_000_000),
        Duration::from_secs(3600),
    );
    assert_eq!(pf.on_events(&batch).await.offered, 3);
    pf.drain().await;
    (pf, store)
}

#[tokio::test]
async fn an_event_clock_plans_and_loads_in_the_events_time() {
    let (pf, store) = prefetches_in_event_time(Arc::new(EventClock::default())).await;
    assert_eq!(pf.now(), Timestamp::from_secs(1_680_000_000 + 7200));
    assert_eq!(
        count(&pf, "prefetches_issued"),
        3,
        "each event's prediction is loaded in its own window"
    );
    assert_eq!(store.calls.load(Ordering::Relaxed), 3);
    assert_eq!(count(&pf, "prefetch_failures"), 0);
    let got = pf.get(&EntityKey::new("a", "e1"), Version::ZERO).await;
    assert_eq!(got.unwrap().1, ReadOutcome::Hit);
    assert_eq!(count(&pf, "prefetches_used"), 1);
}

#[tokio::test]
async fn a_wall_clock_finds_the_windows_of_an_old_log_over() {
    let (pf, store) = prefetches_in_event_time(Arc::new(SystemClock)).await;
    pf.tick().await;
    assert_eq!(count(&pf, "prefetches_issued"), 0);
    assert_eq!(store.calls.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn a_prefetch_the_cache_already_holds_is_not_loaded() {
    // As in `prefetches_in_event_time`, but another process sharing the cache has written
    // `a/e2` already.
    let store = rows_a(&["e1", "e2", "e3"]);
    let (p, _) = offloaded(Echo::default());
    let (pf, cache) = prefetcher_with(
        PrefetcherConfig::default(),
        Arc::new(EventClock::default()),
        p,
        store.clone(),
    );
    let e2 = EntityKey::new("a", "e2");
    cache
        .put(&e2, Entry::new(Version(1), "x"), Duration::from_secs(60))
        .await
        .unwrap();
    let batch = spaced(
        &["e1", "e2", "e3"],
        Timestamp::from_secs(1_680_000_000),
        Duration::from_secs(3600),
    );
    pf.on_events(&batch).await;
    pf.drain().await;
    assert_eq!(count(&pf, "prefetches_issued"), 2);
    assert_eq!(count(&pf, "prefetches_skipped_cached"), 1);
    assert_eq!(store.calls.load(Ordering::Relaxed), 2);
    assert_eq!(pf.planner_stats().skipped_cached, 1);
    // The entry is served from the cache, but it was not this process's prefetch.
    assert_eq!(pf.get(&e2, Version(1)).await.unwrap().1, ReadOutcome::Hit);
    assert_eq!(count(&pf, "prefetches_used"), 0);
    let e3 = EntityKey::new("a", "e3");
    assert_eq!(pf.get(&e3, Version(1)).await.unwrap().1, ReadOutcome::Hit);
    assert_eq!(count(&pf, "prefetches_used"), 1);
}

/// Predicts nothing at events; each tick predicts `a/t<n>` (its n-th tick) a minute later.
#[derive(Debug, Default)]
struct Ticking {
    ticks: Vec<Timestamp>,
}

impl OnlineModel for Ticking {
    fn name(&self) -> &str {
        "ticking"
    }
    fn observe(&mut self, _: &Event, _: Observe) {}
    fn forecast(&mut self, _: &Event) -> Forecast {
        Forecast::default()
    }
    fn forecast_due(&mut self, now: Timestamp) -> Forecast {
        self.ticks.push(now);
        let at = now.plus(Duration::from_secs(60));
        Forecast {
            next: Vec::new(),
            novelty_discount: None,
            entities: vec![Prediction {
                entity: EntityKey::new("a", format!("t{}", self.ticks.len())),
                confidence: 0.9,
                expected_at: at,
                latest: at.plus(Duration::from_secs(60)),
                event_type: None,
                relation: Relation::Tick,
            }],
        }
    }
}

#[tokio::test]
async fn quiet_spells_are_ticked_in_event_time() {
    let store = Arc::new(Rows {
        rows: ["t1", "t2", "t3"]
            .iter()
            .map(|i| (EntityKey::new("a", *i), 1))
            .collect(),
        calls: AtomicU64::new(0),
    });
    let local = Arc::new(Local::new(Ticking::default()));
    let p = Arc::new(Offloaded::new(local.clone()).unwrap());
    let cfg = PrefetcherConfig {
        tick: Some(Duration::from_secs(3600)),
        ..PrefetcherConfig::default()
    };
    let (pf, _) = prefetcher_with(cfg, Arc::new(EventClock::default()), p, store);
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
    let ticks = || local.with_model(|m| m.ticks.clone()).unwrap();
    assert_eq!(
        ticks(),
        vec![
            first.plus(Duration::from_secs(3600)),
            first.plus(Duration::from_secs(7200))
        ]
    );
    let later = t0.plus(Duration::from_secs(60 + 9000 + 5400));
    pf.on_events(&[Event::new("e4", "t", later)]).await;
    assert_eq!(ticks().len(), 3);
    pf.drain().await;
    // Each tick's prediction was loaded in its window, before the next event.
    assert_eq!(
        count(&pf, "prefetches_issued"),
        3,
        "{:?}",
        pf.planner_stats()
    );
    let got = pf.get(&EntityKey::new("a", "t3"), Version::ZERO).await;
    assert_eq!(got.unwrap().1, ReadOutcome::Hit);
}

#[tokio::test]
async fn a_wall_clock_does_not_tick_a_log_of_long_ago() {
    let local = Arc::new(Local::new(Ticking::default()));
    let cfg = PrefetcherConfig {
        tick: Some(Duration::from_millis(1)),
        ..PrefetcherConfig::default()
    };
    let (pf, _) = prefetcher_with(
        cfg,
        Arc::new(SystemClock),
        local.clone(),
        Arc::new(Rows::default()),
    );
    let old = spaced(
        &["e1", "e2"],
        Timestamp::from_secs(1_680_000_000),
        Duration::from_secs(60),
    );
    pf.on_events(&old).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    pf.tick_quiet(pf.now(), false).await;
    assert!(local.with_model(|m| m.ticks.is_empty()).unwrap());
    // Live events (stamped now) are ticked once quiet.
    let live = spaced(&["e3"], pf.now(), Duration::ZERO);
    pf.on_events(&live).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    pf.tick_quiet(pf.now(), false).await;
    assert!(!local.with_model(|m| m.ticks.is_empty()).unwrap());
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

fn plain(rows: &[(&str, &str, u64)]) -> (Prefetcher, Arc<Rows>, Arc<MemCache>) {
    let store = Arc::new(Rows {
        rows: rows
            .iter()
            .map(|(k, i, v)| (EntityKey::new(*k, *i), *v))
            .collect(),
        calls: AtomicU64::new(0),
    });
    let (p, _) = offloaded(Echo {
        fail: true,
        ..Echo::default()
    });
    let (pf, cache) = prefetcher_with(
        PrefetcherConfig::default(),
        Arc::new(SystemClock),
        p,
        store.clone(),
    );
    (pf, store, cache)
}

#[tokio::test]
async fn get_many_loads_misses_in_one_batch_per_kind_then_hits() {
    let (pf, store, _) = plain(&[("a", "1", 1), ("a", "2", 2), ("b", "1", 1)]);
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
    assert_eq!(count(&pf, "hits"), 3);
    // A version newer than the store has is refused, as `get` refuses it.
    let newer = pf.get_many(&keys[..1], Version(5)).await;
    assert!(matches!(
        newer[0],
        Err(ReadError::VersionUnavailable { .. })
    ));
}

#[tokio::test]
async fn get_many_with_a_repeated_key_loads_it_once() {
    let (pf, store, _) = plain(&[("a", "1", 1)]);
    let keys = [EntityKey::new("a", "1"), EntityKey::new("a", "1")];
    let rs = pf.get_many(&keys, Version::ZERO).await;
    assert_eq!(outcomes(&rs), ["miss", "joined"]);
    assert_eq!(store.calls.load(Ordering::Relaxed), 1);
}

fn write(pf: &Prefetcher, id: &str, v: u64) -> Event {
    let mut e = Event::new(id, "write", pf.now());
    e.mutations.push(Mutation {
        kind: "a".into(),
        id: "1".into(),
        version: Version(v),
    });
    e
}

#[tokio::test]
async fn on_events_applies_the_highest_invalidation_of_the_batch() {
    let (pf, _, cache) = plain(&[("a", "1", 1)]);
    let key = EntityKey::new("a", "1");
    pf.get(&key, Version::ZERO).await.unwrap();
    pf.on_events(&[write(&pf, "e1", 3), write(&pf, "e2", 2)])
        .await;
    assert_eq!(count(&pf, "events"), 2);
    assert_eq!(count(&pf, "invalidations"), 1);
    assert_eq!(cache.get(&key).await.unwrap(), None);
    // The floor is 3: an older write is refused.
    let put = cache
        .put(&key, Entry::new(Version(2), "old"), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        put,
        PutOutcome::KeptNewer {
            current: Version(3)
        }
    );
}

/// A cache whose invalidations fail `failures` times (as unreachable, or as a backend error),
/// and which holds a stale copy until they succeed.
#[derive(Debug)]
struct Flaky {
    inner: MemCache,
    failures: AtomicU32,
    transient: bool,
}

#[async_trait]
impl Cache for Flaky {
    async fn get(&self, key: &EntityKey) -> Result<Option<Entry>, CacheError> {
        self.inner.get(key).await
    }
    async fn put(
        &self,
        key: &EntityKey,
        e: Entry,
        ttl: Duration,
    ) -> Result<PutOutcome, CacheError> {
        self.inner.put(key, e, ttl).await
    }
    async fn invalidate(&self, key: &EntityKey, v: Version) -> Result<(), CacheError> {
        if self
            .failures
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(if self.transient {
                CacheError::Unavailable("down".into())
            } else {
                CacheError::Backend("refused".into())
            });
        }
        self.inner.invalidate(key, v).await
    }
}

fn with_flaky(failures: u32, transient: bool) -> (Prefetcher, Arc<Flaky>, Arc<Rows>) {
    let cache = Arc::new(Flaky {
        inner: MemCache::new(100, Duration::from_secs(3600)),
        failures: AtomicU32::new(failures),
        transient,
    });
    let store = Arc::new(Rows {
        rows: [(EntityKey::new("a", "1"), 2)].into_iter().collect(),
        calls: AtomicU64::new(0),
    });
    let cfg = PrefetcherConfig {
        invalidate_retry: RetryConfig {
            max_attempts: 3,
            base: Duration::from_millis(1),
            max: Duration::from_millis(5),
            jitter: 0.0,
        },
        ..PrefetcherConfig::default()
    };
    let (p, _) = offloaded(Echo::default());
    let pf = Prefetcher::new(cfg, Arc::new(SystemClock), p, cache.clone(), store.clone());
    (pf, cache, store)
}

#[tokio::test]
async fn a_failed_invalidation_is_retried_until_it_holds_before_the_event_is_acked() {
    let (pf, cache, _) = with_flaky(10, true);
    let key = EntityKey::new("a", "1");
    cache
        .put(
            &key,
            Entry::new(Version(1), "stale"),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    let done = pf.on_events(&[write(&pf, "e1", 2)]).await;
    assert!(done.failed.is_empty(), "{done:?}");
    assert_eq!(count(&pf, "invalidation_retries"), 10);
    assert_eq!(
        cache.get(&key).await.unwrap(),
        None,
        "the stale copy is gone"
    );
    assert_eq!(
        pf.get(&key, Version::ZERO).await.unwrap().0.version,
        Version(2)
    );
}

#[tokio::test]
async fn a_read_does_not_trust_the_cache_while_an_invalidation_is_pending() {
    let (pf, cache, _) = with_flaky(u32::MAX, true);
    let key = EntityKey::new("a", "1");
    cache
        .put(
            &key,
            Entry::new(Version(1), "stale"),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    let pending = {
        let pf = pf.clone();
        let e = write(&pf, "e1", 2);
        tokio::spawn(async move { pf.on_events(&[e]).await })
    };
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert!(
        !pending.is_finished(),
        "the batch is held until the invalidation holds"
    );
    let (e, how) = pf.get(&key, Version::ZERO).await.unwrap();
    assert_eq!((e.version, how), (Version(2), ReadOutcome::Miss));
    cache.failures.store(0, Ordering::Relaxed);
    let done = pending.await.unwrap();
    assert!(done.failed.is_empty());
}

#[tokio::test]
async fn an_invalidation_the_cache_keeps_refusing_sends_its_events_to_the_dead_letters() {
    let (pf, _, _) = with_flaky(u32::MAX, false);
    let other = Event::new("e0", "t", pf.now());
    let done = pf
        .on_events(&[other, write(&pf, "e1", 2), write(&pf, "e2", 3)])
        .await;
    assert_eq!(
        done.failed.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        [1, 2]
    );
    assert!(done.failed[0].1.contains("refused"), "{:?}", done.failed);
    assert_eq!(count(&pf, "invalidations_failed"), 2);
}

#[tokio::test]
async fn state_exported_by_one_prefetcher_is_taken_over_by_another() {
    let (p, _) = offloaded(Echo::default());
    let clock = Arc::new(prescient_core::ManualClock::new(Timestamp::from_secs(
        1_700_000_000,
    )));
    let store = rows_a(&["e1", "e2"]);
    let (a, _) = prefetcher_with(PrefetcherConfig::default(), clock.clone(), p, store.clone());
    // Plans for a minute from now.
    let later = clock.now().plus(Duration::from_secs(60));
    a.on_events(&spaced(&["e1", "e2"], later, Duration::ZERO))
        .await;
    assert_eq!(a.snapshot().queue_depth, 2);
    let state = a.export_state(&mut |k| k.id == "e1");
    a.forget_state(&mut |k| k.id == "e1");
    assert_eq!(a.snapshot().queue_depth, 1);

    let (p, _) = offloaded(Echo::default());
    let (b, _) = prefetcher_with(PrefetcherConfig::default(), clock.clone(), p, store);
    b.import_state(state);
    assert_eq!(b.snapshot().queue_depth, 1);
    clock.set(later);
    b.tick().await;
    assert_eq!(count(&b, "prefetches_issued"), 1);
    let got = b.get(&EntityKey::new("a", "e1"), Version(1)).await.unwrap();
    assert_eq!(got.1, ReadOutcome::Hit);
    assert_eq!(count(&b, "prefetches_used"), 1);
}
