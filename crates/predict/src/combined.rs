//! [`PrescientModel`]: the default predictor, three models behind one [`OnlineModel`].
//!
//! - The [`RelationalModel`] predicts the next event types and the entities linked to the
//!   event (process state, relations between entities).
//! - The [`ReuseModel`] predicts, window by window of the cache's data-age limit, when each
//!   entity is read again, so that an entry is refreshed just before a read it would otherwise
//!   miss.
//! - The [`KeyModel`] predicts successors between keys and sequential or strided runs of
//!   integer ids (block and key traces).
//!
//! Each sees every event. The forecast takes its next types from the relational model, and its
//! entities from all three: an entity predicted through one [`Relation`] for overlapping windows
//! keeps its most confident prediction; predictions for disjoint windows, or through different
//! relations, all stay. The prefetcher judges each relation by its own threshold and loads an
//! entity once (a later plan finds it cached), so a confident prediction of a relation it
//! distrusts does not hide a plainer one it trusts.
//!
//! **Sources are checked against what happens.** A sample of the entity predictions of each
//! [`Relation`] (same entity, linked, successor, sequential run, refresh) is watched: a
//! prediction comes true if its entity is touched before its window ends. A relation whose
//! watched predictions come true less than half of the time, and less than 80% as often as
//! their confidences promised (after enough of them), stops contributing entities until its
//! record recovers; it keeps being watched. So a relation that does not fit a log (readahead
//! over ids that are not sequential, say) costs no store load, and a part whose other relation
//! fits (sequential runs of case ids, say) keeps it.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use prescient_core::{
    EntityKey, Event, Forecast, Observe, OnlineModel, Prediction, Relation, Timestamp, process_each,
};
use rustc_hash::FxHashMap;

use crate::reuse::{Copies, CopiesAt};
use crate::{KeyConfig, KeyModel, RelationalConfig, RelationalModel, ReuseConfig, ReuseModel};

/// Relations whose entity predictions are watched, each on its own record.
const RELATIONS: usize = Relation::ALL.len();
/// One prediction in this many is watched.
const WATCH_EVERY: u64 = 8;
/// At most this many predictions are watched at once.
const MAX_WATCHED: usize = 200_000;
/// A relation is judged once this many (decayed) watched predictions have resolved.
const MIN_RESOLVED: f32 = 100.0;
/// Watched counts halve beyond this, so that the record follows drift.
const MAX_RESOLVED: f32 = 5_000.0;
/// A relation contributes while at least this share of its watched predictions come true...
const MIN_SHARE: f32 = 0.5;
/// ... or while its confidences keep their promise: at least this share of the predictions
/// its confidences expected to come true did. A calibrated relation that is often unsure stays
/// (the prefetcher's threshold filters its unsure predictions); an overconfident one goes.
const KEPT_PROMISE: f32 = 0.8;
/// How long a prediction without a data-age window is watched past its expected time.
const DEFAULT_WATCH: Duration = Duration::from_secs(3600);

/// The record of one relation's watched predictions (of entities not read within the data-age
/// window, whose prefetch would be a store load).
#[derive(Debug, Clone, Copy, Default)]
pub struct RelationRecord {
    /// Watched predictions resolved (decayed).
    pub resolved: f32,
    /// Of those, the ones that came true.
    pub came_true: f32,
    /// The sum of their confidences: how many were expected to come true.
    pub expected: f32,
}

impl RelationRecord {
    /// Whether the relation's entity predictions are used.
    pub fn trusted(&self) -> bool {
        self.resolved < MIN_RESOLVED
            || self.came_true >= MIN_SHARE * self.resolved
            || self.came_true >= KEPT_PROMISE * self.expected
    }
}

/// The default model (`online`). See the [module documentation](self).
#[derive(Debug)]
pub struct PrescientModel {
    relational: RelationalModel,
    reuse: ReuseModel,
    keys: KeyModel,
    watch: Watch,
    /// Batches of at least this many events run the reuse-time part on a second thread;
    /// `None`: never (see [`PrescientModel::set_parallel_batches`]).
    parallel_from: Option<usize>,
}

/// The watched predictions and the record of each relation.
#[derive(Debug)]
struct Watch {
    records: [RelationRecord; RELATIONS],
    watched: FxHashMap<EntityKey, (usize, i64, f32)>,
    deadlines: BinaryHeap<Reverse<(i64, EntityKey)>>,
    watch_span_us: i64,
    seen: u64,
    now: i64,
}

