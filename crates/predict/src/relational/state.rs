//! What the relational model tracks and learns: per-entity state, context counts, relation
//! statistics.

use prescient_core::{EntityKey, SmolStr};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::hist::LogHist;

/// The tracked state of one entity.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct EntityState {
    pub(super) kind: u16,
    /// Most recent type first; `hist_len` of them are valid.
    pub(super) hist: [u16; MAX_ORDER],
    pub(super) hist_len: u8,
    /// Events seen for this entity.
    pub(super) seen: u32,
    pub(super) last_time: i64,
    /// The gap before the last event, in seconds.
    pub(super) last_gap_s: f32,
    /// The relation context and time of the last touch of this entity (relation `same`).
    pub(super) trigger_same: Option<(u32, i64)>,
    /// The relation context and time of the last event that linked to this entity.
    pub(super) trigger_link: Option<(u32, i64)>,
    /// The raw top-1 next-type prediction made after this entity's last learned event, not yet
    /// resolved: (event sequence number, type, probability, context levels used).
    pub(super) pending: Option<(u64, u16, f32, u8)>,
    /// The start of the entity's current data-age cycle (its first touch at least
    /// [`RelationalConfig::min_lead`] after the previous cycle's start), in microseconds.
    ///
    /// [`RelationalConfig::min_lead`]: super::RelationalConfig::min_lead
    pub(super) cycle_start: Option<i64>,
    /// Entities of other kinds seen with it, most recent first.
    pub(super) links: Vec<EntityKey>,
    /// How many of its events ago it touched an event type the model had not learned, if it
    /// did (see [`NOVEL`]).
    ///
    /// [`NOVEL`]: super::calibration::NOVEL
    pub(super) since_novel: Option<u8>,
}

/// Counts of next types after one context.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct Counts {
    pub(super) total: f32,
    pub(super) next: Vec<(u16, f32)>,
}

impl Counts {
    pub(super) fn add(&mut self, t: u16, cap: f32) {
        match self.next.iter_mut().find(|(x, _)| *x == t) {
            Some((_, c)) => *c += 1.0,
            None => self.next.push((t, 1.0)),
        }
        self.total += 1.0;
        if cap > 0.0 && self.total > cap {
            for (_, c) in &mut self.next {
                *c *= 0.5;
            }
            self.total *= 0.5;
        }
    }
}

/// Hit statistics of one relation context.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct RelStats {
    pub(super) trials: f32,
    pub(super) gaps: LogHist,
    /// The cached best window `(start_s, end_s, weight)` and the trials when it was computed.
    pub(super) window: Option<(f64, f64, f32)>,
    pub(super) window_at: f32,
}

/// The longest type history an entity keeps.
pub const MAX_ORDER: usize = 8;

impl EntityState {
    pub(super) fn hist(&self) -> &[u16] {
        &self.hist[..usize::from(self.hist_len)]
    }

    pub(super) fn push_type(&mut self, t: u16, order: usize) {
        self.hist.copy_within(0..MAX_ORDER - 1, 1);
        self.hist[0] = t;
        self.hist_len = (usize::from(self.hist_len) + 1).min(order).min(MAX_ORDER) as u8;
    }
}

/// What the model learned, as it is snapshotted.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct State {
    pub(super) types: Vec<SmolStr>,
    pub(super) kinds: Vec<SmolStr>,
    pub(super) unigram: Counts,
    pub(super) contexts: FxHashMap<u64, Counts>,
    /// Time to next per (kind, type, next type).
    pub(super) next_gap: FxHashMap<(u16, u16, u16), LogHist>,
    /// Time to next per (kind, type), the fallback.
    pub(super) any_gap: FxHashMap<(u16, u16), LogHist>,
    pub(super) rel_ids: FxHashMap<(u16, u16, u16, u8), u32>,
    pub(super) rels: Vec<RelStats>,
    /// Per calibration bin: predictions and correct ones.
    pub(super) cal: Vec<(f32, f32)>,
    pub(super) young: FxHashMap<EntityKey, EntityState>,
    pub(super) old: FxHashMap<EntityKey, EntityState>,
    pub(super) evicted: u64,
    /// Events learned from.
    pub(super) learned: u64,
}

/// Records in `learned` (per type id) that the model has learned from an event of type `t`.
pub(super) fn mark_learned(learned: &mut Vec<bool>, t: u16) {
    let i = usize::from(t);
    if learned.len() <= i {
        learned.resize(i + 1, false);
    }
    learned[i] = true;
}

/// At most this many distinct event types are learned. Every next-type forecast is a
/// distribution over all of them (computed per entity and per context level), so an event
/// costs in proportion to their number: the bound bounds that cost. Types beyond it are
/// tracked as one unknown type and never predicted.
pub const MAX_TYPES: usize = 4096;

/// The id of `s` in `names`, interned if new and fewer than `max` (and than `u16::MAX`) are
/// known; `u16::MAX` when full.
pub(super) fn intern(
    names: &mut Vec<SmolStr>,
    ids: &mut FxHashMap<SmolStr, u16>,
    s: &SmolStr,
    max: usize,
) -> u16 {
    if let Some(&i) = ids.get(s) {
        return i;
    }
    if names.len() >= max.min(usize::from(u16::MAX)) {
        return u16::MAX;
    }
    let i = names.len() as u16;
    names.push(s.clone());
    ids.insert(s.clone(), i);
    i
}

/// The estimated bytes one tracked entity costs: its entry in a generation's hash map (key,
/// state and the table's control byte, at the table's 7/8 load) and its links (at most
/// `max_links` keys, on the heap). Estimated: a table just grown holds up to twice the room,
/// and ids or kinds longer than 23 bytes (kept on the heap) are not counted.
pub(crate) fn estimated_entity_bytes(max_links: usize) -> usize {
    let entry = size_of::<EntityKey>() + size_of::<EntityState>() + 1;
    entry * 8 / 7 + max_links * size_of::<EntityKey>()
}
