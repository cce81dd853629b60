//! [`ReuseModel`]: when will an entity be read again, window by window.
//!
//! A cached entry may be at most `window` old (the data-age limit). After an entity is read at
//! `t`, its copy expires at `t + window`; a prefetch is worth its load only if the entity is
//! read inside the window that follows. The model therefore looks at the windows
//! `[t + j·window, t + (j+1)·window)`, `j = 1, 2, …`, one after the other, and estimates for
//! each the probability that the entity's next read falls inside it, given that it has not
//! been read before (a discrete hazard).
//!
//! The estimate is an online logistic regression over hashed features: the entity's kind,
//! the types of its last two events (its process state), how many windows have passed (coarse
//! and exact, so that fixed timers such as "a reminder 20 days after confirmation" are
//! learned), the hour of day and day of week of the window (working hours, weekly rhythm),
//! and, for entities read often, the entity itself. Every window is a training example: a
//! window that passes without a read is a negative, the window of the next read a positive.
//! Nothing in it depends on a particular log; it generalises to entities it has never seen
//! through their kind and state.
//!
//! Which copy a read finds follows the cache: a read that misses fills it, and so does a
//! prefetch, which the driver reports ([`OnlineModel::filled`]); where nobody reports fills,
//! a window predicted at 0.5 or more is assumed refreshed at its start.
//!
//! Predictions are made for windows that start within the next `window` of the event being
//! forecast: each entity's next window sits in a heap ordered by start time (the heap holds slot
//! numbers, not keys, so that it costs integer comparisons). An entity whose windows stay
//! below [`COLD`] for [`ReuseConfig::cold_windows`] windows in a row is not predicted again until
//! it is read (its remaining windows are still learned from): most entities of a log are read a
//! few times and then never again, and predicting each of their windows was most of the cost.
//!
//! [`OnlineModel::filled`]: prescient_core::OnlineModel::filled

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use prescient_core::EntityKey;
use rustc_hash::FxHashMap;

mod config;
mod copies;
mod due;
mod hazard;
mod observe;
mod state;
#[cfg(test)]
mod tests;

pub use config::{COLD, ReuseConfig};
pub(crate) use copies::{Copies, CopiesAt, CopyState, Journal};
use hazard::{CAL_BINS, CAL_KINDS, NUM_FEATURES, mix};
use state::{EntityState, Slot};

/// The online reuse-time model. See the [module documentation](self).
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use prescient_core::{Event, EntityRef, Observe, OnlineModel, Timestamp};
/// use prescient_predict::{ReuseConfig, ReuseModel};
///
/// let mut m = ReuseModel::new(ReuseConfig::default());
/// // Jobs that are each read again 90 minutes after their first read.
/// for i in 0..3000i64 {
///     for (id, t) in [(i, i * 600), (i - 9, i * 600)] {
///         let e = Event::new(i.to_string(), "tick", Timestamp::from_secs(t))
///             .with_entity(EntityRef::new("job", id.to_string()));
///         m.observe(&e, Observe::Learn);
///         m.forecast(&e);
///     }
/// }
/// let e = Event::new("x", "tick", Timestamp::from_secs(3000 * 600 + 3000))
///     .with_entity(EntityRef::new("job", "new"));
/// m.observe(&e, Observe::Learn);
/// let f = m.forecast(&Event::new("y", "tick", Timestamp::from_secs(3000 * 600 + 3600)));
/// assert!(f.entities.iter().any(|p| p.entity.id == "new" && p.confidence > 0.8));
/// ```
#[derive(Debug)]
pub struct ReuseModel {
    cfg: ReuseConfig,
    window_us: i64,
    /// Weight and sum of squared gradients, side by side (one cache line per feature).
    weights: Vec<[f32; 2]>,
    mask: u64,
    /// Slots of the entities tracked, by key.
    index: FxHashMap<EntityKey, u32>,
    /// Entity states; a slot not in `index` is free (listed in `free`).
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Windows to predict, `(start, fill, slot)`, earliest first; at most one per entity and
    /// fill. Integers only, so that the heap's comparisons and moves are cheap.
    due: BinaryHeap<Reverse<(i64, i64, u32)>>,
    now: i64,
    feats: [usize; NUM_FEATURES],
    /// Reliability of the raw probability per kind (hashed into slots) and tenth of the unit
    /// interval: `[windows, windows that held the read]`, decayed.
    calibration: Vec<[[f32; 2]; CAL_BINS]>,
    /// Windows predicted so far.
    predicted: u64,
    /// Windows learned from so far (sampled windows count once).
    learned: u64,
    /// Per kind and state (hashed into slots): `[entities put to sleep, of those read again
    /// while asleep]`.
    sleep: Vec<[u32; 2]>,
    /// The driver reports the prefetches that filled the cache ([`OnlineModel::filled`]): a
    /// copy counts as refreshed when one did, not when a window was predicted likely enough.
    ///
    /// [`OnlineModel::filled`]: prescient_core::OnlineModel::filled
    fed: bool,
    /// While kept, the copies that change (see [`Journal`]).
    journal: Option<Journal>,
}