impl Default for PrescientModel {
    fn default() -> Self {
        PrescientModel::new(RelationalModel::new(RelationalConfig::default()))
    }
}

/// How many times its estimated size an entity is given in a memory budget: a hash table
/// just grown holds up to twice the room it uses, and ids and link lists past their inline
/// size live on the heap (`docs/deployment.md` has the measurement behind it).
pub const TABLE_HEADROOM: usize = 2;

impl PrescientModel {
    /// The default model around `relational` (fresh or restored from a snapshot).
    pub fn new(relational: RelationalModel) -> Self {
        PrescientModel {
            parallel_from: more_than_two_cores().then_some(PARALLEL_BATCH),
            relational,
            reuse: ReuseModel::new(ReuseConfig::default()),
            keys: KeyModel::new(KeyConfig::default()),
            watch: Watch {
                records: [RelationRecord::default(); RELATIONS],
                watched: FxHashMap::default(),
                deadlines: BinaryHeap::new(),
                watch_span_us: DEFAULT_WATCH.as_micros() as i64,
                seen: 0,
                now: i64::MIN,
            },
        }
    }

    /// How each relation's watched predictions fared, by relation name.
    pub fn records(&self) -> impl Iterator<Item = (&'static str, RelationRecord)> + '_ {
        Relation::ALL
            .iter()
            .map(|r| (r.as_str(), self.watch.records[r.index()]))
    }

    /// The relational part (for snapshots and explanations).
    pub fn relational(&self) -> &RelationalModel {
        &self.relational
    }

    /// The relational part, mutably.
    pub fn relational_mut(&mut self) -> &mut RelationalModel {
        &mut self.relational
    }

    /// The reuse-time part.
    pub fn reuse(&self) -> &ReuseModel {
        &self.reuse
    }

    /// Whether batches of at least [`PARALLEL_BATCH`] events run the reuse-time part on a
    /// second thread ([`OnlineModel::process_batch`]; the answers are the same either way). On
    /// by default where the machine has more than two cores. With two, as on the machine of
    /// `bench live`, the model's second thread competes with the cache, the broker and the
    /// consumers: there `serve` processed about 5% more events per second with it, and the
    /// consumer's p99 read latency on a hit rose by about 0.35 ms.
    pub fn set_parallel_batches(&mut self, on: bool) {
        self.parallel_from = on.then_some(PARALLEL_BATCH);
    }

    /// The model with a fresh reuse-time part of settings `cfg`.
    pub fn with_reuse(mut self, cfg: ReuseConfig) -> Self {
        self.reuse = ReuseModel::new(cfg);
        self
    }

    /// The model with its entity bounds set from a memory budget of `mb` mebibytes for the
    /// entities it tracks; `None` keeps the bounds as they are.
    ///
    /// The relational and the reuse-time parts each track every entity read, so both get
    /// the same bound: the budget over the estimated bytes one entity costs in the two
    /// ([`PrescientModel::estimated_entity_bytes`]) times [`TABLE_HEADROOM`], at least 2. The
    /// estimate comes from the sizes of the types; the headroom covers what they do not show:
    /// a hash table just grown holds up to twice the room it uses, and long ids and link lists
    /// live on the heap. The key part keeps its own bound ([`KeyConfig::max_keys`]), and what
    /// was learned is not counted. What each part has learned is kept.
    ///
    /// # Examples
    /// ```
    /// use prescient_predict::PrescientModel;
    ///
    /// let m = PrescientModel::default().with_memory_mb(Some(64));
    /// let n = m.relational().config().max_entities;
    /// assert_eq!(n, m.reuse().config().max_entities);
    /// assert!(n * m.estimated_entity_bytes() * 2 <= 64 << 20);
    /// ```
    pub fn with_memory_mb(mut self, mb: Option<usize>) -> Self {
        let Some(mb) = mb else {
            return self;
        };
        let per = self
            .estimated_entity_bytes()
            .saturating_mul(TABLE_HEADROOM)
            .max(1);
        let n = (mb.saturating_mul(1 << 20) / per).max(2);
        let mut cfg = self.relational.config().clone();
        cfg.max_entities = n;
        self.relational.reconfigure(cfg);
        self.reuse.set_max_entities(n);
        self
    }

    /// The estimated bytes one tracked entity costs in the relational and the reuse-time
    /// parts together (see [`PrescientModel::with_memory_mb`]).
    pub fn estimated_entity_bytes(&self) -> usize {
        self.relational.estimated_entity_bytes() + self.reuse.estimated_entity_bytes()
    }

    /// [`OnlineModel::process_batch`] with the reuse-time part on a second thread: it shares
    /// nothing with the relational and key parts, and costs about as much as both. Each part
    /// sees the events in order; then, event by event, the three forecasts are merged as
    /// [`OnlineModel::forecast`] merges them, reading each entity's cached copy as the reuse
    /// part had it after that event (from its [journal](ReuseModel::keep_journal)). So the
    /// answers are those of `observe` then `forecast` event by event.
    fn process_in_parallel(&mut self, items: &[(&Event, Observe)]) -> Vec<Forecast> {
        let PrescientModel {
            relational,
            reuse,
            keys,
            watch,
            ..
        } = self;
        let reuse_part = |reuse: &mut ReuseModel| -> Vec<Forecast> {
            reuse.keep_journal();
            items
                .iter()
                .enumerate()
                .map(|(i, &(event, mode))| {
                    reuse.journal_step(u32::try_from(i).unwrap_or(u32::MAX));
                    if mode != Observe::Skip {
                        reuse.observe(event, mode);
                    }
                    reuse.forecast(event)
                })
                .collect()
        };
        let others = |relational: &mut RelationalModel, keys: &mut KeyModel| {
            items
                .iter()
                .map(|&(event, mode)| {
                    if mode != Observe::Skip {
                        relational.observe(event, mode);
                        keys.observe(event, mode);
                    }
                    (relational.forecast(event), keys.forecast(event))
                })
                .collect::<Vec<_>>()
        };
        let (reused, theirs) = rayon::join(|| reuse_part(reuse), || others(relational, keys));
        let journal = reuse.take_journal();
        items
            .iter()
            .zip(theirs.into_iter().zip(reused))
            .enumerate()
            .map(|(i, (&(event, mode), ((f, k), r)))| {
                if mode != Observe::Skip {
                    watch.resolve(event);
                }
                let copies = CopiesAt {
                    reuse,
                    journal: &journal,
                    step: u32::try_from(i).unwrap_or(u32::MAX),
                };
                watch.merge(&copies, f, [r, k])
            })
            .collect()
    }
}

/// Whether the machine has more than two cores. `available_parallelism` reads the cgroup
/// files on Linux: it is asked once per process, not once per model.
fn more_than_two_cores() -> bool {
    static MORE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *MORE.get_or_init(|| std::thread::available_parallelism().is_ok_and(|n| n.get() > 2))
}

/// Batches of at least this many events run the reuse-time part on a second thread, when that
/// is on ([`PrescientModel::set_parallel_batches`]). Handing work to another thread and back costs about a
/// hundred microseconds here (2 virtual cores); on the OCEL log, batches of 8 ran slower than
/// event by event, batches of 16 to 24 about as fast, batches of 64 about a quarter faster.
pub const PARALLEL_BATCH: usize = 32;

impl Watch {
    fn record(&mut self, relation: usize, came_true: bool, confidence: f32) {
        let r = &mut self.records[relation];
        r.resolved += 1.0;
        r.came_true += f32::from(u8::from(came_true));
        r.expected += confidence;
        if r.resolved > MAX_RESOLVED {
            r.resolved *= 0.5;
            r.came_true *= 0.5;
            r.expected *= 0.5;
        }
    }

