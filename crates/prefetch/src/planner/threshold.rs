//! Confidence thresholds learned online, one per [`Relation`].
//!
//! With a target precision, each relation's threshold rises while the recent share of its
//! prefetches that were used is below the target and falls while it is above, by steps in
//! proportion to the distance (`docs/tuning.md` has the measurements behind the constants). A
//! threshold moves only on prefetches issued, so one lifted above every offer by a bad spell
//! would stay there: after [`STARVED_OFFERS`] offers in a row turned away it steps down and
//! judges its relation afresh, if that relation's prefetches met the target so far.

use prescient_core::Relation;

use super::{PlannerStats, RelationStats};

/// How fast the recent counts of issued and used prefetches forget (per prefetch issued).
const PRECISION_DECAY: f32 = 1.0 - 1.0 / 1024.0;
/// A starved threshold steps down by this much.
const THRESHOLD_STEP: f32 = 0.01;
/// One adjustment per [`ADJUST_EVERY`] prefetches moves the threshold by this gain times the
/// gap between the target and the recent precision, at most [`MAX_ADJUST`]: a relation far
/// above its target comes down fast after a bad spell lifted it, one near its target barely
/// moves.
const THRESHOLD_GAIN: f32 = 0.02;
const MAX_ADJUST: f32 = 0.02;
const ADJUST_EVERY: u64 = 32;
/// A learned threshold that turned away this many offers of its relation in a row, without a
/// prefetch in between, steps down: it moves only on prefetches issued, so once above every
/// confidence its relation offers, it would stay there however good the relation became.
pub(super) const STARVED_OFFERS: u32 = 256;

#[derive(Debug, Clone, Copy)]
struct RelationThreshold {
    threshold: f32,
    recent_issued: f32,
    recent_used: f32,
    issued: u64,
    /// Offers turned away below the threshold since the relation's last prefetch.
    starved: u32,
}

/// The thresholds of every relation, in the order of [`Relation::ALL`].
#[derive(Debug, Clone)]
pub(super) struct Thresholds {
    target: Option<f32>,
    bounds: (f32, f32),
    relations: [RelationThreshold; Relation::ALL.len()],
}

impl Thresholds {
    pub fn new(start: f32, target: Option<f32>, bounds: (f32, f32)) -> Self {
        let (lo, hi) = bounds;
        Thresholds {
            target,
            bounds: (lo.min(hi), hi.max(lo)),
            relations: [RelationThreshold {
                threshold: start,
                recent_issued: 0.0,
                recent_used: 0.0,
                issued: 0,
                starved: 0,
            }; Relation::ALL.len()],
        }
    }

    /// The threshold in force for `relation`.
    pub fn get(&self, relation: Relation) -> f32 {
        self.relations[relation.index()].threshold
    }

    /// A prefetch of `relation` was used.
    pub fn on_used(&mut self, relation: Relation, stats: &mut PlannerStats) {
        self.relations[relation.index()].recent_used += 1.0;
        stats.by_relation[relation.index()].used += 1;
    }

    /// Moves the threshold of `relation` after one of its prefetches was issued: up while the
    /// recent share of its prefetches that were used is below the target, down while above, in
    /// proportion to the distance.
    pub fn on_issued(&mut self, relation: Relation, stats: &mut PlannerStats) {
        let (lo, hi) = self.bounds;
        let r = &mut self.relations[relation.index()];
        r.issued += 1;
        r.starved = 0;
        let st: &mut RelationStats = &mut stats.by_relation[relation.index()];
        st.issued += 1;
        st.threshold = r.threshold;
        r.recent_issued = r.recent_issued * PRECISION_DECAY + 1.0;
        r.recent_used *= PRECISION_DECAY;
        let Some(target) = self.target else {
            return;
        };
        if !r.issued.is_multiple_of(ADJUST_EVERY) || r.recent_issued < 2.0 * ADJUST_EVERY as f32 {
            return;
        }
        let precision = r.recent_used / r.recent_issued;
        let step = ((target - precision) * THRESHOLD_GAIN).clamp(-MAX_ADJUST, MAX_ADJUST);
        r.threshold = (r.threshold + step).clamp(lo, hi);
        st.threshold = r.threshold;
    }

    /// An offer of `relation` was turned away below the threshold. After [`STARVED_OFFERS`] in
    /// a row, a learned threshold steps down to try the relation's best offers again, if the
    /// relation's prefetches so far met the target precision (one that never did stays off).
    pub fn on_starved(&mut self, relation: Relation, stats: &mut PlannerStats) {
        let Some(target) = self.target else {
            return;
        };
        let (lo, hi) = self.bounds;
        let r = &mut self.relations[relation.index()];
        r.starved += 1;
        if r.starved < STARVED_OFFERS {
            return;
        }
        r.starved = 0;
        let st = &mut stats.by_relation[relation.index()];
        if st.issued > 0 && st.used as f64 >= f64::from(target) * st.issued as f64 {
            // The recent record is of the spell that lifted the threshold: judge afresh.
            r.recent_issued = 0.0;
            r.recent_used = 0.0;
            r.threshold = (r.threshold - THRESHOLD_STEP).clamp(lo, hi);
            st.threshold = r.threshold;
        }
    }
}
