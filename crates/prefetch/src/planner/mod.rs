//! The planner: the prefetch manager's decisions, free of I/O and of wall-clock time.
//!
//! The planner is told about predictions, reads and load outcomes, each with the current time,
//! and answers with the batches to load now. Its drivers do the I/O: the tokio driver in
//! [`crate::runtime`] for `serve`, and the virtual-time simulator in `prescient-replay`. Both run
//! the same decisions, so a replay measures the code that production runs.
//!
//! What it decides:
//! - **Threshold.** Predictions below the confidence threshold are dropped. With a target
//!   precision, the threshold is learned online: the driver reports each prefetch that served a
//!   read ([`Planner::on_prefetch_used`]), and the threshold rises while the recent share of used
//!   prefetches is below the target and falls while it is above, within bounds, by steps in
//!   proportion to the distance from the target. A wasted
//!   prefetch is load on the store; a useful one saves a miss. Each [`Relation`] (the same
//!   entity, a linked one, a successor, a sequential run, a refresh) has its own threshold and
//!   record, so that a weak source of predictions does not silence a strong one. A threshold
//!   moves only on prefetches issued, so one lifted above every offer by a bad spell would stay
//!   there: after `STARVED_OFFERS` (256) offers in a row turned away, it steps down and judges its
//!   relation afresh, if that relation's prefetches met the target so far.
//! - **Just in time.** A read expected at `t` is loaded at `t - lead`, not now.
//! - **One plan per relation and window.** A newer prediction for an entity replaces its pending
//!   plans from the same [`Relation`] whose windows overlap the new one. Plans from other
//!   relations, or for disjoint windows (a refresh due before the copy expires, a use predicted
//!   after it), coexist, up to [`MAX_PLANS_PER_ENTITY`], the nearest kept; each is checked at its
//!   own due time, so a plan whose entity an earlier one loaded is skipped as cached.
//! - **Skips.** At load time, entities cached with a current entry that is still usable at the
//!   expected read, and entities already being loaded (by a prefetch or a consumer miss), are skipped.
//! - **Priority.** Among due loads, higher confidence goes first, then earlier expected use.
//! - **Limits.** At most `max_in_flight` prefetched entities in flight, and a [`Budget`] on
//!   extra store load.
//! - **Batches.** Due loads are grouped by entity kind, up to `batch_size` each.
//! - **Retries.** A failed load is retried with exponential backoff and jitter, a bounded
//!   number of times, and only while its window is open.
//! - **TTL.** A prefetched entry lives until the end of its predicted window (plus slack),
//!   within `[min_ttl, max_ttl]`.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::fmt::Debug;
use std::hash::Hash;
use std::time::Duration;

use prescient_core::{EntityKey, Relation, SmolStr, Timestamp};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use rustc_hash::FxHashMap;
use serde::Serialize;

use crate::budget::{Budget, BudgetConfig};
use crate::retry::RetryConfig;

mod threshold;
use threshold::Thresholds;

/// A key the planner can schedule: an entity identity with a kind to batch by.
pub trait PlanKey: Clone + Eq + Hash + Ord + Debug {
    /// The batch key: loads of one kind go to the store together.
    type Kind: Clone + Eq + Hash + Debug;
    /// This entity's kind.
    fn kind(&self) -> Self::Kind;
}

impl PlanKey for EntityKey {
    type Kind = SmolStr;
    fn kind(&self) -> SmolStr {
        self.kind.clone()
    }
}