    /// Watches a sample of `preds`, each on the record of its relation.
    fn watch(&mut self, preds: &[Prediction], copies: &impl Copies) {
        for p in preds {
            self.seen += 1;
            if !self.seen.is_multiple_of(WATCH_EVERY) || self.watched.len() >= MAX_WATCHED {
                continue;
            }
            // An entity whose copy is likely cached and fresh: a prefetch of it
            // would be skipped, so its prediction says nothing about wasted loads.
            if self.watched.contains_key(&p.entity) || copies.copy_fresh(&p.entity, self.now) {
                continue;
            }
            let end = p
                .latest
                .as_micros()
                .min(p.expected_at.as_micros().saturating_add(self.watch_span_us));
            self.watched
                .insert(p.entity.clone(), (p.relation.index(), end, p.confidence));
            self.deadlines.push(Reverse((end, p.entity.clone())));
        }
    }

    /// Resolves watched predictions: the event's entities came true, and those past their
    /// window did not.
    fn resolve(&mut self, event: &Event) {
        let t = event.time.as_micros();
        self.now = self.now.max(t);
        if self.watched.is_empty() {
            return;
        }
        for r in &event.entities {
            let key = r.key();
            if let Some(&(relation, end, confidence)) = self.watched.get(&key)
                && t <= end
            {
                self.watched.remove(&key);
                self.record(relation, true, confidence);
            }
        }
        while let Some(Reverse((end, _))) = self.deadlines.peek() {
            if *end >= self.now {
                break;
            }
            let Some(Reverse((end, key))) = self.deadlines.pop() else {
                break;
            };
            if let Some(&(relation, e, confidence)) = self.watched.get(&key)
                && e == end
            {
                self.watched.remove(&key);
                self.record(relation, false, confidence);
            }
        }
    }

