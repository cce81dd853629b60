//! The workload: a log's events in replay order, with entities interned to dense indices.

use prescient_core::{EntityKey, Event, Mutation, SmolStr, Version};
use rustc_hash::FxHashMap;

/// A log prepared for replay: events sorted by time (ties keep file order), each event's
/// distinct entities as dense indices in listed order, and the mutations each event makes.
#[derive(Debug)]
pub struct Workload {
    /// The events, in replay order. With `--mutates`, their `mutations` are filled in.
    pub events: Vec<Event>,
    /// Per event, the distinct entities it references, in listed order.
    pub reads: Vec<Vec<u32>>,
    /// Per event, the entities it writes, with their new versions.
    pub writes: Vec<Vec<(u32, Version)>>,
    /// Entity index to key.
    pub keys: Vec<EntityKey>,
    /// Entity index to kind index.
    pub kinds: Vec<u16>,
    /// Kind index to name.
    pub kind_names: Vec<SmolStr>,
    index: FxHashMap<EntityKey, u32>,
    distinct_read: usize,
}

impl Workload {
    /// Prepares `events` for replay. An event touching an entity whose kind is in `mutates`
    /// writes a new version of it (store version + 1). Mutations the events already carry
    /// are kept.
    pub fn prepare(mut events: Vec<Event>, mutates: &[String]) -> Workload {
        events.sort_by_key(|e| e.time); // stable: ties keep file order
        let mut it = Interner::default();
        let mut versions: Vec<u64> = Vec::new();
        let mut reads = Vec::with_capacity(events.len());
        let mut writes = Vec::with_capacity(events.len());
        for e in &mut events {
            let mut r: Vec<u32> = Vec::with_capacity(e.entities.len());
            for er in &e.entities {
                if er.id.is_empty() {
                    continue;
                }
                let i = it.intern(er.key(), &mut versions);
                if !r.contains(&i) {
                    r.push(i);
                }
            }
            let mut w: Vec<(u32, Version)> = Vec::new();
            for m in &e.mutations {
                let i = it.intern(m.key(), &mut versions);
                let v = &mut versions[i as usize];
                *v = (*v).max(m.version.0);
                w.push((i, Version(*v)));
            }
            if !mutates.is_empty() {
                for &i in &r {
                    let key = &it.keys[i as usize];
                    if mutates.iter().any(|m| m == key.kind.as_str())
                        && !w.iter().any(|(j, _)| *j == i)
                    {
                        let v = &mut versions[i as usize];
                        *v += 1;
                        w.push((i, Version(*v)));
                        e.mutations.push(Mutation {
                            kind: key.kind.clone(),
                            id: key.id.clone(),
                            version: Version(*v),
                        });
                    }
                }
            }
            reads.push(r);
            writes.push(w);
        }
        let Interner {
            index,
            keys,
            kinds,
            kind_names,
            ..
        } = it;
        let mut w = Workload {
            events,
            reads,
            writes,
            keys,
            kinds,
            kind_names,
            index,
            distinct_read: 0,
        };
        w.distinct_read = w.count_distinct_read();
        w
    }

    /// Keeps only the first `max_reads` reads: later events are dropped and the last event
    /// kept loses its surplus reads. Entities no kept event references stay interned but unread.
    pub fn truncate_reads(&mut self, max_reads: u64) {
        let mut total = 0u64;
        for (i, r) in self.reads.iter_mut().enumerate() {
            let left = max_reads.saturating_sub(total);
            if (r.len() as u64) >= left {
                r.truncate(usize::try_from(left).unwrap_or(usize::MAX));
                let keep = if r.is_empty() { i } else { i + 1 };
                self.events.truncate(keep);
                self.reads.truncate(keep);
                self.writes.truncate(keep);
                break;
            }
            total += r.len() as u64;
        }
        self.distinct_read = self.count_distinct_read();
    }

    fn count_distinct_read(&self) -> usize {
        let mut seen = vec![false; self.keys.len()];
        let mut n = 0;
        for r in &self.reads {
            for &i in r {
                if !seen[i as usize] {
                    seen[i as usize] = true;
                    n += 1;
                }
            }
        }
        n
    }

