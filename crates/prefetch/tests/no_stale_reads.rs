#![allow(clippy::unwrap_used)] // a test: an unwrap that fails is a failed test
//! Stateful property test of the whole manager: random interleavings of mutations, predicted
//! prefetches (some slow, some failing) and concurrent reads against the in-process cache.
//! No read returns a version older than the one its reader asked for, and the cache never holds
//! a version older than the newest one written or invalidated to.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use prescient_cache_mem::MemCache;
use prescient_core::{
    Cache, Clock, EntityKey, EntityRef, Entry, Event, Forecast, Mutation, PredictError,
    PredictRequest, Prediction, Predictor, Relation, SmolStr, Store, StoreError, SystemClock,
    Version,
};
use prescient_prefetch::{BreakerConfig, PlannerConfig, Prefetcher, PrefetcherConfig, RetryConfig};
use proptest::prelude::*;

#[derive(Debug, Default)]
struct TestStore {
    rows: Mutex<HashMap<EntityKey, u64>>,
    fail_every: u64,
    calls: AtomicU64,
}

#[async_trait]
impl Store for TestStore {
    async fn load_batch(
        &self,
        kind: &str,
        ids: &[SmolStr],
    ) -> Result<Vec<Option<Entry>>, StoreError> {
        let n = self.calls.fetch_add(1, Ordering::Relaxed);
        // Read the versions now, answer later: a slow load of an old version.
        let versions: Vec<Option<u64>> = {
            let rows = self.rows.lock().unwrap();
            ids.iter()
                .map(|id| rows.get(&EntityKey::new(kind, id.clone())).copied())
                .collect()
        };
        tokio::time::sleep(Duration::from_micros(200 + (n * 397) % 3000)).await;
        if self.fail_every > 0 && n.is_multiple_of(self.fail_every) {
            return Err(StoreError::Unavailable("injected".into()));
        }
        Ok(versions
            .into_iter()
            .map(|v| v.map(|v| Entry::new(Version(v), format!("v{v}"))))
            .collect())
    }
}

/// The in-process cache, recording the newest version it ever stored per key.
#[derive(Debug)]
struct Recording {
    inner: MemCache,
    newest: Mutex<HashMap<EntityKey, Version>>,
}

#[async_trait]
impl Cache for Recording {
    async fn get(&self, key: &EntityKey) -> Result<Option<Entry>, prescient_core::CacheError> {
        self.inner.get(key).await
    }
    async fn put(
        &self,
        key: &EntityKey,
        entry: Entry,
        ttl: Duration,
    ) -> Result<prescient_core::PutOutcome, prescient_core::CacheError> {
        let v = entry.version;
        let out = self.inner.put(key, entry, ttl).await?;
        if out == prescient_core::PutOutcome::Stored {
            let mut n = self.newest.lock().unwrap();
            let e = n.entry(key.clone()).or_insert(v);
            *e = (*e).max(v);
        }
        Ok(out)
    }
    async fn invalidate(
        &self,
        key: &EntityKey,
        min_version: Version,
    ) -> Result<(), prescient_core::CacheError> {
        self.inner.invalidate(key, min_version).await
    }
}

/// Predicts the entities named in the event's attributes, soon.
#[derive(Debug)]
struct ScriptedPredictor {
    fail: bool,
}

#[async_trait]
impl Predictor for ScriptedPredictor {
    fn name(&self) -> &str {
        "scripted"
    }
    async fn predict(&self, req: PredictRequest<'_>) -> Result<Forecast, PredictError> {
        if self.fail {
            return Err(PredictError::Unavailable("down".into()));
        }
        let now = req.event.time;
        let mut f = Forecast::default();
        for (i, (_, id)) in req.event.attributes.iter().enumerate() {
            let at = now.plus(Duration::from_millis(i as u64 % 3));
            f.entities.push(Prediction {
                entity: EntityKey::new("k", id.clone()),
                confidence: 0.9,
                expected_at: at,
                latest: at.plus(Duration::from_millis(50)),
                event_type: None,
                relation: Relation::Same,
            });
        }
        Ok(f)
    }
}

#[derive(Debug, Clone)]
enum Op {
    Mutate(u8),
    /// A write whose event is late: the store moved on, no invalidation has arrived, and readers
    /// that learned the new version elsewhere ask for it.
    MutateQuiet(u8),
    Read(u8),
    Predict(Vec<u8>),
    Sleep(u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0u8..6).prop_map(Op::Mutate),
        1 => (0u8..6).prop_map(Op::MutateQuiet),
        4 => (0u8..6).prop_map(Op::Read),
        3 => prop::collection::vec(0u8..6, 1..4).prop_map(Op::Predict),
        1 => (0u16..3000).prop_map(Op::Sleep),
    ]
}

fn key(k: u8) -> EntityKey {
    EntityKey::new("k", k.to_string())
}