    /// Merges the relational forecast `f` with `more` (the reuse-time and key forecasts, in
    /// that order) of one event, `copies` being the cached copies as of that event.
    fn merge(
        &mut self,
        copies: &impl Copies,
        mut f: Forecast,
        mut more: [Forecast; 2],
    ) -> Forecast {
        // A prediction whose whole window falls while the entity's copy is still fresh would
        // load nothing new (the prefetcher skips it); left in, it would displace a refresh
        // planned for the same entity.
        let useful = |p: &Prediction| {
            copies
                .fresh_until(&p.entity)
                .is_none_or(|until| p.latest.as_micros() > until)
        };
        f.entities.retain(useful);
        more[1].entities.retain(useful);
        self.watch(&f.entities, copies);
        self.watch(&more[0].entities, copies);
        self.watch(&more[1].entities, copies);
        let records = &self.records;
        let trusted = |p: &Prediction| records[p.relation.index()].trusted();
        f.entities.retain(trusted);
        for m in &mut more {
            m.entities.retain(trusted);
        }
        if more.iter().all(|m| m.entities.is_empty()) {
            return f;
        }
        // Per entity, the predictions kept so far. Two predictions of one entity through one
        // relation for overlapping windows are one use: the more confident stays. Disjoint
        // windows (a refresh before the copy expires, a use after it) are two uses, and both
        // stay; so do predictions through different relations (see the module docs).
        // `at` holds each entity's first and last prediction, and `next` links each
        // prediction to the entity's next one: so an entity's predictions are found without
        // a scan over the others (an event with many entities costs linearly in them).
        let mut at: FxHashMap<EntityKey, (usize, usize)> = FxHashMap::default();
        let mut next: Vec<usize> = vec![usize::MAX; f.entities.len()];
        for (i, p) in f.entities.iter().enumerate() {
            match at.get_mut(&p.entity) {
                Some((_, last)) => {
                    next[*last] = i;
                    *last = i;
                }
                None => {
                    at.insert(p.entity.clone(), (i, i));
                }
            }
        }
        let overlap = |a: &Prediction, b: &Prediction| {
            a.expected_at <= b.latest.max(b.expected_at)
                && b.expected_at <= a.latest.max(a.expected_at)
        };
        for m in more {
            for p in m.entities {
                let i = f.entities.len();
                let same = match at.get_mut(&p.entity) {
                    Some((first, last)) => {
                        let mut j = *first;
                        let found = loop {
                            let q = &f.entities[j];
                            if q.relation == p.relation && overlap(q, &p) {
                                break Some(j);
                            }
                            if next[j] == usize::MAX {
                                break None;
                            }
                            j = next[j];
                        };
                        if found.is_none() {
                            next[*last] = i;
                            *last = i;
                        }
                        found
                    }
                    None => {
                        at.insert(p.entity.clone(), (i, i));
                        None
                    }
                };
                match same {
                    Some(j) => {
                        if f.entities[j].confidence < p.confidence {
                            f.entities[j] = p;
                        }
                    }
                    None => {
                        f.entities.push(p);
                        next.push(usize::MAX);
                    }
                }
            }
        }
        f.entities
            .sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
        f
    }
}

impl OnlineModel for PrescientModel {
    fn name(&self) -> &str {
        "online"
    }

