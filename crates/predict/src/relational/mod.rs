//! [`RelationalModel`]: the default online model.
//!
//! - **Next type.** Each entity keeps its recent event types (up to [`RelationalConfig::order`]).
//!   Its next type is predicted from that history by interpolated Witten-Bell smoothing over a
//!   chain of contexts from short to long ([`ContextSpec`]): the last 1, 2, ... types of the
//!   entity's kind, optionally with the time since the entity's previous event, the hour of day
//!   and the weekday, or the entity's event count. The default chain is the last 1, 2, 3 and 4
//!   types, then the last 3 with the time since the previous event and the event count (how
//!   long a case waited, and how far along it is, tell which branch it takes). The forecast is
//!   for the next event touching *any* of the event's entities: the entities' distributions
//!   are mixed with weights proportional to their rates (one over the median time to their next
//!   event), as for competing clocks. Counts halve once a context
//!   has seen [`RelationalConfig::max_count`] events, so the model follows drift. The top-1
//!   probability is calibrated online by binning (per probability bin, number of context
//!   levels found, whether the entity has seen only one event, and whether it has touched a
//!   type the model had not learned then): the raw top-1 prediction made after each observed
//!   event is recorded against the type of the next learned event touching one of its
//!   entities. The novelty class matters where later cases bring activities the training log
//!   never had (on `env_permit`, 70% of the test rows): such cases are less predictable, and
//!   calibrated apart they get lower confidences. The mixture computed at the end of
//!   `observe` is reused by
//!   the `forecast` of the same event.
//! - **When.** Per (kind, type, next type) a log-bucketed histogram of the time until the next
//!   event of the entity; `expected_at` is its median.
//! - **Which entities.** Each entity of the event ([`Relation::Same`]) and each entity linked to
//!   one of them by earlier events ([`Relation::Linked`]: the last entity of every other kind
//!   that appeared together with it) is predicted through its *relation context*: (kind, type of
//!   the triggering event, linked-from kind). Per context the model learns a histogram of the
//!   time from a trigger to the entity's next touch, and counts trials; the predicted window is
//!   the densest window of at most [`RelationalConfig::window`] within the lookahead, and the
//!   confidence is the share of trials whose next touch fell in such a window. So predictions
//!   generalise to entities never seen before, and confidences are hit rates.
//! - **Bounded memory.** Entities live in two generations of at most
//!   [`RelationalConfig::max_entities`]` / 2` each: when the young one is full, the old one is
//!   dropped (cold entities are evicted) and the young one becomes old. Contexts beyond
//!   [`RelationalConfig::max_contexts`] are not created. At most [`MAX_TYPES`] event types
//!   are learned (a forecast costs in proportion to their number).
//!
//! [`Relation::Same`]: prescient_core::Relation::Same
//! [`Relation::Linked`]: prescient_core::Relation::Linked

use std::hash::Hasher;

use prescient_core::{EntityKey, Event, SmolStr, Timestamp};
use rustc_hash::{FxHashMap, FxHashSet, FxHasher};

mod calibration;
mod config;
mod context;
mod explain;
mod forecast;
mod observe;
mod snapshot;
mod state;
#[cfg(test)]
mod tests;

pub use config::{BadContextSpec, ContextSpec, RelationalConfig};
pub use explain::{ContextUse, ExplainedPrediction, Explanation};
pub use snapshot::{FORMAT_VERSION, SnapshotError};
use state::{Counts, EntityState, RelStats, State};
pub use state::{MAX_ORDER, MAX_TYPES};