/// Planner settings. See the module docs for what each one does.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannerConfig {
    /// The least confidence worth a prefetch (the starting point when it is learned).
    pub threshold: f32,
    /// Learn the threshold so that about this share of prefetches is used; `None` keeps it fixed.
    pub target_precision: Option<f32>,
    /// The bounds of a learned threshold.
    pub threshold_bounds: (f32, f32),
    /// How long before the expected read a prefetch is loaded.
    pub lead: Duration,
    /// Due loads up to this far in the future are issued together, to fill batches.
    pub batch_window: Duration,
    /// Predictions expected further out than this are dropped.
    pub horizon: Duration,
    /// The most prefetched entities in flight at once.
    pub max_in_flight: usize,
    /// The most entities in one batch.
    pub batch_size: usize,
    /// The most pending predictions kept; further ones are dropped.
    pub max_pending: usize,
    /// The shortest TTL given to a prefetched entry.
    pub min_ttl: Duration,
    /// The longest TTL given to a prefetched entry (the data-age limit).
    pub max_ttl: Duration,
    /// Extra time added after the predicted window's end.
    pub ttl_slack: Duration,
    /// The budget on extra store load.
    pub budget: BudgetConfig,
    /// Retries of failed loads.
    pub retry: RetryConfig,
    /// Seed of the jitter generator (replays are deterministic).
    pub seed: u64,
}

impl Default for PlannerConfig {
    fn default() -> Self {
        PlannerConfig {
            threshold: 0.5,
            target_precision: Some(0.5),
            threshold_bounds: (0.3, 0.95),
            lead: Duration::from_millis(20),
            batch_window: Duration::from_millis(5),
            horizon: Duration::from_secs(7 * 24 * 3600),
            max_in_flight: 512,
            batch_size: 64,
            max_pending: 1_000_000,
            min_ttl: Duration::from_secs(1),
            max_ttl: Duration::from_secs(3600),
            ttl_slack: Duration::from_secs(1),
            budget: BudgetConfig::default(),
            retry: RetryConfig::default(),
            seed: 0x5eed,
        }
    }
}

/// A prediction offered to the planner.
#[derive(Debug, Clone, PartialEq)]
pub struct Offer<K> {
    /// The entity.
    pub key: K,
    /// Probability that it is read inside the window.
    pub confidence: f32,
    /// The expected read.
    pub expected_at: Timestamp,
    /// The end of the window.
    pub latest: Timestamp,
    /// How the predictor found the entity: each relation has its own learned threshold.
    pub relation: Relation,
}

/// Who started a load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The prefetcher.
    Prefetch,
    /// A consumer read that missed.
    Demand,
}

/// Identifies one load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LoadId(pub u64);

/// A load in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InFlight {
    /// The load.
    pub id: LoadId,
    /// Who started it.
    pub origin: Origin,
    /// When it started.
    pub started: Timestamp,
    /// For a prefetch, how the predictor found the entity.
    pub relation: Relation,
    /// Whether a read that missed joined it (a prefetch is then credited as used).
    pub joined: bool,
}

/// One entity of a prefetch batch.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchItem<K> {
    /// The entity.
    pub key: K,
    /// Its load id (registered as in flight).
    pub load: LoadId,
    /// The prediction's confidence.
    pub confidence: f32,
    /// The expected read.
    pub expected_at: Timestamp,
    /// The end of the predicted window.
    pub latest: Timestamp,
    /// Attempts so far, this one included.
    pub attempt: u32,
    /// How the predictor found the entity (report it with [`Planner::on_prefetch_used`]).
    pub relation: Relation,
}

/// Entities of one kind to load together.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch<K: PlanKey> {
    /// The kind.
    pub kind: K::Kind,
    /// The entities.
    pub items: Vec<BatchItem<K>>,
}

/// What the planner did with the predictions of one [`Relation`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct RelationStats {
    /// Prefetch loads issued for predictions found through this relation.
    pub issued: u64,
    /// Of those, the ones reported used ([`Planner::on_prefetch_used`]).
    pub used: u64,
    /// The confidence threshold in force now.
    pub threshold: f32,
}