    fn observe(&mut self, event: &Event, mode: Observe) {
        self.watch.resolve(event);
        self.relational.observe(event, mode);
        self.reuse.observe(event, mode);
        self.keys.observe(event, mode);
    }

    fn forecast(&mut self, event: &Event) -> Forecast {
        let f = self.relational.forecast(event);
        let more = [self.reuse.forecast(event), self.keys.forecast(event)];
        self.watch.merge(&self.reuse, f, more)
    }

    fn process_batch(&mut self, items: &[(&Event, Observe)]) -> Vec<Forecast> {
        if self.parallel_from.is_none_or(|from| items.len() < from) {
            return process_each(self, items);
        }
        self.process_in_parallel(items)
    }

    fn forecast_due(&mut self, now: Timestamp) -> Forecast {
        self.watch.now = self.watch.now.max(now.as_micros());
        let mut f = self.reuse.forecast_due(now);
        self.watch.watch(&f.entities, &self.reuse);
        let records = &self.watch.records;
        f.entities.retain(|p| records[p.relation.index()].trusted());
        f
    }

    fn set_max_age(&mut self, max_age: Option<Duration>) {
        self.watch.watch_span_us =
            i64::try_from(max_age.unwrap_or(DEFAULT_WATCH).as_micros()).unwrap_or(i64::MAX);
        self.reuse.set_window(max_age);
        self.relational.set_max_age(max_age);
        self.keys.set_max_age(max_age);
    }

    fn filled(&mut self, key: &EntityKey, at: Timestamp) {
        self.reuse.filled(key, at);
    }

    fn set_novelty_discount(&mut self, on: bool) {
        self.relational.set_novelty_discount(on);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prescient_core::{EntityRef, Timestamp};

    #[test]
    fn merges_entities_and_keeps_next_types() {
        let mut m = PrescientModel::default();
        let mut last = Forecast::default();
        for i in 0..400i64 {
            let e = Event::new(
                i.to_string(),
                if i % 2 == 0 { "a" } else { "b" },
                Timestamp::from_secs(i * 60),
            )
            .with_entity(EntityRef::new("case", (i / 2).to_string()));
            m.observe(&e, Observe::Learn);
            last = m.forecast(&e);
        }
        assert!(!last.next.is_empty());
        // An entity appears twice through one relation only for disjoint windows.
        for (i, a) in last.entities.iter().enumerate() {
            for b in &last.entities[i + 1..] {
                if a.entity == b.entity && a.relation == b.relation {
                    let disjoint = a.latest.max(a.expected_at) < b.expected_at
                        || b.latest.max(b.expected_at) < a.expected_at;
                    assert!(disjoint, "{} twice for overlapping windows", a.entity);
                }
            }
        }
        m.set_max_age(None);
        assert_eq!(m.reuse().config().window, None);
    }

    /// Orders of a few customers, each with items, read at gaps of minutes to hours, so that
    /// cached copies expire, windows pass and entities come back; some events write, and a few
    /// timers are read about every 90 minutes.
    fn stream(seed: u64, n: usize) -> Vec<(Event, Observe)> {
        let mut x = seed | 1;
        let mut next = |m: u64| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (x >> 33) % m
        };
        let mut t = 0i64;
        let mut timer = 0i64;
        let types = ["place", "pick", "pack", "ship", "pay"];
        (0..n)
            .map(|i| {
                t += match next(4) {
                    0 => 30,
                    1 => 600,
                    2 => 3_000,
                    _ => 9_000,
                } + next(300) as i64;
                let order = next(40);
                let mut e = Event::new(
                    i.to_string(),
                    types[next(types.len() as u64) as usize],
                    Timestamp::from_secs(t),
                )
                .with_entity(EntityRef::new("order", order.to_string()))
                .with_entity(EntityRef::new("customer", (order % 7).to_string()));
                for _ in 0..next(3) {
                    e = e.with_entity(EntityRef::new("item", next(60).to_string()));
                }
                // A few entities read about every 90 minutes: confident refreshes.
                if t >= timer {
                    timer = t + 5_400;
                    e = e.with_entity(EntityRef::new("timer", next(3).to_string()));
                }
                if next(5) == 0 {
                    e.mutations.push(prescient_core::Mutation {
                        kind: "order".into(),
                        id: order.to_string().into(),
                        version: prescient_core::Version(i as u64 + 1),
                    });
                }
                let mode = match next(10) {
                    0 => Observe::Track,
                    1 => Observe::Skip,
                    _ => Observe::Learn,
                };
                (e, mode)
            })
            .collect()
    }