async fn scenario(ops: Vec<Op>, fail_every: u64, predictor_fails: bool) {
    let store = Arc::new(TestStore {
        fail_every,
        ..TestStore::default()
    });
    for k in 0..6 {
        store.rows.lock().unwrap().insert(key(k), 1);
    }
    // Large enough that nothing is evicted: "never older" is about entries the cache holds.
    let cache = Arc::new(Recording {
        inner: MemCache::new(1000, Duration::from_secs(60)),
        newest: Mutex::default(),
    });
    let cfg = PrefetcherConfig {
        planner: PlannerConfig {
            lead: Duration::from_millis(1),
            batch_window: Duration::from_millis(1),
            retry: RetryConfig {
                max_attempts: 3,
                base: Duration::from_millis(1),
                max: Duration::from_millis(5),
                jitter: 0.5,
            },
            ..PlannerConfig::default()
        },
        breaker: BreakerConfig {
            failure_threshold: 2,
            open_for: Duration::from_millis(5),
        },
        demand_ttl: Duration::from_secs(60),
        ..PrefetcherConfig::default()
    };
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let pf = Prefetcher::new(
        cfg,
        clock.clone(),
        Arc::new(ScriptedPredictor {
            fail: predictor_fails,
        }),
        cache.clone(),
        store.clone(),
    );
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let sched = {
        let pf = pf.clone();
        tokio::spawn(async move {
            pf.run(async {
                let _ = stop_rx.await;
            })
            .await
        })
    };
    let mut reads = Vec::new();
    let mut written: HashMap<EntityKey, u64> = HashMap::new();
    for (i, op) in ops.into_iter().enumerate() {
        match op {
            Op::Mutate(k) => {
                let v = {
                    let mut rows = store.rows.lock().unwrap();
                    let v = rows.entry(key(k)).or_insert(1);
                    *v += 1;
                    *v
                };
                written.insert(key(k), v);
                let mut e = Event::new(format!("m{i}"), "write", clock.now())
                    .with_entity(EntityRef::new("k", k.to_string()));
                e.mutations.push(Mutation {
                    kind: "k".into(),
                    id: k.to_string().into(),
                    version: Version(v),
                });
                pf.on_event(&e).await;
            }
            Op::MutateQuiet(k) => {
                let mut rows = store.rows.lock().unwrap();
                let v = rows.entry(key(k)).or_insert(1);
                *v += 1;
                written.insert(key(k), *v);
            }
            Op::Read(k) => {
                // The reader needs the version the last event it saw announced.
                let want = Version(*store.rows.lock().unwrap().get(&key(k)).unwrap());
                let pf = pf.clone();
                reads.push(tokio::spawn(async move {
                    match pf.get(&key(k), want).await {
                        Ok((e, _)) => assert!(
                            e.version >= want,
                            "stale read of {k}: got {} wanted {want}",
                            e.version
                        ),
                        Err(prescient_prefetch::ReadError::Store(_)) => {} // injected failure
                        Err(e) => panic!("unexpected read error: {e}"),
                    }
                }));
            }
            Op::Predict(ks) => {
                let mut e = Event::new(format!("p{i}"), "touch", clock.now());
                for k in ks {
                    e.attributes.push(("next".into(), k.to_string().into()));
                }
                pf.on_event(&e).await;
            }
            Op::Sleep(us) => tokio::time::sleep(Duration::from_micros(u64::from(us))).await,
        }
    }
    for r in reads {
        r.await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    let _ = stop_tx.send(());
    sched.await.unwrap();
    // Never older: no write replaced a newer version with an older one.
    let newest = cache.newest.lock().unwrap().clone();
    for (k, v) in newest {
        if let Some(e) = cache.get(&k).await.unwrap() {
            assert!(
                e.version >= v,
                "{k}: cache holds {} after {v} was stored",
                e.version
            );
        }
    }
    drop(written);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn no_read_is_stale_and_no_newer_version_is_overwritten(
        ops in prop::collection::vec(op(), 1..60),
        fail_every in prop_oneof![Just(0u64), 2u64..5],
        predictor_fails in any::<bool>(),
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(scenario(ops, fail_every, predictor_fails));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_run_one_load_and_reads_join_prefetches() {
    let store = Arc::new(TestStore::default());
    store.rows.lock().unwrap().insert(key(1), 3);
    let cache = Arc::new(MemCache::new(100, Duration::from_secs(60)));
    let pf = Prefetcher::new(
        PrefetcherConfig::default(),
        Arc::new(SystemClock),
        Arc::new(ScriptedPredictor { fail: false }),
        cache,
        store.clone(),
    );
    let barrier = Arc::new(tokio::sync::Barrier::new(8));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (pf, barrier) = (pf.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            pf.get(&key(1), Version(3)).await.unwrap().1
        }));
    }
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.unwrap());
    }
    assert_eq!(
        store.calls.load(Ordering::Relaxed),
        1,
        "one store load for eight concurrent misses"
    );
    let misses = outcomes
        .iter()
        .filter(|o| **o == prescient_prefetch::ReadOutcome::Miss)
        .count();
    assert_eq!(misses, 1, "{outcomes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_turns_prediction_off_and_reads_still_work() {
    let store = Arc::new(TestStore::default());
    store.rows.lock().unwrap().insert(key(1), 1);
    let cache = Arc::new(MemCache::new(100, Duration::from_secs(60)));
    let cfg = PrefetcherConfig {
        breaker: BreakerConfig {
            failure_threshold: 3,
            open_for: Duration::from_secs(60),
        },
        ..PrefetcherConfig::default()
    };
    let pf = Prefetcher::new(
        cfg,
        Arc::new(SystemClock),
        Arc::new(ScriptedPredictor { fail: true }),
        cache,
        store,
    );
    for i in 0..10 {
        let e = Event::new(format!("e{i}"), "t", SystemClock.now());
        pf.on_event(&e).await;
    }
    let snap = pf.snapshot();
    assert_eq!(snap.breaker, prescient_prefetch::BreakerState::Open);
    assert_eq!(
        pf.core_stats().predictor_errors,
        3,
        "calls stop once the breaker opens"
    );
    // Plain cache: a miss then a hit.
    assert_eq!(
        pf.get(&key(1), Version(1)).await.unwrap().1,
        prescient_prefetch::ReadOutcome::Miss
    );
    assert_eq!(
        pf.get(&key(1), Version(1)).await.unwrap().1,
        prescient_prefetch::ReadOutcome::Hit
    );
    // A predictor swapped in works once the breaker lets a probe through.
    pf.set_predictor(Arc::new(ScriptedPredictor { fail: false }));
}
