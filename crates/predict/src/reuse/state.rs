//! What the reuse-time model keeps per entity: its copy, its process state and its heap slot.

use prescient_core::EntityKey;

use super::hazard::NUM_FEATURES;

#[derive(Debug, Clone, Copy)]
pub(super) struct EntityState {
    pub(super) kind: u64,
    pub(super) id: u64,
    pub(super) last: i64,
    /// When the copy the cache is assumed to hold was filled: the read that missed, or the
    /// start of the window whose refresh was predicted. Windows follow its expiry.
    pub(super) fill: i64,
    /// The window (after `fill`) last predicted with enough confidence to be refreshed; 0: none.
    /// Assumed only while the driver does not report fills (see [`ReuseModel::filled`]).
    ///
    /// [`ReuseModel::filled`]: prescient_core::OnlineModel::filled
    pub(super) refreshed: u32,
    /// When a prefetch last refilled the copy, as the driver reported; `i64::MIN`: none since
    /// `fill`.
    pub(super) refill: i64,
    pub(super) ty: u64,
    pub(super) prev_ty: u64,
    pub(super) reads: u32,
    /// Windows between the previous read and `last`.
    pub(super) gap: u32,
    /// Windows `1..=learned` after `fill` have been learned from (as negatives) already.
    pub(super) learned: u32,
    /// The entity has an entry in the heap of windows.
    pub(super) scheduled: bool,
    /// Windows in a row predicted below [`COLD`].
    ///
    /// [`COLD`]: super::COLD
    pub(super) cold: u32,
    /// Put to sleep: its remaining windows are not predicted.
    pub(super) asleep: bool,
}

/// See [`ReuseModel::prefix`].
///
/// [`ReuseModel::prefix`]: super::ReuseModel::prefix
#[derive(Debug, Clone, Copy)]
pub(super) struct Prefix {
    pub(super) h: [u64; NUM_FEATURES],
    pub(super) hot: bool,
}

#[derive(Debug, Clone)]
pub(super) struct Slot {
    pub(super) key: EntityKey,
    pub(super) st: EntityState,
    pub(super) live: bool,
}

/// The estimated bytes one tracked entity costs: its entry in the index (key, slot number
/// and the table's control byte, at the table's 7/8 load), its slot, and its entry in the
/// heap of windows. Estimated: tables and vectors just grown hold up to twice the room, and
/// ids or kinds longer than 23 bytes (kept on the heap) are not counted.
pub(crate) fn estimated_entity_bytes() -> usize {
    let entry = size_of::<EntityKey>() + size_of::<u32>() + 1;
    entry * 8 / 7 + size_of::<Slot>() + size_of::<(i64, i64, u32)>()
}