    fn model(max_entities: usize) -> PrescientModel {
        let mut m = PrescientModel::default().with_reuse(ReuseConfig {
            max_entities,
            ..ReuseConfig::default()
        });
        m.set_max_age(Some(Duration::from_secs(3600)));
        m.set_parallel_batches(true);
        m
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

        /// A batch, whose reuse-time part runs on a second thread, answers exactly as the
        /// events one by one: with copies assumed refreshed, with fills reported between
        /// batches, and with entities forgotten in the middle of a batch.
        #[test]
        fn a_parallel_batch_answers_as_event_by_event(
            seed in 0u64..1_000_000,
            sizes in proptest::collection::vec(1usize..100, 1..20),
            small in proptest::bool::ANY,
            fills in proptest::bool::ANY,
        ) {
            let events = stream(seed, 1_500);
            let max_entities = if small { 30 } else { 1_000_000 };
            let (mut one, mut many) = (model(max_entities), model(max_entities));
            let (mut i, mut k) = (0, 0);
            while i < events.len() {
                let n = sizes[k % sizes.len()].min(events.len() - i);
                k += 1;
                let items: Vec<(&Event, Observe)> =
                    events[i..i + n].iter().map(|(e, m)| (e, *m)).collect();
                let want = process_each(&mut one, &items);
                let got = many.process_batch(&items);
                proptest::prop_assert_eq!(&got, &want, "batch at event {}", i);
                i += n;
                if fills && k % 3 == 0 {
                    // The most confident prediction of the batch was loaded.
                    let at = events[i - 1].0.time;
                    if let Some(p) = want.iter().flat_map(|f| &f.entities).next() {
                        one.filled(&p.entity, at);
                        many.filled(&p.entity, at);
                    }
                }
            }
            let due = Timestamp::from_micros(events[events.len() - 1].0.time.as_micros() + 7_200_000_000);
            proptest::prop_assert_eq!(many.forecast_due(due), one.forecast_due(due));
        }
    }

    #[test]
    fn a_relation_is_judged_by_its_hits_and_its_promise() {
        let rec = |resolved, came_true, expected| RelationRecord {
            resolved,
            came_true,
            expected,
        };
        // Too few resolved to judge.
        assert!(rec(50.0, 0.0, 50.0).trusted());
        // Mostly right.
        assert!(rec(200.0, 120.0, 190.0).trusted());
        // Often wrong but says so: the prefetcher's threshold keeps its sure predictions.
        assert!(rec(200.0, 60.0, 70.0).trusted());
        // Often wrong while claiming to be sure: silenced.
        assert!(!rec(200.0, 60.0, 190.0).trusted());
    }

    #[test]
    fn a_memory_budget_bounds_the_entities_of_both_parts() {
        let before = PrescientModel::default();
        let kept = PrescientModel::default().with_memory_mb(None);
        assert_eq!(
            kept.relational().config().max_entities,
            before.relational().config().max_entities
        );
        assert_eq!(
            kept.reuse().config().max_entities,
            before.reuse().config().max_entities
        );
        let mut m = PrescientModel::default().with_memory_mb(Some(1));
        let n = m.relational().config().max_entities;
        assert_eq!(n, m.reuse().config().max_entities);
        assert_eq!(n, (1 << 20) / (m.estimated_entity_bytes() * TABLE_HEADROOM));
        assert!(n > 100 && n < 100_000, "{n}");
        for i in 0..(3 * n) as i64 {
            let e = Event::new(i.to_string(), "read", Timestamp::from_secs(i))
                .with_entity(EntityRef::new("case", i.to_string()));
            m.observe(&e, Observe::Learn);
            let _ = m.forecast(&e);
            assert!(m.relational().tracked_entities() <= n);
            assert!(m.reuse().tracked() <= n);
        }
        assert!(m.relational().evicted_entities() > 0);
        // The smallest budget still tracks something.
        let tiny = PrescientModel::default().with_memory_mb(Some(0));
        assert_eq!(tiny.relational().config().max_entities, 2);
    }
}
