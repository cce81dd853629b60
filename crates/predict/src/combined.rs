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
//! distrusts does not hide a plainer one it trusts: on the headline replay, keeping both
//! closed 0.232 of bpic2012's gap instead of 0.223.
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
    EntityKey, Event, Forecast, Observe, OnlineModel, Prediction, Relation, Timestamp,
};
use rustc_hash::FxHashMap;

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

impl PrescientModel {
    /// The default model around `relational` (fresh or restored from a snapshot).
    pub fn new(relational: RelationalModel) -> Self {
        PrescientModel {
            relational,
            reuse: ReuseModel::new(ReuseConfig::default()),
            keys: KeyModel::new(KeyConfig::default()),
            records: [RelationRecord::default(); RELATIONS],
            watched: FxHashMap::default(),
            deadlines: BinaryHeap::new(),
            watch_span_us: DEFAULT_WATCH.as_micros() as i64,
            seen: 0,
            now: i64::MIN,
        }
    }

    /// How each relation's watched predictions fared, by relation name.
    pub fn records(&self) -> impl Iterator<Item = (&'static str, RelationRecord)> + '_ {
        Relation::ALL
            .iter()
            .map(|r| (r.as_str(), self.records[r.index()]))
    }

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
    fn watch(&mut self, preds: &[Prediction]) {
        for p in preds {
            self.seen += 1;
            if !self.seen.is_multiple_of(WATCH_EVERY) || self.watched.len() >= MAX_WATCHED {
                continue;
            }
            // An entity whose copy is likely cached and fresh: a prefetch of it
            // would be skipped, so its prediction says nothing about wasted loads.
            if self.watched.contains_key(&p.entity) || self.reuse.copy_fresh(&p.entity, self.now) {
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
}

impl OnlineModel for PrescientModel {
    fn name(&self) -> &str {
        "online"
    }

    fn observe(&mut self, event: &Event, mode: Observe) {
        self.resolve(event);
        self.relational.observe(event, mode);
        self.reuse.observe(event, mode);
        self.keys.observe(event, mode);
    }

    fn forecast(&mut self, event: &Event) -> Forecast {
        let mut f = self.relational.forecast(event);
        let mut more = [self.reuse.forecast(event), self.keys.forecast(event)];
        // A prediction whose whole window falls while the entity's copy is still fresh would
        // load nothing new (the prefetcher skips it); left in, it would displace a refresh
        // planned for the same entity.
        let reuse = &self.reuse;
        let useful = |p: &Prediction| {
            reuse
                .fresh_until(&p.entity)
                .is_none_or(|until| p.latest.as_micros() > until)
        };
        f.entities.retain(useful);
        more[1].entities.retain(useful);
        self.watch(&f.entities);
        self.watch(&more[0].entities);
        self.watch(&more[1].entities);
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
        // `at` holds each entity's first prediction; an entity predicted again is rare, so its
        // other predictions are found by a scan.
        let mut at: FxHashMap<EntityKey, usize> = FxHashMap::default();
        for (i, p) in f.entities.iter().enumerate() {
            at.entry(p.entity.clone()).or_insert(i);
        }
        let overlap = |a: &Prediction, b: &Prediction| {
            a.expected_at <= b.latest.max(b.expected_at)
                && b.expected_at <= a.latest.max(a.expected_at)
        };
        for m in more {
            for p in m.entities {
                let same = match at.get(&p.entity) {
                    Some(&first) => (first..f.entities.len()).find(|&i| {
                        let q = &f.entities[i];
                        q.entity == p.entity && q.relation == p.relation && overlap(q, &p)
                    }),
                    None => {
                        at.insert(p.entity.clone(), f.entities.len());
                        None
                    }
                };
                match same {
                    Some(i) => {
                        if f.entities[i].confidence < p.confidence {
                            f.entities[i] = p;
                        }
                    }
                    None => f.entities.push(p),
                }
            }
        }
        f.entities
            .sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
        f
    }

    fn forecast_due(&mut self, now: Timestamp) -> Forecast {
        self.now = self.now.max(now.as_micros());
        let mut f = self.reuse.forecast_due(now);
        self.watch(&f.entities);
        let records = &self.records;
        f.entities.retain(|p| records[p.relation.index()].trusted());
        f
    }

    fn set_max_age(&mut self, max_age: Option<Duration>) {
        self.watch_span_us =
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
}