/// Counters of what the planner did. Serialized (in `replay` and `bench live` JSON) with
/// `by_relation` as a map from relation name to its counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PlannerStats {
    /// Predictions offered.
    pub offered: u64,
    /// Offers below the threshold.
    pub below_threshold: u64,
    /// Offers expected beyond the horizon or already past.
    pub out_of_horizon: u64,
    /// Pending plans replaced by a newer offer for an overlapping window of the same entity,
    /// or dropped as the farthest when the entity had [`MAX_PLANS_PER_ENTITY`] plans.
    pub replaced: u64,
    /// Offers dropped because the pending set was full.
    pub dropped_full: u64,
    /// Due plans skipped because the entity was cached and fresh (as this process tracks it,
    /// or, just before the load, as the cache answered).
    pub skipped_cached: u64,
    /// Due plans skipped because the entity was already being loaded.
    pub skipped_in_flight: u64,
    /// Plans dropped because their window closed before they could be loaded.
    pub expired: u64,
    /// Times a due plan waited for budget.
    pub budget_waits: u64,
    /// Prefetch loads issued (retries included).
    pub issued: u64,
    /// Batches issued.
    pub batches: u64,
    /// Prefetch loads that succeeded.
    pub loaded: u64,
    /// Retries scheduled.
    pub retries: u64,
    /// Prefetch loads that failed for good.
    pub failed: u64,
    /// Per relation, in the order of [`Relation::ALL`].
    #[serde(serialize_with = "by_relation_name")]
    pub by_relation: [RelationStats; Relation::ALL.len()],
}

fn by_relation_name<S: serde::Serializer>(
    stats: &[RelationStats; Relation::ALL.len()],
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_map(Relation::ALL.iter().map(|r| (r.as_str(), stats[r.index()])))
}

/// A pending plan, as it moves between planners ([`Planner::export_plans`]).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PlanState {
    /// When it falls due.
    pub due: Timestamp,
    /// The prediction's confidence.
    pub confidence: f32,
    /// The expected read.
    pub expected_at: Timestamp,
    /// The end of the window.
    pub latest: Timestamp,
    /// Attempts so far.
    pub attempt: u32,
    /// How the predictor found the entity.
    pub relation: Relation,
}

impl From<&Plan> for PlanState {
    fn from(p: &Plan) -> Self {
        PlanState {
            due: p.due,
            confidence: p.confidence,
            expected_at: p.expected_at,
            latest: p.latest,
            attempt: p.attempt,
            relation: p.relation,
        }
    }
}