const SLEEP_SLOTS: usize = 4096;

/// A state keeps being put to sleep while fewer than this share of its sleepers were read again
/// (after one wake, it waits for this many sleepers per wake).
const SLEEP_WAKE_SHARE: u32 = 50;

impl ReuseModel {
    /// A model with the given settings.
    pub fn new(cfg: ReuseConfig) -> Self {
        let bits = cfg.weight_bits.clamp(8, 28);
        let n = 1usize << bits;
        ReuseModel {
            window_us: cfg
                .window
                .map_or(0, |w| i64::try_from(w.as_micros()).unwrap_or(i64::MAX)),
            weights: vec![[0.0, 1.0]; n],
            mask: (n as u64) - 1,
            index: FxHashMap::default(),
            slots: Vec::new(),
            free: Vec::new(),
            due: BinaryHeap::new(),
            now: i64::MIN,
            feats: [0; NUM_FEATURES],
            calibration: vec![[[0.0; 2]; CAL_BINS]; CAL_KINDS],
            predicted: 0,
            learned: 0,
            sleep: vec![[0; 2]; SLEEP_SLOTS],
            fed: false,
            journal: None,
            cfg,
        }
    }

    /// The settings.
    pub fn config(&self) -> &ReuseConfig {
        &self.cfg
    }

    fn sleep_slot(st: &EntityState) -> usize {
        (mix(st.kind, st.ty) % SLEEP_SLOTS as u64) as usize
    }

    /// Whether entities in `st`'s kind and state may be put to sleep.
    fn may_sleep(&self, st: &EntityState) -> bool {
        let [slept, woke] = self.sleep[Self::sleep_slot(st)];
        woke == 0 || woke.saturating_mul(SLEEP_WAKE_SHARE) < slept
    }

    /// Windows predicted so far (the model's main cost).
    pub fn windows_predicted(&self) -> u64 {
        self.predicted
    }

    /// Windows learned from so far: the updates made (a sampled window counts once).
    pub fn windows_learned(&self) -> u64 {
        self.learned
    }

    /// Entity slots allocated (tracked and free): what the model's per-entity memory holds.
    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    /// Entities tracked now.
    pub fn tracked(&self) -> usize {
        self.index.len()
    }

    /// Tracks a new entity in a free slot (or a new one), and returns the slot.
    fn insert(&mut self, key: EntityKey, st: EntityState) -> u32 {
        let fresh = Slot {
            key: key.clone(),
            st,
            live: true,
        };
        let i = match self.free.pop() {
            Some(i) => {
                if let Some(s) = self.slots.get_mut(i as usize) {
                    *s = fresh;
                }
                i
            }
            None => {
                self.slots.push(fresh);
                u32::try_from(self.slots.len() - 1).unwrap_or(u32::MAX)
            }
        };
        self.index.insert(key, i);
        i
    }

    fn state(&self, key: &EntityKey) -> Option<&EntityState> {
        let &slot = self.index.get(key)?;
        self.slots.get(slot as usize).map(|s| &s.st)
    }

    /// The estimated bytes one tracked entity costs (see [`ReuseConfig::max_entities`]).
    /// Estimated from the sizes of the types, not measured.
    pub fn estimated_entity_bytes(&self) -> usize {
        state::estimated_entity_bytes()
    }

    /// Sets the most entities tracked; when more are, the least recently read half is
    /// forgotten (at the next event). What was learned is kept.
    pub fn set_max_entities(&mut self, max_entities: usize) {
        self.cfg.max_entities = max_entities;
    }

    /// Sets the window (the data-age limit); `None` turns predictions off. What was learned
    /// is kept only if the window is unchanged.
    pub fn set_window(&mut self, window: Option<Duration>) {
        if window != self.cfg.window {
            *self = ReuseModel::new(ReuseConfig {
                window,
                ..self.cfg.clone()
            });
        }
    }

    /// Forgets the least recently read half of the entities.
    fn shrink(&mut self) {
        let mut lasts: Vec<i64> = self
            .slots
            .iter()
            .filter(|s| s.live)
            .map(|s| s.st.last)
            .collect();
        if lasts.is_empty() {
            return;
        }
        let mid = lasts.len() / 2;
        let (_, cut, _) = lasts.select_nth_unstable(mid);
        let cut = *cut;
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if slot.live && slot.st.last < cut {
                slot.live = false;
                self.index.remove(&slot.key);
                self.free.push(i as u32);
                if let Some(j) = &mut self.journal {
                    let step = j.step;
                    j.changes
                        .entry(slot.key.clone())
                        .or_default()
                        .push((step, Some(CopyState::of(&slot.st))));
                }
            }
        }
        let slots = &self.slots;
        self.due.retain(|Reverse((_, _, i))| {
            slots
                .get(*i as usize)
                .is_some_and(|s| s.live && s.st.scheduled)
        });
    }
}
