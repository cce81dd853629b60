//! The record of what this node cached: per entity, the version and expiry of its copy, and for
//! a prefetched copy, what the crediting rule needs.

use prescient_core::{Relation, Timestamp, Version};
use rustc_hash::FxHashMap;

use crate::planner::PlanKey;

/// A cached copy this node wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tracked {
    /// Its version.
    pub version: Version,
    /// When it stops being usable.
    pub expires: Timestamp,
    /// Set when a prefetch wrote it.
    pub prefetch: Option<PrefetchTag>,
}

/// What the crediting rule knows of a prefetched copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PrefetchTag {
    /// How the predictor found the entity.
    pub relation: Relation,
    /// Until when the copy it replaced was usable (`i64::MIN` µs: there was none). A read
    /// before then would have hit anyway, so it does not credit the prefetch.
    pub prev_valid_until: Timestamp,
    /// Whether the prefetch was credited already.
    pub credited: bool,
}

/// Tracked copies by entity, at most `max` of them.
#[derive(Debug)]
pub(crate) struct Tracking<K> {
    map: FxHashMap<K, Tracked>,
    max: usize,
}

impl<K: PlanKey> Tracking<K> {
    pub fn new(max: usize) -> Self {
        Tracking {
            map: FxHashMap::default(),
            max: max.max(1),
        }
    }

    pub fn get(&self, key: &K) -> Option<&Tracked> {
        self.map.get(key)
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, &Tracked)> {
        self.map.iter()
    }

    /// Whether the record holds a copy of `key` usable at `at`.
    pub fn is_fresh(&self, key: &K, at: Timestamp) -> bool {
        self.map.get(key).is_some_and(|t| t.expires > at)
    }

    /// Records `t` for `key` at `now`. A prefetched copy it replaces that was still usable and
    /// not credited is wasted (counted into `wasted`), as are the uncredited prefetched copies
    /// dropped to make room.
    pub fn insert(&mut self, now: Timestamp, key: K, t: Tracked, wasted: &mut u64) {
        if self.map.len() >= self.max && !self.map.contains_key(&key) {
            self.map.retain(|_, v| {
                let keep = v.expires > now;
                if !keep && v.prefetch.is_some_and(|p| !p.credited) {
                    *wasted += 1;
                }
                keep
            });
            if self.map.len() >= self.max {
                *wasted += self
                    .map
                    .values()
                    .filter(|v| v.prefetch.is_some_and(|p| !p.credited))
                    .count() as u64;
                self.map.clear();
            }
        }
        if let Some(old) = self.map.insert(key, t)
            && old.prefetch.is_some_and(|p| !p.credited)
        {
            *wasted += 1;
        }
    }

    /// Drops the record of `key` if its copy is older than `version`; returns it.
    pub fn remove_below(&mut self, key: &K, version: Version) -> Option<Tracked> {
        match self.map.get(key) {
            Some(t) if t.version < version => self.map.remove(key),
            _ => None,
        }
    }

    pub fn remove(&mut self, key: &K) -> Option<Tracked> {
        self.map.remove(key)
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&K) -> bool) {
        self.map.retain(|k, _| keep(k));
    }

    /// The crediting rule for a hit on `key` at `now`: the relation of the prefetch to credit,
    /// if the copy is prefetched, not yet credited, and the copy it replaced would not have
    /// served this read. Marks it credited.
    pub fn credit_hit(&mut self, key: &K, now: Timestamp) -> Option<Relation> {
        let t = self.map.get_mut(key)?;
        let tag = t.prefetch.as_mut()?;
        if tag.credited || tag.prev_valid_until > now {
            return None;
        }
        tag.credited = true;
        Some(tag.relation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl PlanKey for u32 {
        type Kind = u8;
        fn kind(&self) -> u8 {
            0
        }
    }

    fn s(v: i64) -> Timestamp {
        Timestamp::from_secs(v)
    }

    fn prefetched(expires: i64, prev: i64) -> Tracked {
        Tracked {
            version: Version(1),
            expires: s(expires),
            prefetch: Some(PrefetchTag {
                relation: Relation::Refresh,
                prev_valid_until: s(prev),
                credited: false,
            }),
        }
    }

    #[test]
    fn a_hit_credits_once_and_only_after_the_old_copy_expired() {
        let mut t = Tracking::new(10);
        let mut wasted = 0;
        t.insert(s(0), 1u32, prefetched(100, 50), &mut wasted);
        assert_eq!(
            t.credit_hit(&1, s(40)),
            None,
            "the old copy would have served it"
        );
        assert_eq!(t.credit_hit(&1, s(50)), Some(Relation::Refresh));
        assert_eq!(t.credit_hit(&1, s(60)), None, "credited once");
        assert_eq!(wasted, 0);
    }

    #[test]
    fn replacing_an_unused_prefetch_wastes_it() {
        let mut t = Tracking::new(10);
        let mut wasted = 0;
        t.insert(
            s(0),
            1u32,
            prefetched(100, i64::MIN / 1_000_000),
            &mut wasted,
        );
        t.insert(s(1), 1u32, prefetched(200, 100), &mut wasted);
        assert_eq!(wasted, 1);
        t.credit_hit(&1, s(150));
        t.insert(s(2), 1u32, prefetched(300, 200), &mut wasted);
        assert_eq!(wasted, 1, "a credited prefetch is not wasted");
    }

    #[test]
    fn a_full_record_drops_expired_copies_first() {
        let mut t = Tracking::new(2);
        let mut wasted = 0;
        t.insert(s(0), 1u32, prefetched(10, 0), &mut wasted);
        t.insert(s(0), 2u32, prefetched(100, 0), &mut wasted);
        t.insert(s(20), 3u32, prefetched(100, 0), &mut wasted);
        assert_eq!(t.len(), 2);
        assert!(t.get(&1).is_none());
        assert_eq!(wasted, 1);
    }

    #[test]
    fn invalidation_drops_only_older_copies() {
        let mut t = Tracking::new(10);
        let mut wasted = 0;
        t.insert(s(0), 1u32, prefetched(100, 0), &mut wasted);
        assert!(t.remove_below(&1, Version(1)).is_none());
        assert!(t.remove_below(&1, Version(2)).is_some());
        assert!(!t.is_fresh(&1, s(1)));
    }
}