    /// The index of an entity, if the log references it.
    pub fn index_of(&self, key: &EntityKey) -> Option<u32> {
        self.index.get(key).copied()
    }

    /// Distinct entities that are read.
    pub fn distinct_entities(&self) -> usize {
        self.distinct_read
    }

    /// Entities interned (every entity the log mentions); the size of index-addressed tables.
    pub fn entity_slots(&self) -> usize {
        self.keys.len()
    }

    /// Reads in all (one per distinct entity per event).
    pub fn total_reads(&self) -> u64 {
        self.reads.iter().map(|r| r.len() as u64).sum()
    }

    /// `1 - distinct / reads`: every read except an entity's first could be a hit.
    pub fn oracle_hit_ratio(&self) -> f64 {
        let reads = self.total_reads();
        if reads == 0 {
            0.0
        } else {
            1.0 - self.distinct_entities() as f64 / reads as f64
        }
    }
}

#[derive(Default)]
struct Interner {
    index: FxHashMap<EntityKey, u32>,
    keys: Vec<EntityKey>,
    kinds: Vec<u16>,
    kind_index: FxHashMap<SmolStr, u16>,
    kind_names: Vec<SmolStr>,
}

impl Interner {
    fn intern(&mut self, key: EntityKey, versions: &mut Vec<u64>) -> u32 {
        if let Some(&i) = self.index.get(&key) {
            return i;
        }
        let k = match self.kind_index.get(&key.kind) {
            Some(&k) => k,
            None => {
                let k = u16::try_from(self.kind_names.len()).unwrap_or(u16::MAX);
                self.kind_names.push(key.kind.clone());
                self.kind_index.insert(key.kind.clone(), k);
                k
            }
        };
        let i = u32::try_from(self.keys.len()).unwrap_or(u32::MAX);
        self.keys.push(key.clone());
        self.kinds.push(k);
        versions.push(1);
        self.index.insert(key, i);
        i
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prescient_core::{EntityRef, Timestamp};

    fn ev(id: &str, t: i64, ents: &[(&str, &str)]) -> Event {
        let mut e = Event::new(id, "t", Timestamp::from_millis(t));
        for (k, i) in ents {
            e.entities.push(EntityRef::new(*k, *i));
        }
        e
    }

    #[test]
    fn sorts_stably_interns_and_dedups() {
        let w = Workload::prepare(
            vec![
                ev("b", 5, &[("o", "1"), ("c", "1"), ("o", "1")]),
                ev("a", 1, &[("o", "1"), ("c", "")]),
                ev("c", 5, &[("o", "2")]),
            ],
            &[],
        );
        let ids: Vec<&str> = w.events.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, vec!["a", "b", "c"]);
        assert_eq!(w.reads, vec![vec![0], vec![0, 1], vec![2]]);
        assert_eq!(w.total_reads(), 4);
        assert!((w.oracle_hit_ratio() - 0.25).abs() < 1e-12);
    }

    #[test]
    fn truncates_to_a_number_of_reads() {
        let mut w = Workload::prepare(
            vec![
                ev("a", 1, &[("o", "1"), ("o", "2")]),
                ev("b", 2, &[("o", "3"), ("o", "1")]),
                ev("c", 3, &[("o", "4")]),
            ],
            &[],
        );
        w.truncate_reads(3);
        assert_eq!(w.reads, vec![vec![0, 1], vec![2]]);
        assert_eq!(w.events.len(), 2);
        assert_eq!(w.distinct_entities(), 3);
        w.truncate_reads(2);
        assert_eq!(w.events.len(), 1);
    }

    #[test]
    fn mutates_bumps_versions() {
        let w = Workload::prepare(
            vec![
                ev("a", 1, &[("o", "1"), ("c", "1")]),
                ev("b", 2, &[("o", "1")]),
            ],
            &["o".to_owned()],
        );
        assert_eq!(w.writes, vec![vec![(0, Version(2))], vec![(0, Version(3))]]);
        assert_eq!(w.events[1].mutations[0].version, Version(3));
    }
}