#[derive(Debug, Clone)]
struct Plan {
    seq: u64,
    due: Timestamp,
    confidence: f32,
    expected_at: Timestamp,
    latest: Timestamp,
    attempt: u32,
    relation: Relation,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Timed<K> {
    due: Timestamp,
    seq: u64,
    key: K,
}

#[derive(Debug, Clone)]
struct Ready<K> {
    confidence: f32,
    expected_at: Timestamp,
    seq: u64,
    key: K,
}

impl<K: Eq> PartialEq for Ready<K> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl<K: Eq> Eq for Ready<K> {}
impl<K: Eq> PartialOrd for Ready<K> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<K: Eq> Ord for Ready<K> {
    /// Higher confidence first, then earlier expected use, then older plans.
    fn cmp(&self, other: &Self) -> Ordering {
        self.confidence
            .total_cmp(&other.confidence)
            .then_with(|| other.expected_at.cmp(&self.expected_at))
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

/// The prefetch planner. See the module docs.
#[derive(Debug)]
pub struct Planner<K: PlanKey> {
    cfg: PlannerConfig,
    seq: u64,
    /// Per entity, its pending plans, nearest due first, windows disjoint.
    pending: FxHashMap<K, Vec<Plan>>,
    /// Plans in `pending`, over all entities.
    plans: usize,
    timeline: BinaryHeap<Reverse<Timed<K>>>,
    ready: BinaryHeap<Ready<K>>,
    in_flight: FxHashMap<K, InFlight>,
    prefetches_in_flight: usize,
    next_load: u64,
    budget: Budget,
    rng: SmallRng,
    stats: PlannerStats,
    /// Per relation: the threshold in force and what it learns from.
    thresholds: Thresholds,
}

/// The most pending plans one entity has at a time (for disjoint windows).
pub const MAX_PLANS_PER_ENTITY: usize = 4;

impl<K: PlanKey> Planner<K> {
    /// A planner with no plans.
    pub fn new(cfg: PlannerConfig) -> Self {
        let budget = Budget::new(cfg.budget);
        let rng = SmallRng::seed_from_u64(cfg.seed);
        Planner {
            seq: 0,
            pending: FxHashMap::default(),
            plans: 0,
            timeline: BinaryHeap::new(),
            ready: BinaryHeap::new(),
            in_flight: FxHashMap::default(),
            prefetches_in_flight: 0,
            next_load: 0,
            budget,
            rng,
            stats: PlannerStats {
                by_relation: [RelationStats {
                    threshold: cfg.threshold,
                    ..RelationStats::default()
                }; Relation::ALL.len()],
                ..PlannerStats::default()
            },
            thresholds: Thresholds::new(cfg.threshold, cfg.target_precision, cfg.threshold_bounds),
            cfg,
        }
    }

    /// The settings.
    pub fn config(&self) -> &PlannerConfig {
        &self.cfg
    }

    /// What the planner has done so far.
    pub fn stats(&self) -> &PlannerStats {
        &self.stats
    }

    /// The confidence threshold in force for predictions found through `relation` (learned,
    /// if the settings have a target precision).
    pub fn threshold(&self, relation: Relation) -> f32 {
        self.thresholds.get(relation)
    }

    /// A prefetch found through `relation` served a read that would otherwise have missed.
    pub fn on_prefetch_used(&mut self, relation: Relation) {
        self.thresholds.on_used(relation, &mut self.stats);
    }

    /// Plans waiting to be loaded.
    pub fn pending_len(&self) -> usize {
        self.plans
    }

    /// Loads in flight (prefetches and consumer misses).
    pub fn in_flight_len(&self) -> usize {
        self.in_flight.len()
    }

    /// Offers a prediction made at `now`.
    pub fn offer(&mut self, now: Timestamp, offer: Offer<K>) {
        self.stats.offered += 1;
        if offer.confidence < self.threshold(offer.relation) || offer.confidence.is_nan() {
            self.stats.below_threshold += 1;
            self.thresholds.on_starved(offer.relation, &mut self.stats);
            return;
        }
        if offer.latest < now || offer.expected_at.since(now) > self.cfg.horizon {
            self.stats.out_of_horizon += 1;
            return;
        }
        let due = offer.expected_at.minus(self.cfg.lead).max(now);
        self.seq += 1;
        let plan = Plan {
            seq: self.seq,
            due,
            confidence: offer.confidence,
            expected_at: offer.expected_at,
            latest: offer.latest.max(offer.expected_at),
            attempt: 0,
            relation: offer.relation,
        };
        let plans = match self.pending.get_mut(&offer.key) {
            Some(plans) => plans,
            None => {
                if self.plans >= self.cfg.max_pending {
                    self.stats.dropped_full += 1;
                    return;
                }
                self.pending.entry(offer.key.clone()).or_default()
            }
        };
        // Newer information from the same relation about the same window replaces the older
        // plan; other relations' plans stay (each is judged at its own due time).
        let before = plans.len();
        plans.retain(|p| p.relation != plan.relation || p.latest < plan.due || plan.latest < p.due);
        let mut replaced = before - plans.len();
        if replaced == 0 && self.plans >= self.cfg.max_pending {
            self.stats.dropped_full += 1;
            return;
        }
        let pos = plans.partition_point(|p| p.due <= plan.due);
        plans.insert(pos, plan);
        if plans.len() > MAX_PLANS_PER_ENTITY {
            plans.truncate(MAX_PLANS_PER_ENTITY);
            replaced += 1;
        }
        let kept = plans.iter().any(|p| p.seq == self.seq);
        self.plans = self.plans + 1 - replaced;
        self.stats.replaced += replaced as u64;
        if !kept {
            return;
        }
        self.timeline.push(Reverse(Timed {
            due,
            seq: self.seq,
            key: offer.key,
        }));
        self.compact();
    }

    /// The pending plan `seq` of `key`, if it is still pending.
    fn plan(&self, key: &K, seq: u64) -> Option<&Plan> {
        self.pending.get(key)?.iter().find(|p| p.seq == seq)
    }

    /// Removes the pending plan `seq` of `key`, if it is still pending.
    fn remove_plan(&mut self, key: &K, seq: u64) {
        if let Some(plans) = self.pending.get_mut(key)
            && let Some(i) = plans.iter().position(|p| p.seq == seq)
        {
            plans.remove(i);
            self.plans -= 1;
            if plans.is_empty() {
                self.pending.remove(key);
            }
        }
    }

    /// Drops the pending plans of `key`, if any.
    pub fn forget(&mut self, key: &K) {
        if let Some(plans) = self.pending.remove(key) {
            self.plans -= plans.len();
        }
    }

    /// Drops the pending plans of every key `select` picks.
    pub fn forget_where(&mut self, select: &mut dyn FnMut(&K) -> bool) {
        let mut dropped = 0;
        self.pending.retain(|k, plans| {
            let drop = select(k);
            if drop {
                dropped += plans.len();
            }
            !drop
        });
        self.plans -= dropped;
        self.compact();
    }

    /// The pending plans of the keys `select` picks, to move them to another planner
    /// ([`Planner::import_plans`]).
    pub fn export_plans(&self, select: &mut dyn FnMut(&K) -> bool) -> Vec<(K, Vec<PlanState>)> {
        self.pending
            .iter()
            .filter(|(k, _)| select(k))
            .map(|(k, plans)| (k.clone(), plans.iter().map(PlanState::from).collect()))
            .collect()
    }

    /// Takes over plans exported by another planner: each is offered again as it was, with
    /// its due time, unless its window closed before `now`.
    pub fn import_plans(&mut self, now: Timestamp, key: K, plans: Vec<PlanState>) {
        for p in plans {
            if p.latest < now {
                continue;
            }
            self.seq += 1;
            let plan = Plan {
                seq: self.seq,
                due: p.due.max(now),
                confidence: p.confidence,
                expected_at: p.expected_at,
                latest: p.latest,
                attempt: p.attempt,
                relation: p.relation,
            };
            let list = self.pending.entry(key.clone()).or_default();
            if list.len() >= MAX_PLANS_PER_ENTITY {
                continue;
            }
            let pos = list.partition_point(|q| q.due <= plan.due);
            self.timeline.push(Reverse(Timed {
                due: plan.due,
                seq: plan.seq,
                key: key.clone(),
            }));
            list.insert(pos, plan);
            self.plans += 1;
        }
    }

    /// Rebuilds the heaps when replaced plans have left too many dead entries in them.
    fn compact(&mut self) {
        let live = self.plans;
        if self.timeline.len() + self.ready.len() > 2 * live + 4096 {
            self.timeline = self
                .pending
                .iter()
                .flat_map(|(k, plans)| {
                    plans.iter().map(|p| {
                        Reverse(Timed {
                            due: p.due,
                            seq: p.seq,
                            key: k.clone(),
                        })
                    })
                })
                .collect();
            self.ready.clear();
        }
    }

    /// The earliest time at which [`Planner::poll`] may have new work, if any. Plans that are
    /// due but wait for budget or a free slot are retried on the next poll (drivers poll after
    /// every read and every finished load).
    pub fn next_due(&self) -> Option<Timestamp> {
        self.timeline
            .peek()
            .map(|t| t.0.due.minus(self.cfg.batch_window))
    }

    /// Whether due plans are waiting for budget or a free slot.
    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// A consumer read happened: earns budget.
    pub fn on_read(&mut self) {
        self.budget.on_read();
    }

    /// The load in flight for `key`, if any.
    pub fn in_flight(&self, key: &K) -> Option<&InFlight> {
        self.in_flight.get(key)
    }

    /// Registers a consumer miss's load of `key`, unless one is in flight already.
    /// Returns the load to wait for, and whether it is new.
    pub fn begin_demand(&mut self, now: Timestamp, key: &K) -> (InFlight, bool) {
        if let Some(f) = self.in_flight.get(key) {
            return (*f, false);
        }
        let f = InFlight {
            id: self.new_load(),
            origin: Origin::Demand,
            started: now,
            relation: Relation::Same,
            joined: false,
        };
        self.in_flight.insert(key.clone(), f);
        (f, true)
    }

    /// A read that missed joins the load of `key` in flight: returns the relation of the
    /// prefetch to credit as used, if it is a prefetch no read had joined yet.
    pub fn mark_joined(&mut self, key: &K) -> Option<Relation> {
        let f = self.in_flight.get_mut(key)?;
        if f.origin != Origin::Prefetch || f.joined {
            return None;
        }
        f.joined = true;
        Some(f.relation)
    }

    /// A consumer miss's load of `key` finished (successfully or not).
    pub fn end_demand(&mut self, key: &K, load: LoadId) {
        if self.in_flight.get(key).is_some_and(|f| f.id == load) {
            self.in_flight.remove(key);
        }
    }

    fn new_load(&mut self) -> LoadId {
        self.next_load += 1;
        LoadId(self.next_load)
    }

    /// The batches to load at `now`. `is_fresh(key, at)` says whether the cache holds a current
    /// entry of `key` that will still be usable at `at`; such entities are skipped.
    pub fn poll(
        &mut self,
        now: Timestamp,
        is_fresh: &mut dyn FnMut(&K, Timestamp) -> bool,
    ) -> Vec<Batch<K>> {
        let horizon = now.plus(self.cfg.batch_window);
        while let Some(Reverse(t)) = self.timeline.peek() {
            if t.due > horizon {
                break;
            }
            let Some(Reverse(t)) = self.timeline.pop() else {
                break;
            };
            if let Some(p) = self.plan(&t.key, t.seq) {
                self.ready.push(Ready {
                    confidence: p.confidence,
                    expected_at: p.expected_at,
                    seq: p.seq,
                    key: t.key,
                });
            }
        }
        let mut by_kind: Vec<Batch<K>> = Vec::new();
        while self.prefetches_in_flight < self.cfg.max_in_flight {
            let Some((key, seq)) = self.ready.peek().map(|r| (r.key.clone(), r.seq)) else {
                break;
            };
            let Some(plan) = self.plan(&key, seq).cloned() else {
                self.ready.pop();
                continue;
            };
            if plan.latest < now {
                self.ready.pop();
                self.remove_plan(&key, seq);
                self.stats.expired += 1;
                continue;
            }
            if self.in_flight.contains_key(&key) {
                self.ready.pop();
                self.remove_plan(&key, seq);
                self.stats.skipped_in_flight += 1;
                continue;
            }
            if is_fresh(&key, plan.expected_at.max(now)) {
                self.ready.pop();
                self.remove_plan(&key, seq);
                self.stats.skipped_cached += 1;
                continue;
            }
            if !self.budget.try_spend(now) {
                self.stats.budget_waits += 1;
                break;
            }
            let Some(r) = self.ready.pop() else { break };
            self.remove_plan(&r.key, seq);
            let load = self.new_load();
            self.in_flight.insert(
                r.key.clone(),
                InFlight {
                    id: load,
                    origin: Origin::Prefetch,
                    started: now,
                    relation: plan.relation,
                    joined: false,
                },
            );
            self.prefetches_in_flight += 1;
            self.stats.issued += 1;
            self.thresholds.on_issued(plan.relation, &mut self.stats);
            let item = BatchItem {
                key: r.key,
                load,
                confidence: plan.confidence,
                expected_at: plan.expected_at,
                latest: plan.latest,
                attempt: plan.attempt + 1,
                relation: plan.relation,
            };
            let kind = item.key.kind();
            match by_kind
                .iter_mut()
                .find(|b| b.kind == kind && b.items.len() < self.cfg.batch_size)
            {
                Some(b) => b.items.push(item),
                None => by_kind.push(Batch {
                    kind,
                    items: vec![item],
                }),
            }
        }
        self.stats.batches += by_kind.len() as u64;
        by_kind
    }

    /// The TTL for a prefetched entry filled at `now` whose predicted window ends at `latest`.
    pub fn ttl_for(&self, now: Timestamp, latest: Timestamp) -> Duration {
        latest
            .since(now)
            .saturating_add(self.cfg.ttl_slack)
            .clamp(self.cfg.min_ttl.min(self.cfg.max_ttl), self.cfg.max_ttl)
    }

    /// The prefetch `item` is no longer in flight.
    fn release(&mut self, item: &BatchItem<K>) {
        if self
            .in_flight
            .get(&item.key)
            .is_some_and(|f| f.id == item.load)
        {
            self.in_flight.remove(&item.key);
        }
        self.prefetches_in_flight = self.prefetches_in_flight.saturating_sub(1);
    }

    /// A prefetch was not loaded after all: the cache already held the entity when its load
    /// was about to start (filled by a read, or by another process sharing the cache). The
    /// entity is no longer in flight; counted with the due plans skipped as cached.
    pub fn complete_cached(&mut self, item: &BatchItem<K>) {
        self.release(item);
        self.stats.skipped_cached += 1;
    }

    /// A prefetch load finished. On success, returns the TTL to cache the entry with.
    /// On failure, a transient error is retried with backoff while attempts and the window last.
    pub fn complete(
        &mut self,
        now: Timestamp,
        item: &BatchItem<K>,
        result: Result<(), Failure>,
    ) -> Option<Duration> {
        self.release(item);
        match result {
            Ok(()) => {
                self.stats.loaded += 1;
                Some(self.ttl_for(now, item.latest))
            }
            Err(f) => {
                let retry_at = now.plus(self.cfg.retry.delay(item.attempt, &mut self.rng));
                let retryable = f == Failure::Transient
                    && item.attempt < self.cfg.retry.max_attempts
                    && retry_at <= item.latest
                    && !self.pending.contains_key(&item.key);
                if retryable {
                    self.stats.retries += 1;
                    self.seq += 1;
                    let plan = Plan {
                        seq: self.seq,
                        due: retry_at,
                        confidence: item.confidence,
                        expected_at: item.expected_at,
                        latest: item.latest,
                        attempt: item.attempt,
                        relation: item.relation,
                    };
                    tracing::debug!(message = "Prefetch failed; retrying.", entity = ?item.key, attempt = item.attempt, retry_in_ms = retry_at.since(now).as_millis() as u64);
                    self.pending.insert(item.key.clone(), vec![plan]);
                    self.plans += 1;
                    self.timeline.push(Reverse(Timed {
                        due: retry_at,
                        seq: self.seq,
                        key: item.key.clone(),
                    }));
                } else {
                    self.stats.failed += 1;
                    tracing::debug!(message = "Prefetch failed; giving up.", entity = ?item.key, attempt = item.attempt);
                }
                None
            }
        }
    }
}

/// How a load failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Worth retrying (the store was unavailable or timed out).
    Transient,
    /// Not worth retrying.
    Permanent,
}

#[cfg(test)]
mod tests;
