//! Which copy of an entity the cache holds, and when it expires ([`Copies`], with a journal of
//! changes).

use prescient_core::EntityKey;
use rustc_hash::FxHashMap;

use super::ReuseModel;
use super::state::EntityState;

/// What the model assumes of an entity's cached copy: the fields [`ReuseModel::fresh_until`]
/// and [`ReuseModel::copy_fresh`] read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CopyState {
    pub(super) fill: i64,
    pub(super) refill: i64,
    pub(super) refreshed: u32,
}

impl CopyState {
    pub(super) fn of(st: &EntityState) -> Self {
        CopyState {
            fill: st.fill,
            refill: st.refill,
            refreshed: st.refreshed,
        }
    }
}

/// The copies that changed while a journal was kept ([`ReuseModel::keep_journal`]): per entity,
/// in order, the step (event of a batch) that changed it and the copy before the change
/// (`None`: not tracked). So the copies as they were after any step of the batch can be read
/// once the batch is done ([`CopiesAt`]).
#[derive(Debug, Default)]
pub(crate) struct Journal {
    pub(super) step: u32,
    pub(super) changes: FxHashMap<EntityKey, Vec<(u32, Option<CopyState>)>>,
}

impl Journal {
    /// The copy of `key` after step `step`, if it changed after that step (`None`: it did
    /// not, so the model's current copy is the one).
    pub(super) fn before_later_change(
        &self,
        key: &EntityKey,
        step: u32,
    ) -> Option<Option<CopyState>> {
        let changes = self.changes.get(key)?;
        changes
            .iter()
            .find(|(at, _)| *at > step)
            .map(|&(_, copy)| copy)
    }
}

/// Reads an entity's cached copy as the model assumes it.
pub(crate) trait Copies {
    /// See [`ReuseModel::fresh_until`].
    fn fresh_until(&self, key: &EntityKey) -> Option<i64>;
    /// See [`ReuseModel::copy_fresh`].
    fn copy_fresh(&self, key: &EntityKey, now: i64) -> bool;
}

impl Copies for ReuseModel {
    fn fresh_until(&self, key: &EntityKey) -> Option<i64> {
        ReuseModel::fresh_until(self, key)
    }

    fn copy_fresh(&self, key: &EntityKey, now: i64) -> bool {
        ReuseModel::copy_fresh(self, key, now)
    }
}

/// The copies as they were right after step `step` of a journaled batch.
pub(crate) struct CopiesAt<'a> {
    pub(crate) reuse: &'a ReuseModel,
    pub(crate) journal: &'a Journal,
    pub(crate) step: u32,
}

impl CopiesAt<'_> {
    pub(super) fn copy(&self, key: &EntityKey) -> Option<CopyState> {
        match self.journal.before_later_change(key, self.step) {
            Some(copy) => copy,
            None => self.reuse.state(key).map(CopyState::of),
        }
    }
}

impl Copies for CopiesAt<'_> {
    fn fresh_until(&self, key: &EntityKey) -> Option<i64> {
        self.reuse.fresh_until_of(self.copy(key)?)
    }

    fn copy_fresh(&self, key: &EntityKey, now: i64) -> bool {
        self.copy(key)
            .is_some_and(|c| self.reuse.copy_fresh_of(&c, now))
    }
}

impl ReuseModel {
    /// Whether `key`'s cached copy is assumed fresh at `now`: filled (by a read that missed, or
    /// by a predicted refresh) less than one window before.
    pub fn copy_fresh(&self, key: &EntityKey, now: i64) -> bool {
        self.state(key)
            .is_some_and(|s| self.copy_fresh_of(&CopyState::of(s), now))
    }

    pub(super) fn copy_fresh_of(&self, c: &CopyState, now: i64) -> bool {
        self.window_us > 0
            && (now < self.start_of(c.fill, 1)
                || self.refilled_at(c, now)
                || (c.refreshed != 0 && self.window_of(c.fill, now) == c.refreshed))
    }

    /// Until when the copy a prefetch refilled (as reported) is fresh; `i64::MIN` if none was
    /// reported since `fill`.
    pub(super) fn refill_until(&self, c: &CopyState) -> i64 {
        if c.refill > c.fill {
            c.refill.saturating_add(self.window_us)
        } else {
            i64::MIN
        }
    }

    /// Whether the copy a prefetch refilled (as reported) is fresh at `t`.
    pub(super) fn refilled_at(&self, c: &CopyState, t: i64) -> bool {
        t >= c.refill && t < self.refill_until(c)
    }

    /// Until when `key`'s cached copy (filled by a read, or refilled by a reported prefetch) is
    /// assumed fresh; `None` for an entity not tracked, or without a data-age limit.
    pub fn fresh_until(&self, key: &EntityKey) -> Option<i64> {
        self.fresh_until_of(CopyState::of(self.state(key)?))
    }

    pub(super) fn fresh_until_of(&self, c: CopyState) -> Option<i64> {
        (self.window_us > 0).then(|| self.start_of(c.fill, 1).max(self.refill_until(&c)))
    }

    /// Starts keeping a journal of the copies that change, for a batch of steps (see
    /// [`Journal`]); [`ReuseModel::journal_step`] numbers the steps.
    pub(crate) fn keep_journal(&mut self) {
        self.journal = Some(Journal::default());
    }

    /// The changes made from now on belong to step `step` of the journaled batch.
    pub(crate) fn journal_step(&mut self, step: u32) {
        if let Some(j) = &mut self.journal {
            j.step = step;
        }
    }

    /// Stops keeping the journal, and returns it.
    pub(crate) fn take_journal(&mut self) -> Journal {
        self.journal.take().unwrap_or_default()
    }

    /// Notes, while a journal is kept, that `key`'s copy is about to change from `old`.
    pub(super) fn note(&mut self, key: &EntityKey, old: Option<CopyState>) {
        if let Some(j) = &mut self.journal {
            let step = j.step;
            j.changes.entry(key.clone()).or_default().push((step, old));
        }
    }
}
