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
//! entities from all three: an entity predicted by more than one keeps its most confident
//! prediction.

use std::time::Duration;

use prescient_core::{Event, Forecast, Observe, OnlineModel};
use rustc_hash::FxHashMap;

use crate::{KeyConfig, KeyModel, RelationalConfig, RelationalModel, ReuseConfig, ReuseModel};

/// The default model (`online`). See the [module documentation](self).
#[derive(Debug)]
pub struct PrescientModel {
    relational: RelationalModel,
    reuse: ReuseModel,
    keys: KeyModel,
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
        self.relational.observe(event, mode);
        self.reuse.observe(event, mode);
        self.keys.observe(event, mode);
    }

    fn forecast(&mut self, event: &Event) -> Forecast {
        let mut f = self.relational.forecast(event);
        let more = [self.reuse.forecast(event), self.keys.forecast(event)];
        if more.iter().all(|m| m.entities.is_empty()) {
            return f;
        }
        let mut at: FxHashMap<_, usize> = FxHashMap::default();
        for (i, p) in f.entities.iter().enumerate() {
            at.entry(p.entity.clone()).or_insert(i);
        }
        for m in more {
            for p in m.entities {
                match at.get(&p.entity) {
                    Some(&i) => {
                        if f.entities[i].confidence < p.confidence {
                            f.entities[i] = p;
                        }
                    }
                    None => {
                        at.insert(p.entity.clone(), f.entities.len());
                        f.entities.push(p);
                    }
                }
            }
        }
        f.entities
            .sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
        f
    }

    fn set_max_age(&mut self, max_age: Option<Duration>) {
        self.reuse.set_window(max_age);
        self.relational.set_max_age(max_age);
        self.keys.set_max_age(max_age);
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
        let mut seen = std::collections::HashSet::new();
        for p in &last.entities {
            assert!(seen.insert(p.entity.clone()), "{} twice", p.entity);
        }
        m.set_max_age(None);
        assert_eq!(m.reuse().config().window, None);
    }
}
