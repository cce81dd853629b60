//! Parity of the two drivers of the prefetch core.
//!
//! One generated log goes through the replay simulator (virtual time) and through the tokio
//! driver (`Prefetcher`, with a clock that follows the events, in lockstep), each with an
//! in-memory cache and store in the same virtual time and the same deterministic model. Loads
//! take no time in either. After every event, both must have made the same decisions: the same
//! prefetches issued, used, wasted and skipped, the same predictions offered and the same
//! learned thresholds. A driver that changed a rule on its own (how it credits a prefetch, when
//! it ticks, what it invalidates) would make them differ.

#![allow(clippy::unwrap_used)] // a test: an unwrap that fails is a failed test

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use prescient_core::{
    Cache, CacheError, Clock, EntityKey, EntityRef, Entry, Event, EventClock, Forecast, Local,
    Mutation, Observe, OnlineModel, Prediction, PutOutcome, Relation, SmolStr, Store, StoreError,
    Timestamp, Version,
};
use prescient_prefetch::{CoreStats, PlannerConfig, Prefetcher, PrefetcherConfig};
use prescient_replay::{Capacity, ReplayOptions, Workload, observe_prescient};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const HOUR: Duration = Duration::from_secs(3600);

/// What both drivers must agree on after each event.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    core: CoreStats,
    offered: u64,
    below_threshold: u64,
    issued: u64,
    thresholds: Vec<f32>,
}

fn row(core: CoreStats, p: &prescient_prefetch::PlannerStats, thresholds: Vec<f32>) -> Row {
    Row {
        core,
        offered: p.offered,
        below_threshold: p.below_threshold,
        issued: p.issued,
        thresholds,
    }
}

/// A week of a small shop: orders (written by the events that touch them), customers and
/// products, with busy hours and quiet nights.
fn log(seed: u64) -> Vec<Event> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut t = Timestamp::from_secs(1_700_000_000);
    let mut versions: HashMap<String, u64> = HashMap::new();
    let mut out = Vec::new();
    for i in 0..3000 {
        let gap = if rng.random_bool(0.02) {
            rng.random_range(3600..20_000)
        } else {
            rng.random_range(5..900)
        };
        t = t.plus(Duration::from_secs(gap));
        let order = format!("o{}", rng.random_range(0..300));
        let customer = format!("c{}", rng.random_range(0..60));
        let product = format!("p{}", rng.random_range(0..12) * rng.random_range(1..3));
        let ty = ["place", "pay", "ship", "view"][rng.random_range(0..4)];
        let mut e = Event::new(i.to_string(), ty, t)
            .with_entity(EntityRef::new("orders", order.clone()))
            .with_entity(EntityRef::new("customers", customer.clone()))
            .with_entity(EntityRef::new("products", product));
        if ty != "view" {
            let v = versions.entry(order.clone()).or_insert(1);
            *v += 1;
            e.mutations.push(Mutation {
                kind: "orders".into(),
                id: order.into(),
                version: Version(*v),
            });
        }
        // Some customers come back when the model expects them to, so that prefetches are
        // used as well as wasted.
        if rng.random_bool(0.4) {
            let key = EntityKey::new("customers", customer.clone());
            let back = t
                .plus(delay(&key))
                .plus(Duration::from_secs(rng.random_range(0..300)));
            out.push(
                Event::new(format!("{i}b"), "view", back)
                    .with_entity(EntityRef::new("customers", customer)),
            );
        }
        out.push(e);
    }
    out.sort_by_key(|e| e.time);
    out
}

/// When the model expects `key` to be read again.
fn delay(key: &EntityKey) -> Duration {
    Duration::from_secs(3700 + hash(key, 0) % 1800)
}

/// A deterministic model: after an event, each of its entities is predicted to be read again
/// after a delay and with a confidence drawn from a hash of the entity and what the model has
/// seen (events, ticks and fills, so that a different order of calls shows); at a tick, the
/// entities of the last event are predicted to be refreshed.
#[derive(Debug, Default)]
struct Hashy {
    seen: u64,
    fills: u64,
    last: Vec<EntityKey>,
}

fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn hash(key: &EntityKey, salt: u64) -> u64 {
    let mut h = salt;
    for b in key.kind.bytes().chain(key.id.bytes()) {
        h = mix(h ^ u64::from(b));
    }
    h
}

impl Hashy {
    fn predict(&self, keys: &[EntityKey], now: Timestamp, relation: Relation) -> Forecast {
        let mut f = Forecast::default();
        for key in keys {
            let h = hash(key, self.seen / 7 + self.fills / 5);
            let at = now.plus(delay(key));
            f.entities.push(Prediction {
                entity: key.clone(),
                confidence: 0.25 + (h % 1000) as f32 / 1400.0,
                expected_at: at,
                latest: at.plus(Duration::from_secs(400)),
                event_type: None,
                relation: if h.is_multiple_of(3) {
                    Relation::Linked
                } else {
                    relation
                },
            });
        }
        f
    }
}

impl OnlineModel for Hashy {
    fn name(&self) -> &str {
        "hashy"
    }
    fn observe(&mut self, e: &Event, _: Observe) {
        self.seen += 1;
        self.last = e.distinct_keys();
    }
    fn forecast(&mut self, e: &Event) -> Forecast {
        self.predict(&e.distinct_keys(), e.time, Relation::Same)
    }
    fn forecast_due(&mut self, now: Timestamp) -> Forecast {
        self.seen += 1;
        let last = self.last.clone();
        self.predict(&last, now, Relation::Tick)
    }
    fn filled(&mut self, _: &EntityKey, _: Timestamp) {
        self.fills += 1;
    }
}

/// The planner's settings for both: loads in no time, and a learned threshold.
fn planner() -> PlannerConfig {
    PlannerConfig {
        lead: Duration::ZERO,
        max_ttl: HOUR,
        ..PlannerConfig::default()
    }
}

fn replay_rows(events: &[Event]) -> (Vec<Row>, u64) {
    let w = Workload::prepare(events.to_vec(), &[]);
    let opts = ReplayOptions {
        capacity: Capacity::Entries(1 << 30),
        ttl: Some(HOUR),
        db_latency: Duration::ZERO,
        tick: Some(HOUR),
        planner: planner(),
        baselines: false,
        ..ReplayOptions::default()
    };
    let model = Local::new(Hashy::default());
    let rows = Arc::new(Mutex::new(Vec::new()));
    let sink = rows.clone();
    let stats = observe_prescient(
        &w,
        &opts,
        &model,
        Box::new(move |_, core| {
            let p = core.planner();
            let th = Relation::ALL.iter().map(|r| p.threshold(*r)).collect();
            sink.lock().unwrap().push(row(core.stats(), p.stats(), th));
        }),
    );
    let rows = rows.lock().unwrap().clone();
    (rows, stats.hits)
}

/// A cache in the events' time: entries expire by the clock that follows the events.
#[derive(Debug)]
struct VirtualCache {
    clock: Arc<EventClock>,
    entries: Mutex<HashMap<EntityKey, (Entry, Timestamp)>>,
    floors: Mutex<HashMap<EntityKey, Version>>,
}

#[async_trait]
impl Cache for VirtualCache {
    async fn get(&self, key: &EntityKey) -> Result<Option<Entry>, CacheError> {
        let now = self.clock.now();
        Ok(self
            .entries
            .lock()
            .unwrap()
            .get(key)
            .filter(|(_, exp)| now < *exp)
            .map(|(e, _)| e.clone()))
    }
    async fn put(
        &self,
        key: &EntityKey,
        e: Entry,
        ttl: Duration,
    ) -> Result<PutOutcome, CacheError> {
        let now = self.clock.now();
        let floor = self
            .floors
            .lock()
            .unwrap()
            .get(key)
            .copied()
            .unwrap_or_default();
        let mut entries = self.entries.lock().unwrap();
        let current = entries
            .get(key)
            .filter(|(_, exp)| now < *exp)
            .map(|(c, _)| c.version)
            .unwrap_or_default()
            .max(floor);
        if e.version < current {
            return Ok(PutOutcome::KeptNewer { current });
        }
        entries.insert(key.clone(), (e, now.plus(ttl)));
        Ok(PutOutcome::Stored)
    }
    async fn invalidate(&self, key: &EntityKey, v: Version) -> Result<(), CacheError> {
        let mut floors = self.floors.lock().unwrap();
        let f = floors.entry(key.clone()).or_default();
        *f = (*f).max(v);
        let mut entries = self.entries.lock().unwrap();
        if entries.get(key).is_some_and(|(e, _)| e.version < v) {
            entries.remove(key);
        }
        Ok(())
    }
}