/// The default online model: relational, calibrated, bounded. See the module docs.
///
/// # Examples
/// ```
/// use prescient_core::{EntityRef, Event, Observe, OnlineModel, Timestamp};
/// use prescient_predict::RelationalModel;
///
/// let mut m = RelationalModel::default();
/// for c in 0..20 {
///     for (i, t) in ["a", "b", "c"].iter().enumerate() {
///         let e = Event::new(format!("{c}-{i}"), *t, Timestamp::from_secs(c * 100 + i as i64))
///             .with_entity(EntityRef::new("case", c.to_string()));
///         m.observe(&e, Observe::Learn);
///     }
/// }
/// let e = Event::new("x", "b", Timestamp::from_secs(5000)).with_entity(EntityRef::new("case", "new"));
/// m.observe(&e, Observe::Learn);
/// assert_eq!(m.forecast(&e).top().map(|n| n.event_type.as_str()), Some("c"));
/// ```
#[derive(Debug, Default)]
pub struct RelationalModel {
    cfg: RelationalConfig,
    s: State,
    type_ids: FxHashMap<SmolStr, u16>,
    kind_ids: FxHashMap<SmolStr, u16>,
    /// Per type id: learned from at least once (rebuilt from the unigram on restore).
    learned_types: Vec<bool>,
    scratch: Vec<f64>,
    mix: Vec<f64>,
    keys: Vec<(EntityKey, u16, bool)>,
    /// Where each entity of the observed event is in `keys`.
    key_index: FxHashMap<EntityKey, usize>,
    /// The next-type mixture after the last observed event, for its forecast.
    mix_cache: MixCache,
    /// Sequence numbers of tracked events' predictions (calibration), apart from learned ones.
    track_seq: u64,
    /// Forecasts after novel types are calibrated as the others (see
    /// [`OnlineModel::set_novelty_discount`]).
    ///
    /// [`OnlineModel::set_novelty_discount`]: prescient_core::OnlineModel::set_novelty_discount
    no_novelty_discount: bool,
    /// The novelty discount of the last forecast (see [`Forecast::novelty_discount`]).
    ///
    /// [`Forecast::novelty_discount`]: prescient_core::Forecast::novelty_discount
    last_discount: Option<f32>,
    // Reused buffers.
    fkeys: Vec<(EntityKey, u16)>,
    ranked: Vec<(u16, f64)>,
    cands: Vec<(EntityKey, EntityKey, u16, u16, u8)>,
    own_cycles: Vec<Option<i64>>,
    resolved: FxHashSet<u64>,
    linked: Vec<(EntityKey, u16)>,
}

/// The next-type mixture computed at the end of `observe`, reused by the `forecast` of the
/// same event (nothing that it depends on changes in between).
#[derive(Debug, Default)]
struct MixCache {
    valid: bool,
    /// [`fingerprint`] of the event.
    fingerprint: u64,
    dist: Vec<f64>,
    used: usize,
    first_gap: Option<f64>,
    /// The event's type and main entity's kind, as the forecast looks them up.
    cur: Option<u16>,
    kind: Option<u16>,
    /// The event's entities of known kinds, each once, as the forecast collects them.
    fkeys: Vec<(EntityKey, u16)>,
}

/// A hash of everything about an event that its next-type forecast depends on.
fn fingerprint(e: &Event) -> u64 {
    use std::hash::Hash;
    let mut h = FxHasher::default();
    h.write_i64(e.time.as_micros());
    e.event_type.hash(&mut h);
    for r in &e.entities {
        r.kind.hash(&mut h);
        r.id.hash(&mut h);
        r.role.hash(&mut h);
    }
    h.finish()
}

impl RelationalModel {
    /// A model with the given settings.
    pub fn new(mut cfg: RelationalConfig) -> Self {
        let longest = cfg.contexts.iter().map(|c| usize::from(c.history)).max();
        cfg.order = cfg.order.max(longest.unwrap_or(1)).clamp(1, MAX_ORDER);
        cfg.contexts.retain(|c| usize::from(c.history) <= MAX_ORDER);
        cfg.max_entities = cfg.max_entities.max(2);
        RelationalModel {
            cfg,
            ..RelationalModel::default()
        }
    }

    /// The settings.
    pub fn config(&self) -> &RelationalConfig {
        &self.cfg
    }

    /// Entities tracked now (never more than [`RelationalConfig::max_entities`]).
    pub fn tracked_entities(&self) -> usize {
        self.s.young.len() + self.s.old.len()
    }

    /// The estimated bytes one tracked entity costs (see [`RelationalConfig::max_entities`]):
    /// its state, its key and its links. Estimated from the sizes of the types, not
    /// measured.
    pub fn estimated_entity_bytes(&self) -> usize {
        state::estimated_entity_bytes(self.cfg.max_links)
    }

    /// Entities evicted so far.
    pub fn evicted_entities(&self) -> u64 {
        self.s.evicted
    }

