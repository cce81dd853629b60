//! Per-entity state that can move between nodes: pending plans and the record of cached copies.
//!
//! A partition that moves to another node takes the state of its entities along
//! ([`super::PrefetchCore::export`], then [`super::PrefetchCore::import`] on the new owner), so
//! that the new owner neither forgets what was planned nor misjudges copies it did not write.
//! The thresholds the planner learned are the node's own and stay.

use prescient_core::{Relation, Timestamp, Version};
use serde::{Deserialize, Serialize};

use super::tracking::{PrefetchTag, Tracked, Tracking};
use crate::planner::{PlanKey, PlanState, Planner};

/// The state of a set of entities, as exported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CoreState<K> {
    /// One entry per entity with any state.
    pub entities: Vec<EntityState<K>>,
}

impl<K> Default for CoreState<K> {
    fn default() -> Self {
        CoreState {
            entities: Vec::new(),
        }
    }
}

/// One entity's movable state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntityState<K> {
    /// The entity.
    pub key: K,
    /// Its pending plans.
    pub plans: Vec<PlanState>,
    /// The cached copy this node wrote, if it is tracked.
    pub cached: Option<CachedState>,
}

/// A tracked cached copy, as exported. Times are microseconds since the epoch (they may be
/// "never" or "none", which RFC 3339 cannot write).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedState {
    /// Its version.
    pub version: Version,
    /// When it stops being usable.
    pub expires_us: i64,
    /// For a prefetched copy: its relation, until when the copy it replaced was usable, and
    /// whether it was credited.
    pub prefetch: Option<(Relation, i64, bool)>,
}

impl From<&Tracked> for CachedState {
    fn from(t: &Tracked) -> Self {
        CachedState {
            version: t.version,
            expires_us: t.expires.as_micros(),
            prefetch: t
                .prefetch
                .map(|p| (p.relation, p.prev_valid_until.as_micros(), p.credited)),
        }
    }
}

impl From<CachedState> for Tracked {
    fn from(c: CachedState) -> Self {
        Tracked {
            version: c.version,
            expires: Timestamp::from_micros(c.expires_us),
            prefetch: c.prefetch.map(|(relation, prev, credited)| PrefetchTag {
                relation,
                prev_valid_until: Timestamp::from_micros(prev),
                credited,
            }),
        }
    }
}

pub(super) fn export<K: PlanKey>(
    planner: &Planner<K>,
    tracking: &Tracking<K>,
    select: &mut dyn FnMut(&K) -> bool,
) -> CoreState<K> {
    let mut entities: Vec<EntityState<K>> = planner
        .export_plans(select)
        .into_iter()
        .map(|(key, plans)| EntityState {
            cached: tracking.get(&key).map(CachedState::from),
            key,
            plans,
        })
        .collect();
    let with_plans: rustc_hash::FxHashSet<K> = entities.iter().map(|e| e.key.clone()).collect();
    for (key, t) in tracking.iter() {
        if !with_plans.contains(key) && select(key) {
            entities.push(EntityState {
                key: key.clone(),
                plans: Vec::new(),
                cached: Some(CachedState::from(t)),
            });
        }
    }
    // A stable order, so that one state exports to the same bytes.
    entities.sort_by(|a, b| a.key.cmp(&b.key));
    CoreState { entities }
}

pub(super) fn import<K: PlanKey>(
    planner: &mut Planner<K>,
    tracking: &mut Tracking<K>,
    now: Timestamp,
    state: CoreState<K>,
    wasted: &mut u64,
) {
    for e in state.entities {
        if let Some(c) = e.cached {
            let newer = tracking
                .get(&e.key)
                .is_none_or(|t| (t.version, t.expires.as_micros()) < (c.version, c.expires_us));
            if newer {
                tracking.insert(now, e.key.clone(), Tracked::from(c), wasted);
            }
        }
        planner.import_plans(now, e.key, e.plans);
    }
}
