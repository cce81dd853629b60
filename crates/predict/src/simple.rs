//! [`SimpleModel`]: the baseline online model.
//!
//! The next event type is predicted from the last event type alone (bigram counts with add-one
//! smoothing over the types seen so far), its time from the mean observed gap of that
//! transition. The entities predicted are those of the current event ([`Relation::Same`]), each
//! with the learned probability that an entity of its kind is touched again within the horizon
//! (hits over trials per kind), expected after the mean re-touch gap of the kind.

use std::collections::VecDeque;
use std::time::Duration;

use prescient_core::{
    EntityKey, Event, Forecast, NextEvent, Observe, OnlineModel, Prediction, Relation, SmolStr,
    Timestamp,
};
use rustc_hash::FxHashMap;

/// Settings of a [`SimpleModel`].
#[derive(Debug, Clone, PartialEq)]
pub struct SimpleConfig {
    /// How long after a touch a re-touch still counts as a hit; also the end of each
    /// prediction's window.
    pub horizon: Duration,
    /// At most this many next event types are returned.
    pub max_next: usize,
}

impl Default for SimpleConfig {
    fn default() -> Self {
        SimpleConfig {
            horizon: Duration::from_secs(3600),
            max_next: 5,
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Transition {
    count: u64,
    gap_sum_s: f64,
}

#[derive(Debug, Clone, Copy)]
struct EntityState {
    last_type: u32,
    last_time: Timestamp,
    /// A trial opened by a learned touch that is not resolved yet.
    open: bool,
}

#[derive(Debug, Clone, Copy, Default)]
struct KindStats {
    hits: u64,
    trials: u64,
    gap_sum_s: f64,
}

impl KindStats {
    fn confidence(&self) -> f32 {
        // Laplace's rule of succession: 1/2 before any evidence.
        ((self.hits as f64 + 1.0) / (self.trials as f64 + 2.0)) as f32
    }

    fn mean_gap(&self) -> Duration {
        if self.hits == 0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((self.gap_sum_s / self.hits as f64).max(0.0))
        }
    }
}

/// The baseline online model: bigram next types, same-entity re-touch predictions.
///
/// # Examples
/// ```
/// use prescient_core::{Event, EntityRef, Observe, OnlineModel, Timestamp};
/// use prescient_predict::SimpleModel;
///
/// let mut m = SimpleModel::default();
/// let a = Event::new("1", "a", Timestamp::from_secs(0)).with_entity(EntityRef::new("case", "1"));
/// let b = Event::new("2", "b", Timestamp::from_secs(60)).with_entity(EntityRef::new("case", "1"));
/// m.observe(&a, Observe::Learn);
/// m.observe(&b, Observe::Learn);
/// let f = m.forecast(&a);
/// assert_eq!(f.top().map(|n| n.event_type.as_str()), Some("b"));
/// ```
#[derive(Debug, Default)]
pub struct SimpleModel {
    cfg: SimpleConfig,
    type_names: Vec<SmolStr>,
    type_ids: FxHashMap<SmolStr, u32>,
    transitions: FxHashMap<(u32, u32), Transition>,
    from_totals: FxHashMap<u32, Transition>,
    entities: FxHashMap<EntityKey, EntityState>,
    kinds: FxHashMap<SmolStr, KindStats>,
    pending: VecDeque<(Timestamp, EntityKey)>,
}

impl SimpleModel {
    /// A model with the given settings.
    pub fn new(cfg: SimpleConfig) -> Self {
        SimpleModel {
            cfg,
            ..SimpleModel::default()
        }
    }

    /// The settings.
    pub fn config(&self) -> &SimpleConfig {
        &self.cfg
    }

    fn intern(&mut self, t: &SmolStr) -> u32 {
        if let Some(&id) = self.type_ids.get(t) {
            return id;
        }
        let id = u32::try_from(self.type_names.len()).unwrap_or(u32::MAX);
        self.type_names.push(t.clone());
        self.type_ids.insert(t.clone(), id);
        id
    }

    /// Resolves trials whose horizon has passed without a re-touch, as misses.
    fn expire(&mut self, now: Timestamp) {
        while let Some((t0, _)) = self.pending.front() {
            if t0.plus(self.cfg.horizon) >= now {
                break;
            }
            let Some((t0, key)) = self.pending.pop_front() else {
                break;
            };
            if let Some(st) = self.entities.get_mut(&key)
                && st.last_time == t0
                && st.open
            {
                st.open = false;
                self.kinds.entry(key.kind.clone()).or_default().trials += 1;
            }
        }
    }
}

impl OnlineModel for SimpleModel {
    fn name(&self) -> &str {
        "simple"
    }

    fn observe(&mut self, event: &Event, mode: Observe) {
        if mode == Observe::Skip {
            return;
        }
        let learn = mode == Observe::Learn;
        let now = event.time;
        if learn {
            self.expire(now);
        }
        let cur = self.intern(&event.event_type);
        let keys = event.distinct_keys();

        // The predecessor event: the latest previous event among this event's entities.
        let prev = keys
            .iter()
            .filter_map(|k| self.entities.get(k))
            .max_by_key(|s| s.last_time)
            .map(|s| (s.last_type, s.last_time));
        if learn && let Some((p, t0)) = prev {
            let gap = now.secs_since(t0).max(0.0);
            for tr in [
                self.transitions.entry((p, cur)).or_default(),
                self.from_totals.entry(p).or_default(),
            ] {
                tr.count += 1;
                tr.gap_sum_s += gap;
            }
        }

        for key in keys {
            let st = self.entities.entry(key.clone()).or_insert(EntityState {
                last_type: cur,
                last_time: now,
                open: false,
            });
            if learn && st.open && now.since(st.last_time) <= self.cfg.horizon {
                let ks = self.kinds.entry(key.kind.clone()).or_default();
                ks.hits += 1;
                ks.trials += 1;
                ks.gap_sum_s += now.secs_since(st.last_time).max(0.0);
            }
            st.last_type = cur;
            st.last_time = now;
            st.open = learn;
            if learn {
                self.pending.push_back((now, key));
            }
        }
    }

    fn forecast(&mut self, event: &Event) -> Forecast {
        let now = event.time;
        let mut f = Forecast::default();
        let vocab = self.type_names.len();
        if vocab > 0 {
            let cur = self.type_ids.get(&event.event_type).copied();
            let total = cur
                .and_then(|c| self.from_totals.get(&c))
                .copied()
                .unwrap_or_default();
            let denom = total.count as f64 + vocab as f64;
            let mut next: Vec<(f64, u32, f64)> = (0..vocab)
                .filter_map(|t| u32::try_from(t).ok())
                .map(|t| {
                    let tr = cur
                        .and_then(|c| self.transitions.get(&(c, t)))
                        .copied()
                        .unwrap_or_default();
                    let gap = if tr.count > 0 {
                        tr.gap_sum_s / tr.count as f64
                    } else if total.count > 0 {
                        total.gap_sum_s / total.count as f64
                    } else {
                        0.0
                    };
                    ((tr.count as f64 + 1.0) / denom, t, gap)
                })
                .collect();
            next.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            next.truncate(self.cfg.max_next);
            f.next = next
                .into_iter()
                .map(|(p, t, gap)| NextEvent {
                    event_type: self.type_names[t as usize].clone(),
                    probability: p as f32,
                    expected_at: now.plus(Duration::from_secs_f64(gap.max(0.0))),
                })
                .collect();
        }
        let top_type = f.top().map(|n| n.event_type.clone());
        let latest = now.plus(self.cfg.horizon);
        for key in event.distinct_keys() {
            let ks = self.kinds.get(&key.kind).copied().unwrap_or_default();
            let expected_at = now.plus(ks.mean_gap()).min(latest);
            f.entities.push(Prediction {
                entity: key,
                confidence: ks.confidence(),
                expected_at,
                latest,
                event_type: top_type.clone(),
                relation: Relation::Same,
            });
        }
        f.entities
            .sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prescient_core::EntityRef;

    fn ev(id: &str, ty: &str, secs: i64, ents: &[(&str, &str)]) -> Event {
        let mut e = Event::new(id, ty, Timestamp::from_secs(secs));
        for (k, i) in ents {
            e = e.with_entity(EntityRef::new(*k, *i));
        }
        e
    }

    fn learn_all(m: &mut SimpleModel, evs: &[Event]) {
        for e in evs {
            m.observe(e, Observe::Learn);
        }
    }

    #[test]
    fn bigram_with_add_one_smoothing_and_mean_gap() {
        let mut m = SimpleModel::default();
        // Case 1: a -> b (10 s), case 2: a -> b (30 s), case 3: a -> c (100 s).
        learn_all(
            &mut m,
            &[
                ev("1", "a", 0, &[("case", "1")]),
                ev("2", "b", 10, &[("case", "1")]),
                ev("3", "a", 20, &[("case", "2")]),
                ev("4", "b", 50, &[("case", "2")]),
                ev("5", "a", 60, &[("case", "3")]),
                ev("6", "c", 160, &[("case", "3")]),
            ],
        );
        let f = m.forecast(&ev("7", "a", 1000, &[("case", "4")]));
        // Types seen: a, b, c. From a: b twice, c once. (2+1)/(3+3), (1+1)/6, (0+1)/6.
        let got: Vec<(&str, f32)> = f
            .next
            .iter()
            .map(|n| (n.event_type.as_str(), n.probability))
            .collect();
        assert_eq!(got, vec![("b", 0.5), ("c", 2.0 / 6.0), ("a", 1.0 / 6.0)]);
        assert_eq!(f.next[0].expected_at, Timestamp::from_secs(1020));
        assert_eq!(f.next[1].expected_at, Timestamp::from_secs(1100));
        // a -> a never seen: falls back to the mean gap out of a, (10+30+100)/3.
        let expected = Timestamp::from_secs(1000).plus(Duration::from_secs_f64(140.0 / 3.0));
        assert_eq!(f.next[2].expected_at, expected);
    }

    #[test]
    fn unknown_type_is_uniform_and_empty_model_predicts_no_types() {
        let mut m = SimpleModel::default();
        assert!(m.forecast(&ev("1", "a", 0, &[])).next.is_empty());
        learn_all(
            &mut m,
            &[
                ev("1", "a", 0, &[("c", "1")]),
                ev("2", "b", 1, &[("c", "1")]),
            ],
        );
        let f = m.forecast(&ev("3", "zzz", 2, &[]));
        assert_eq!(f.next.len(), 2);
        assert!(f.next.iter().all(|n| n.probability == 0.5));
    }

    #[test]
    fn kind_retouch_probability_counts_hits_and_expired_misses() {
        let cfg = SimpleConfig {
            horizon: Duration::from_secs(100),
            ..SimpleConfig::default()
        };
        let mut m = SimpleModel::new(cfg);
        learn_all(
            &mut m,
            &[
                // order o1 touched at 0 and 40: a hit with gap 40.
                ev("1", "x", 0, &[("order", "o1"), ("customer", "c1")]),
                ev("2", "y", 40, &[("order", "o1")]),
                // o2 at 50, o1 last touched at 40; neither touched again before 1000: misses.
                ev("3", "x", 50, &[("order", "o2")]),
                ev("4", "z", 1000, &[("order", "o3")]),
            ],
        );
        // order: 1 hit, 2 misses (o1@40, o2@50) -> (1+1)/(3+2); customer: 1 miss -> 1/3.
        let f = m.forecast(&ev("5", "x", 1001, &[("order", "o9"), ("customer", "c9")]));
        assert_eq!(f.entities.len(), 2);
        assert_eq!(f.entities[0].entity, EntityKey::new("order", "o9"));
        assert!((f.entities[0].confidence - 0.4).abs() < 1e-6);
        assert_eq!(f.entities[0].expected_at, Timestamp::from_secs(1041));
        assert_eq!(f.entities[0].latest, Timestamp::from_secs(1101));
        assert_eq!(f.entities[0].relation, Relation::Same);
        assert!((f.entities[1].confidence - 1.0 / 3.0).abs() < 1e-6);
        // No hit for customers: expected right away.
        assert_eq!(f.entities[1].expected_at, Timestamp::from_secs(1001));
    }

    #[test]
    fn late_retouch_is_a_miss_not_a_hit() {
        let cfg = SimpleConfig {
            horizon: Duration::from_secs(10),
            ..SimpleConfig::default()
        };
        let mut m = SimpleModel::new(cfg);
        learn_all(
            &mut m,
            &[
                ev("1", "a", 0, &[("k", "1")]),
                ev("2", "a", 50, &[("k", "1")]),
            ],
        );
        let ks = m.kinds.get("k").copied().unwrap_or_default();
        assert_eq!((ks.hits, ks.trials), (0, 1));
    }

    #[test]
    fn track_updates_context_but_learns_nothing() {
        let mut m = SimpleModel::default();
        learn_all(
            &mut m,
            &[
                ev("1", "a", 0, &[("c", "1")]),
                ev("2", "b", 1, &[("c", "1")]),
            ],
        );
        let before = m.forecast(&ev("q", "a", 2, &[]));
        let kinds_before = m.kinds.get("c").map(|k| (k.hits, k.trials));
        m.observe(&ev("3", "a", 3, &[("c", "2")]), Observe::Track);
        m.observe(&ev("4", "a", 4, &[("c", "2")]), Observe::Track);
        let after = m.forecast(&ev("q", "a", 2, &[]));
        assert_eq!(before, after);
        assert_eq!(m.kinds.get("c").map(|k| (k.hits, k.trials)), kinds_before);
        assert_eq!(kinds_before, Some((1, 1)));
    }
}