    /// Distinct event types learned (never more than [`MAX_TYPES`], unless restored from a
    /// snapshot that had more).
    pub fn types(&self) -> usize {
        self.s.types.len()
    }

    /// Next-type contexts kept now (never more than [`RelationalConfig::max_contexts`]).
    pub fn contexts(&self) -> usize {
        self.s.contexts.len()
    }

    /// Puts an entity into the young generation; when it is full, the old generation (the
    /// entities not touched since the last turnover) is dropped.
    fn put_entity(&mut self, key: EntityKey, st: EntityState) {
        if self.s.young.len() >= self.cfg.max_entities / 2 {
            self.s.evicted += self.s.old.len() as u64;
            self.s.old = std::mem::take(&mut self.s.young);
        }
        self.s.young.insert(key, st);
    }

    /// The main entity of an event: its `case`, else its first entity.
    fn main_ref(e: &Event) -> Option<&prescient_core::EntityRef> {
        e.entities
            .iter()
            .find(|r| r.role.as_deref() == Some("case"))
            .or_else(|| e.entities.first())
    }

    fn rel_id(&mut self, kind: u16, ty: u16, from_kind: u16, relation: u8) -> u32 {
        let next = self.s.rels.len() as u32;
        let id = *self
            .s
            .rel_ids
            .entry((kind, ty, from_kind, relation))
            .or_insert(next);
        if id == next {
            self.s.rels.push(RelStats::default());
        }
        id
    }

    fn learn_next_type(&mut self, kind: u16, st: &EntityState, cur: u16, now: Timestamp) {
        let cap = self.cfg.max_count;
        for i in 0..self.cfg.contexts.len() {
            let spec = self.cfg.contexts[i];
            let Some(key) = Self::context_key(spec, kind, st, now) else {
                continue;
            };
            let full = self.s.contexts.len() >= self.cfg.max_contexts;
            match self.s.contexts.get_mut(&key) {
                Some(c) => c.add(cur, cap),
                None if !full => {
                    let mut c = Counts::default();
                    c.add(cur, cap);
                    self.s.contexts.insert(key, c);
                }
                None => {}
            }
        }
    }

    fn add_trial(&mut self, rel: u32) {
        let cap = self.cfg.max_count;
        if let Some(r) = self.s.rels.get_mut(rel as usize) {
            r.trials += 1.0;
            if cap > 0.0 && r.trials > cap {
                r.trials *= 0.5;
                r.gaps.scale(0.5);
            }
        }
    }

    /// The predicted window of a `same` or `linked` relation context: within the lookahead,
    /// starting no sooner than the minimum lead.
    fn window_of(&mut self, rel: u32) -> Option<(f64, f64, f32, f32)> {
        let max_end = self.cfg.lookahead.as_secs_f64();
        let min_start = self.cfg.min_lead.as_secs_f64();
        self.cached_window(rel, min_start, max_end)
    }

    /// The densest window of a relation context between `min_start` and `max_end`, with the
    /// context's trials, recomputed only when the trials moved by more than 5%. A context is
    /// always asked with the same bounds (refresh contexts with their own), so one cached
    /// window per context suffices.
    fn cached_window(
        &mut self,
        rel: u32,
        min_start: f64,
        max_end: f64,
    ) -> Option<(f64, f64, f32, f32)> {
        let width = self.cfg.window.as_secs_f64();
        let r = self.s.rels.get_mut(rel as usize)?;
        if r.trials <= 0.0 {
            return None;
        }
        if r.window.is_none() || r.trials > r.window_at * 1.05 + 1.0 || r.trials < r.window_at {
            r.window = r.gaps.densest_window(width, min_start, max_end);
            r.window_at = r.trials;
        }
        let (s, e, w) = r.window?;
        Some((s, e, w, r.trials))
    }

    /// Replaces the settings that do not change what was learned (windows, lookahead, bounds).
    /// The context chain is kept, since the learned counts depend on it.
    pub fn reconfigure(&mut self, mut cfg: RelationalConfig) {
        cfg.contexts = self.cfg.contexts.clone();
        cfg.order = self.cfg.order;
        for r in &mut self.s.rels {
            r.window = None;
        }
        self.mix_cache.valid = false;
        self.cfg = cfg;
    }
}