/// A store whose rows the events write.
#[derive(Debug, Default)]
struct Rows(Mutex<HashMap<EntityKey, u64>>);

#[async_trait]
impl Store for Rows {
    async fn load_batch(
        &self,
        kind: &str,
        ids: &[SmolStr],
    ) -> Result<Vec<Option<Entry>>, StoreError> {
        let rows = self.0.lock().unwrap();
        Ok(ids
            .iter()
            .map(|id| {
                let v = rows
                    .get(&EntityKey::new(kind, id.clone()))
                    .copied()
                    .unwrap_or(1);
                Some(Entry::new(Version(v), "x"))
            })
            .collect())
    }
}

async fn tokio_rows(events: &[Event]) -> (Vec<Row>, u64) {
    let mut events = events.to_vec();
    events.sort_by_key(|e| e.time);
    let clock = Arc::new(EventClock::default());
    let cache = Arc::new(VirtualCache {
        clock: clock.clone(),
        entries: Mutex::default(),
        floors: Mutex::default(),
    });
    let store = Arc::new(Rows::default());
    let cfg = PrefetcherConfig {
        planner: planner(),
        demand_ttl: HOUR,
        tick: Some(HOUR),
        lockstep: true,
        ..PrefetcherConfig::default()
    };
    let pf = Prefetcher::new(
        cfg,
        clock.clone(),
        Arc::new(Local::new(Hashy::default())),
        cache,
        store.clone(),
    );
    let mut rows = Vec::new();
    for (i, e) in events.iter().enumerate() {
        pf.advance(e.time).await;
        pf.drain().await;
        if i > 0 {
            // Every decision up to this event's time is made, as the simulator reports it.
            let snap = pf.snapshot();
            let th = snap.thresholds.iter().map(|(_, t)| *t).collect();
            rows.push(row(pf.core_stats(), &pf.planner_stats(), th));
        }
        {
            let mut s = store.0.lock().unwrap();
            for m in &e.mutations {
                s.insert(m.key(), m.version.0);
            }
        }
        pf.invalidate(std::slice::from_ref(e)).await;
        // The consumer reads each entity at the store's version, as the simulator does.
        let keys = e.distinct_keys();
        for key in &keys {
            let want = store.0.lock().unwrap().get(key).copied().unwrap_or(1);
            pf.get(key, Version(want)).await.unwrap();
        }
        pf.predict(std::slice::from_ref(e)).await;
        pf.drain().await;
    }
    let hits = pf.metrics().hits.load(std::sync::atomic::Ordering::Relaxed);
    (rows, hits)
}

#[tokio::test]
async fn both_drivers_make_the_same_decisions_event_by_event() {
    let events = log(7);
    let (replay, replay_hits) = replay_rows(&events);
    let (tokio, tokio_hits) = tokio_rows(&events).await;
    assert_eq!(replay.len(), tokio.len());
    for (i, (a, b)) in replay.iter().zip(&tokio).enumerate() {
        assert_eq!(a, b, "the drivers part at event {i}");
    }
    assert_eq!(replay_hits, tokio_hits);
    // The log exercises what the test compares.
    let last = replay.last().unwrap();
    assert!(last.core.prefetches_issued > 500, "{last:?}");
    assert!(last.core.prefetches_used > 100, "{last:?}");
    assert!(last.core.prefetches_wasted > 50, "{last:?}");
    assert!(last.core.invalidations > 1000, "{last:?}");
    assert!(
        last.thresholds.iter().any(|t| (t - 0.5).abs() > 0.01),
        "a threshold moved: {last:?}"
    );
}
