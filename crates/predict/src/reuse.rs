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

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::collections::binary_heap::PeekMut;
use std::hash::BuildHasher;
use std::time::Duration;

use prescient_core::{
    EntityKey, Event, Forecast, Observe, OnlineModel, Prediction, Relation, Timestamp,
};
use rustc_hash::{FxBuildHasher, FxHashMap};

/// Settings of a [`ReuseModel`].
#[derive(Debug, Clone, PartialEq)]
pub struct ReuseConfig {
    /// The data-age limit: the length of one window. `None` (entries never expire) turns the
    /// model off, since a cached entry then needs no refresh.
    pub window: Option<Duration>,
    /// How many windows after a read are considered; later reads start afresh. Every window
    /// considered is predicted and learned from, so this bounds the model's work per entity
    /// read. On the headline replay, 48 (two days of hourly windows) instead of a week ran
    /// 1.3x (OCEL) to 1.6x (helpdesk) faster and closed as much of the gap: confident windows
    /// more than two days after a read were under 4% of all.
    pub max_windows: u32,
    /// The most entities tracked; the least recently read are forgotten first.
    pub max_entities: usize,
    /// The least confidence worth reporting.
    pub min_confidence: f32,
    /// log2 of the number of weights. Every window looks up one weight per feature, at random
    /// places: a table that fits the core's cache keeps that cheap. On the headline replay, 16
    /// (512 KiB) closed the same gap as 18 or 20 and ran 5-15% faster than 18.
    pub weight_bits: u32,
    /// Step size of the (AdaGrad) updates.
    pub learning_rate: f32,
    /// An entity's own features are used once it has been read this often.
    pub hot_reads: u32,
    /// One window without a read in this many is learned from, with this weight (chosen by a
    /// hash of the entity, its copy and the window, so that it is reproducible). Windows
    /// without a read far outnumber the others; sampling them keeps the estimate unbiased and
    /// costs a fraction of the updates, but the estimate is noisier: on the headline replay,
    /// 8 ran 1.4x faster and closed about a tenth less of the gap. 1 learns from every window.
    pub negative_sample: u32,
    /// Windows without a read of an entity whose latest window was predicted cold (below
    /// [`COLD`]), or that is asleep, are sampled this many times more sparsely, with the weight to
    /// match. Such a window's gradient is its small probability, so sampling it adds little
    /// noise, and most windows learned are of this kind: on the OCEL log, 78% of the negatives
    /// scored below 0.02. On that log, 8 ran this model 1.35x faster than 1; on the headline
    /// replay it closed the same gap (within 0.1 percentage points, either way), and 32 closed
    /// slightly less. 1: every such window.
    pub cold_sample: u32,
    /// After this many windows in a row predicted below [`COLD`], an entity's remaining windows
    /// are not predicted (its windows are still learned from); a read wakes it. Whether that is
    /// safe is learned per kind and state: a state whose sleeping entities are read again (a
    /// timer that fires after a quiet day, say) is never put to sleep again. 0: never.
    pub cold_windows: u32,
}

impl Default for ReuseConfig {
    fn default() -> Self {
        ReuseConfig {
            window: Some(Duration::from_secs(3600)),
            max_windows: 48,
            max_entities: 1_000_000,
            min_confidence: 0.3,
            weight_bits: 16,
            learning_rate: 0.1,
            hot_reads: 8,
            negative_sample: 1,
            cold_sample: 8,
            cold_windows: 12,
        }
    }
}

/// Starts windows a little after the expiry of the copy read at `t`, so that the copy a read
/// filled (after the store's latency) has expired when the prefetch is due.
const MARGIN_US: i64 = 1_000_000;
const NUM_FEATURES: usize = 16;
/// While the driver reports no fills ([`OnlineModel::filled`]), a window predicted at least
/// this likely to hold a read is assumed refreshed by the prefetcher (the planner's default
/// threshold), so that a read in it finds a copy filled at its start.
const REFRESH_ASSUMED: f32 = 0.5;
/// A window predicted below this probability is cold (see [`ReuseConfig::cold_windows`]).
pub const COLD: f32 = 0.02;
/// The log-odds before anything is learned: a window picked at random rarely holds a read.
const PRIOR: f32 = -3.0;

#[derive(Debug, Clone, Copy)]
struct EntityState {
    kind: u64,
    id: u64,
    last: i64,
    /// When the copy the cache is assumed to hold was filled: the read that missed, or the
    /// start of the window whose refresh was predicted. Windows follow its expiry.
    fill: i64,
    /// The window (after `fill`) last predicted with enough confidence to be refreshed; 0: none.
    /// Assumed only while the driver does not report fills (see [`ReuseModel::filled`]).
    refreshed: u32,
    /// When a prefetch last refilled the copy, as the driver reported; `i64::MIN`: none since
    /// `fill`.
    refill: i64,
    ty: u64,
    prev_ty: u64,
    reads: u32,
    /// Windows between the previous read and `last`.
    gap: u32,
    /// Windows `1..=learned` after `fill` have been learned from (as negatives) already.
    learned: u32,
    /// The entity has an entry in the heap of windows.
    scheduled: bool,
    /// Windows in a row predicted below [`COLD`].
    cold: u32,
    /// Put to sleep: its remaining windows are not predicted.
    asleep: bool,
}

/// See [`ReuseModel::prefix`].
#[derive(Debug, Clone, Copy)]
struct Prefix {
    h: [u64; NUM_FEATURES],
    hot: bool,
}

#[derive(Debug, Clone)]
struct Slot {
    key: EntityKey,
    st: EntityState,
    live: bool,
}

/// What the model assumes of an entity's cached copy: the fields [`ReuseModel::fresh_until`]
/// and [`ReuseModel::copy_fresh`] read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CopyState {
    fill: i64,
    refill: i64,
    refreshed: u32,
}

impl CopyState {
    fn of(st: &EntityState) -> Self {
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
    step: u32,
    changes: FxHashMap<EntityKey, Vec<(u32, Option<CopyState>)>>,
}

impl Journal {
    /// The copy of `key` after step `step`, if it changed after that step (`None`: it did
    /// not, so the model's current copy is the one).
    fn before_later_change(&self, key: &EntityKey, step: u32) -> Option<Option<CopyState>> {
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
    fn copy(&self, key: &EntityKey) -> Option<CopyState> {
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
    fed: bool,
    /// While kept, the copies that change (see [`Journal`]).
    journal: Option<Journal>,
}

const SLEEP_SLOTS: usize = 4096;
/// A state keeps being put to sleep while fewer than this share of its sleepers were read again
/// (after one wake, it waits for this many sleepers per wake).
const SLEEP_WAKE_SHARE: u32 = 50;

const CAL_BINS: usize = 10;
const CAL_KINDS: usize = 64;
/// Windows of a reliability cell beyond which its counts halve (it follows drift).
const CAL_MAX: f32 = 20_000.0;
/// Windows a cell needs before it replaces the raw probability.
const CAL_MIN: f32 = 50.0;

fn mix(a: u64, b: u64) -> u64 {
    let x = (a ^ b.rotate_left(29)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^ (x >> 31)
}

fn hash_str(s: &str) -> u64 {
    FxBuildHasher.hash_one(s)
}

fn log_bucket(j: u32) -> u64 {
    u64::from(32 - j.max(1).leading_zeros())
}

fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z.clamp(-30.0, 30.0)).exp())
}

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

    /// Whether `key`'s cached copy is assumed fresh at `now`: filled (by a read that missed, or
    /// by a predicted refresh) less than one window before.
    pub fn copy_fresh(&self, key: &EntityKey, now: i64) -> bool {
        self.state(key)
            .is_some_and(|s| self.copy_fresh_of(&CopyState::of(s), now))
    }

    fn copy_fresh_of(&self, c: &CopyState, now: i64) -> bool {
        self.window_us > 0
            && (now < self.start_of(c.fill, 1)
                || self.refilled_at(c, now)
                || (c.refreshed != 0 && self.window_of(c.fill, now) == c.refreshed))
    }

    /// Until when the copy a prefetch refilled (as reported) is fresh; `i64::MIN` if none was
    /// reported since `fill`.
    fn refill_until(&self, c: &CopyState) -> i64 {
        if c.refill > c.fill {
            c.refill.saturating_add(self.window_us)
        } else {
            i64::MIN
        }
    }

    /// Whether the copy a prefetch refilled (as reported) is fresh at `t`.
    fn refilled_at(&self, c: &CopyState, t: i64) -> bool {
        t >= c.refill && t < self.refill_until(c)
    }

    /// Until when `key`'s cached copy (filled by a read, or refilled by a reported prefetch) is
    /// assumed fresh; `None` for an entity not tracked, or without a data-age limit.
    pub fn fresh_until(&self, key: &EntityKey) -> Option<i64> {
        self.fresh_until_of(CopyState::of(self.state(key)?))
    }

    fn fresh_until_of(&self, c: CopyState) -> Option<i64> {
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
    fn note(&mut self, key: &EntityKey, old: Option<CopyState>) {
        if let Some(j) = &mut self.journal {
            let step = j.step;
            j.changes.entry(key.clone()).or_default().push((step, old));
        }
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

    /// The start of window `j` after a copy filled at `fill`.
    fn start_of(&self, fill: i64, j: u32) -> i64 {
        fill.saturating_add(self.window_us.saturating_mul(i64::from(j)))
            .saturating_add(MARGIN_US)
    }

    /// The window (after a copy filled at `fill`) that holds `t`; 0 while the copy is fresh.
    fn window_of(&self, fill: i64, t: i64) -> u32 {
        let since = t.saturating_sub(fill).saturating_sub(MARGIN_US);
        if since < 0 {
            return 0;
        }
        u32::try_from(since / self.window_us.max(1)).unwrap_or(u32::MAX)
    }

    /// The parts of `st`'s features that do not depend on the window: whole features, and the
    /// hashes the window's features extend. Computed once per state, for all its windows.
    fn prefix(&self, st: &EntityState) -> Prefix {
        let k = st.kind;
        let hot = st.reads >= self.cfg.hot_reads;
        let last_hod = st.last.div_euclid(3_600_000_000).rem_euclid(24) as u64;
        Prefix {
            hot,
            h: [
                mix(1, k),
                mix(mix(2, k), st.ty),
                mix(mix(mix(3, k), st.ty), st.prev_ty),
                mix(4, k),
                mix(mix(5, k), st.ty),
                mix(mix(6, k), st.ty),
                mix(7, k),
                mix(mix(8, k), st.ty),
                mix(9, k),
                mix(mix(10, k), u64::from(st.reads.min(16))),
                if hot { mix(11, st.id) } else { mix(11, 0) },
                if hot { mix(12, st.id) } else { mix(12, 0) },
                mix(mix(13, k), st.prev_ty),
                mix(mix(14, k), last_hod),
                mix(mix(15, k), log_bucket(st.gap.saturating_add(1))),
                mix(mix(16, k), st.ty),
            ],
        }
    }

    /// The weights window `j` (starting at `start`) of a state with prefix `pre` looks up: its
    /// kind, process state, how many windows have passed, the time of day and week, how often
    /// it was read, and for an entity read often, the entity.
    fn features(&mut self, pre: &Prefix, j: u32, start: i64) {
        let hours = start.div_euclid(3_600_000_000);
        let hod = hours.rem_euclid(24) as u64;
        // 1970-01-01 was a Thursday; 0 is Monday.
        let dow = (hours.div_euclid(24) + 3).rem_euclid(7) as u64;
        let weekend = u64::from(dow >= 5);
        let fine = u64::from(j);
        let coarse = log_bucket(j);
        let h = &pre.h;
        let raw: [u64; NUM_FEATURES] = [
            h[0],
            h[1],
            h[2],
            mix(h[3], coarse),
            mix(h[4], coarse),
            mix(h[5], fine),
            mix(mix(h[6], hod), weekend),
            mix(h[7], ((hod / 3) << 1) | weekend),
            mix(mix(h[8], dow), hod),
            h[9],
            h[10],
            if pre.hot {
                mix(h[11], ((hod / 3) << 1) | weekend)
            } else {
                h[11]
            },
            mix(h[12], coarse),
            mix(h[13], u64::from(j.min(72))),
            mix(h[14], coarse),
            mix(h[15], (dow << 3) | (hod / 3)),
        ];
        for (f, h) in self.feats.iter_mut().zip(raw) {
            *f = (h & self.mask) as usize;
        }
    }

    fn score(&self) -> f32 {
        sigmoid(PRIOR + self.feats.iter().map(|&i| self.weights[i][0]).sum::<f32>())
    }

    fn cal_cell(kind: u64, p: f32) -> (usize, usize) {
        let bin = ((p * CAL_BINS as f32) as usize).min(CAL_BINS - 1);
        ((kind as usize) % CAL_KINDS, bin)
    }

    /// The raw probability `p` of a window of `kind`, calibrated by what windows of that kind
    /// and raw probability turned out to hold.
    fn calibrated(&self, kind: u64, p: f32) -> f32 {
        let (k, b) = Self::cal_cell(kind, p);
        let [n, hits] = self.calibration[k][b];
        if n < CAL_MIN {
            p
        } else {
            // Shrink towards the raw probability with the weight of a few windows.
            (hits + 10.0 * p) / (n + 10.0)
        }
    }

    fn learn(&mut self, st: &EntityState, pre: &Prefix, j: u32, read: bool) {
        let mut every = self.cfg.negative_sample.max(1);
        if st.asleep || st.cold > 0 {
            every = every.saturating_mul(self.cfg.cold_sample.max(1));
        }
        let weight = if read {
            1.0
        } else if every == 1
            || mix(mix(st.id, st.fill as u64), u64::from(j)).is_multiple_of(u64::from(every))
        {
            every as f32
        } else {
            return;
        };
        self.learned += 1;
        let start = self.start_of(st.fill, j);
        self.features(pre, j, start);
        let p = self.score();
        let y = if read { 1.0 } else { 0.0 };
        if p >= 0.1 {
            let (k, b) = Self::cal_cell(st.kind, p);
            let cell = &mut self.calibration[k][b];
            cell[0] += weight;
            cell[1] += y * weight;
            if cell[0] > CAL_MAX {
                cell[0] *= 0.5;
                cell[1] *= 0.5;
            }
        }
        let g = p - y;
        let lr = self.cfg.learning_rate;
        // A sampled window stands for `weight` windows: `weight` AdaGrad steps in one.
        for &i in &self.feats {
            let w = &mut self.weights[i];
            w[1] += weight * g * g;
            w[0] -= lr * weight * g / w[1].sqrt();
        }
    }

    /// The probability that `st`'s next read falls in its window `j`, given none before.
    fn probability(&mut self, st: &EntityState, pre: &Prefix, j: u32) -> f32 {
        let start = self.start_of(st.fill, j);
        self.features(pre, j, start);
        self.score()
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

impl OnlineModel for ReuseModel {
    fn name(&self) -> &str {
        "reuse"
    }

    fn observe(&mut self, event: &Event, mode: Observe) {
        if self.window_us <= 0 {
            return;
        }
        let t = event.time.as_micros();
        self.now = self.now.max(t);
        let ty = hash_str(&event.event_type);
        for (i, r) in event.entities.iter().enumerate() {
            if event.entities[..i]
                .iter()
                .any(|o| o.kind == r.kind && o.id == r.id)
            {
                continue;
            }
            let key = r.key();
            let slot = self.index.get(&key).copied();
            let prev = slot.and_then(|i| self.slots.get(i as usize)).map(|s| s.st);
            if let Some(st) = prev
                && mode == Observe::Learn
            {
                // The windows between the copy's expiry and this read: negatives, then the
                // positive that holds this read. A read of a version this event writes would
                // find any copy refreshed before it stale: for a refresh, its window is a
                // negative too.
                let written = event
                    .mutations
                    .iter()
                    .any(|m| m.kind == r.kind && m.id == r.id);
                let mut pre = None;
                for j in st.learned + 1..=self.cfg.max_windows {
                    let start = self.start_of(st.fill, j);
                    if t < start {
                        break;
                    }
                    let pre = *pre.get_or_insert_with(|| self.prefix(&st));
                    self.learn(
                        &st,
                        &pre,
                        j,
                        !written && t < start.saturating_add(self.window_us),
                    );
                }
            }
            let scheduled = prev.is_some_and(|s| s.scheduled);
            if let Some(s) = prev
                && s.scheduled
                && s.asleep
            {
                // Read while asleep: its state is not as dead as it looked.
                let cell = &mut self.sleep[Self::sleep_slot(&s)];
                cell[1] = cell[1].saturating_add(1);
            }
            // The copy this read finds: still fresh (a hit), refreshed at the start of this
            // read's window (when that refresh was predicted), or expired (the read fills it).
            let (fill, learned, refreshed) = match prev {
                Some(s) if t < self.start_of(s.fill, 1) => (s.fill, s.learned, s.refreshed),
                Some(s) if self.refilled_at(&CopyState::of(&s), t) => (s.refill, 0, 0),
                Some(s) => {
                    let j = self.window_of(s.fill, t);
                    if s.refreshed != 0 && s.refreshed == j {
                        (self.start_of(s.fill, j), 0, 0)
                    } else {
                        (t, 0, 0)
                    }
                }
                None => (t, 0, 0),
            };
            let st = EntityState {
                kind: prev.map_or_else(|| hash_str(&r.kind), |s| s.kind),
                id: prev.map_or_else(|| mix(hash_str(&r.kind), hash_str(&r.id)), |s| s.id),
                last: t,
                fill,
                refreshed,
                refill: prev
                    .filter(|s| s.fill == fill)
                    .map_or(i64::MIN, |s| s.refill),
                ty,
                prev_ty: prev.map_or(0, |s| s.ty),
                reads: prev.map_or(1, |s| s.reads.saturating_add(1)),
                gap: prev.map_or(u32::MAX - 1, |s| {
                    u32::try_from((t - s.last) / self.window_us).unwrap_or(u32::MAX - 1)
                }),
                learned,
                scheduled: true,
                cold: 0,
                asleep: false,
            };
            self.note(&key, prev.as_ref().map(CopyState::of));
            let slot = match slot {
                Some(i) => {
                    if let Some(s) = self.slots.get_mut(i as usize) {
                        s.st = st;
                    }
                    i
                }
                None => self.insert(key, st),
            };
            if !scheduled || prev.is_some_and(|s| s.fill != fill) {
                self.due.push(Reverse((self.start_of(fill, 1), fill, slot)));
            }
        }
        if self.index.len() > self.cfg.max_entities.max(2) {
            self.shrink();
        }
    }

    fn forecast(&mut self, event: &Event) -> Forecast {
        self.windows_due(event.time.as_micros(), Relation::Refresh)
    }

    fn forecast_due(&mut self, now: Timestamp) -> Forecast {
        self.windows_due(now.as_micros(), Relation::Tick)
    }

    /// A prefetch filled `key`'s copy at `at`. From the first such report on, the model
    /// follows the reported fills instead of assuming that its confident windows were
    /// refreshed.
    fn filled(&mut self, key: &EntityKey, at: Timestamp) {
        if self.window_us <= 0 {
            return;
        }
        self.fed = true;
        let Some(&slot) = self.index.get(key) else {
            return;
        };
        if let Some(s) = self.slots.get_mut(slot as usize).filter(|s| s.live) {
            let at = at.as_micros();
            if at > s.st.fill {
                s.st.refill = s.st.refill.max(at);
            }
        }
    }
}

impl ReuseModel {
    /// The windows that start within the next window after `now` (and after the last event),
    /// each predicted once, as predictions of `relation`.
    fn windows_due(&mut self, now: i64, relation: Relation) -> Forecast {
        let mut f = Forecast::default();
        if self.window_us <= 0 {
            return f;
        }
        let now = self.now.max(now);
        let horizon = now.saturating_add(self.window_us);
        // Out of `self` for the loop, so that an entity's next window replaces its entry at
        // the top in place (one sift down) instead of a pop and a push. Nothing in the loop
        // reads the heap.
        let mut due = std::mem::take(&mut self.due);
        while let Some(mut top) = due.peek_mut() {
            let Reverse((start, fill, slot)) = *top;
            if start > horizon {
                break;
            }
            let Some(mut st) = self
                .slots
                .get(slot as usize)
                .filter(|s| s.live)
                .map(|s| s.st)
            else {
                PeekMut::pop(top);
                continue;
            };
            if st.fill != fill {
                // Filled again since: the new copy's windows have their own entry.
                PeekMut::pop(top);
                continue;
            }
            let j = self.window_of(fill, start);
            let pre = self.prefix(&st);
            // Windows that have ended without a read are negatives.
            while st.learned + 1 < j
                && self
                    .start_of(st.fill, st.learned + 1)
                    .saturating_add(self.window_us)
                    <= now
            {
                st.learned += 1;
                self.learn(&st, &pre, st.learned, false);
            }
            let end = start.saturating_add(self.window_us);
            if end > now {
                let p = self.probability(&st, &pre, j);
                let p = self.calibrated(st.kind, p);
                self.predicted += 1;
                if p >= REFRESH_ASSUMED && !self.fed {
                    // No journal note: the window has just come within a window of `now`, so
                    // at no earlier time could the copy have been read in it.
                    st.refreshed = j;
                }
                st.cold = if p < COLD {
                    st.cold.saturating_add(1)
                } else {
                    0
                };
                if p >= self.cfg.min_confidence
                    && let Some(s) = self.slots.get(slot as usize)
                {
                    f.entities.push(Prediction {
                        entity: s.key.clone(),
                        confidence: p,
                        expected_at: Timestamp::from_micros(start),
                        latest: Timestamp::from_micros(end),
                        event_type: None,
                        relation,
                    });
                }
            }
            let cold = self.cfg.cold_windows;
            if j < self.cfg.max_windows {
                // A cold entity skips to its last window, where the windows that passed are
                // learned from.
                let next = if cold > 0 && st.cold >= cold && !st.asleep && self.may_sleep(&st) {
                    let cell = &mut self.sleep[Self::sleep_slot(&st)];
                    cell[0] = cell[0].saturating_add(1);
                    st.asleep = true;
                    self.cfg.max_windows
                } else {
                    j + 1
                };
                *top = Reverse((self.start_of(fill, next), fill, slot));
            } else {
                PeekMut::pop(top);
                st.scheduled = false;
            }
            if let Some(s) = self.slots.get_mut(slot as usize) {
                s.st = st;
            }
        }
        self.due = due;
        f.entities
            .sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prescient_core::EntityRef;

    fn ev(i: u64, ty: &str, secs: i64, ents: &[(&str, &str)]) -> Event {
        let mut e = Event::new(i.to_string(), ty, Timestamp::from_secs(secs));
        for (k, id) in ents {
            e = e.with_entity(EntityRef::new(*k, *id));
        }
        e
    }

    #[test]
    fn a_reported_fill_sets_the_age_of_the_copy() {
        let key = EntityKey::new("job", "j");
        let hour = 3_600_000_000i64;
        let run = |report: bool| {
            let mut m = ReuseModel::new(ReuseConfig::default());
            m.observe(&ev(1, "start", 0, &[("job", "j")]), Observe::Learn);
            // A prefetch refills the copy as it expires, an hour after the read.
            if report {
                m.filled(&key, Timestamp::from_micros(hour));
            }
            let fresh = m.copy_fresh(&key, hour + hour / 2);
            // Read half an hour later: a hit on the refilled copy, or a miss that fills anew.
            m.observe(&ev(2, "poll", 5_400, &[("job", "j")]), Observe::Learn);
            (fresh, m.fresh_until(&key))
        };
        assert_eq!(run(true), (true, Some(2 * hour + MARGIN_US)));
        assert_eq!(run(false), (false, Some(hour * 5 / 2 + MARGIN_US)));
    }

    #[test]
    fn reported_fills_replace_the_assumed_refreshes() {
        // Jobs read twice, 90 minutes apart, as in the type's example: the window after the
        // first read's copy is predicted confidently, so without reports its refresh is
        // assumed; once the driver reports fills, only a reported fill refreshes a copy.
        let run = |report: bool| {
            let mut m = ReuseModel::new(ReuseConfig::default());
            for i in 0..3000i64 {
                let t = i * 600;
                for id in [i, i - 9] {
                    let e = ev(0, "tick", t, &[("job", &id.to_string())]);
                    m.observe(&e, Observe::Learn);
                    m.forecast(&e);
                }
                if report && i == 0 {
                    m.filled(&EntityKey::new("job", "none"), Timestamp::from_secs(0));
                }
            }
            // Job 2995 was read at 2995 × 600 s; its copy expired an hour later, in a window
            // predicted (confidently) by the last forecast.
            m.copy_fresh(
                &EntityKey::new("job", "2995"),
                (2995 * 600 + 4200) * 1_000_000,
            )
        };
        assert!(run(false), "a confident window is assumed refreshed");
        assert!(!run(true), "no prefetch was reported");
    }

    #[test]
    fn cold_windows_are_learned_from_a_sample() {
        // Jobs read twice, 90 minutes apart, and one-off jobs (of another event type) never
        // read again: most windows are cold. Sampling those learns from far fewer windows and
        // predicts the reads as well.
        let run = |cold_sample: u32| {
            let mut m = ReuseModel::new(ReuseConfig {
                cold_sample,
                ..ReuseConfig::default()
            });
            let mut confident = 0;
            let mut n = 0;
            for i in 0..3000i64 {
                for (id, t, ty) in [
                    (i, i * 600, "tick"),
                    (i - 9, i * 600, "tick"),
                    (100_000 + i, i * 600 + 1, "once"),
                ] {
                    n += 1;
                    let e = ev(n, ty, t, &[("job", &id.to_string())]);
                    m.observe(&e, Observe::Learn);
                    let f = m.forecast(&e);
                    if i > 2000 {
                        confident += f
                            .entities
                            .iter()
                            .filter(|p| p.confidence > 0.5 && p.entity.id.len() < 6)
                            .count();
                    }
                }
            }
            (m.windows_learned(), confident)
        };
        let (all, confident_all) = run(1);
        let (sampled, confident_sampled) = run(8);
        assert!(sampled * 3 < all, "{sampled} of {all}");
        assert!(confident_all > 500, "{confident_all}");
        assert!(
            confident_sampled * 10 >= confident_all * 9,
            "{confident_sampled} against {confident_all}"
        );
    }

    #[test]
    fn reads_of_written_versions_are_not_worth_a_refresh() {
        // Jobs read twice, 90 minutes apart; with `write`, the second read's event writes the
        // job, so a copy refreshed before it would be stale.
        let run = |write: bool| {
            let mut m = ReuseModel::new(ReuseConfig::default());
            let mut confident = 0;
            let mut n = 0;
            for i in 0..3000i64 {
                for (id, t, second) in [(i, i * 600, false), (i - 9, i * 600, true)] {
                    n += 1;
                    let mut e = ev(n, "tick", t, &[("job", &id.to_string())]);
                    if write && second {
                        e.mutations.push(prescient_core::Mutation {
                            kind: "job".into(),
                            id: id.to_string().into(),
                            version: prescient_core::Version(2),
                        });
                    }
                    m.observe(&e, Observe::Learn);
                    let f = m.forecast(&e);
                    if i > 2000 {
                        confident += f.entities.iter().filter(|p| p.confidence > 0.5).count();
                    }
                }
            }
            confident
        };
        assert!(run(false) > 500, "{}", run(false));
        assert_eq!(run(true), 0);
    }

    #[test]
    fn windows_come_due_without_an_event() {
        // Jobs read twice, 90 minutes apart; new jobs every 10 minutes keep the model learning.
        let mut m = ReuseModel::new(ReuseConfig::default());
        let mut n = 0;
        for i in 0..3000i64 {
            for (id, t) in [(i, i * 600), (i - 9, i * 600)] {
                n += 1;
                let e = ev(n, "tick", t, &[("job", &id.to_string())]);
                m.observe(&e, Observe::Learn);
                m.forecast(&e);
            }
        }
        // One more job, then silence: its second read is due 90 minutes later.
        let t0 = 3000 * 600 + 3000;
        let e = ev(n + 1, "tick", t0, &[("job", "new")]);
        m.observe(&e, Observe::Learn);
        let confident = |f: &Forecast| {
            f.entities
                .iter()
                .any(|p| p.entity.id == "new" && p.confidence > 0.8)
        };
        // At the read, its first window (an hour later) is not due yet.
        assert!(!confident(&m.forecast(&e)));
        // Within a window of its start, a tick predicts it.
        let f = m.forecast_due(Timestamp::from_secs(t0 + 600));
        assert!(confident(&f), "{f:?}");
        // Each window is predicted once.
        assert!(!confident(&m.forecast_due(Timestamp::from_secs(t0 + 700))));
    }

    #[test]
    fn learns_a_fixed_delay_for_new_entities() {
        // Every order is confirmed, then reminded exactly 20 hours later. Other orders keep
        // the clock moving.
        let mut m = ReuseModel::new(ReuseConfig::default());
        let mut i = 0;
        for o in 0..400 {
            let t0 = o * 1800;
            let id = format!("o{o}");
            m.observe(&ev(i, "confirm", t0, &[("order", &id)]), Observe::Learn);
            i += 1;
            m.forecast(&ev(i, "confirm", t0, &[("order", &id)]));
        }
        // A reminder 20 h after each confirmation.
        let mut m2 = ReuseModel::new(ReuseConfig::default());
        let mut evs = Vec::new();
        for o in 0..600 {
            let id = format!("o{o}");
            evs.push(ev(0, "confirm", o * 1800, &[("order", &id)]));
            evs.push(ev(
                0,
                "remind",
                o * 1800 + 20 * 3600 + 600,
                &[("order", &id)],
            ));
        }
        evs.sort_by_key(|e| e.time);
        let mut hits = 0;
        let mut confident = 0;
        for (n, e) in evs.iter().enumerate() {
            m2.observe(e, Observe::Learn);
            let f = m2.forecast(e);
            if n > evs.len() / 2 {
                for p in &f.entities {
                    if p.confidence > 0.5 {
                        confident += 1;
                        // The window must hold the reminder.
                        let id = p.entity.id.trim_start_matches('o');
                        let o: i64 = id.parse().unwrap_or(-1);
                        let remind = o * 1800 + 20 * 3600 + 600;
                        let (a, b) = (p.expected_at.as_micros(), p.latest.as_micros());
                        if a <= remind * 1_000_000 && remind * 1_000_000 < b {
                            hits += 1;
                        }
                    }
                }
            }
        }
        assert!(confident > 100, "confident predictions: {confident}");
        assert!(
            hits * 10 >= confident * 9,
            "{hits} of {confident} windows held the read"
        );
        assert!(m.tracked() > 0);
    }

    #[test]
    fn random_reads_stay_below_the_threshold() {
        // Entities read at random times, far apart: nothing should look likely.
        let mut m = ReuseModel::new(ReuseConfig::default());
        let mut x: u64 = 12345;
        let mut t = 0i64;
        let mut confident = 0;
        for i in 0..20_000u64 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            t += 60;
            let id = format!("e{}", (x >> 33) % 5000);
            let e = ev(i, "touch", t, &[("thing", &id)]);
            m.observe(&e, Observe::Learn);
            confident += m
                .forecast(&e)
                .entities
                .iter()
                .filter(|p| p.confidence >= 0.5)
                .count();
        }
        assert!(confident < 50, "{confident} confident predictions on noise");
    }

    #[test]
    fn windows_follow_the_copy_not_the_last_read() {
        // A group read every 40 minutes: the gap between reads never exceeds the window, but
        // the copy filled by a miss expires every hour (a hit does not refresh it), so the
        // window after each expiry holds a read.
        let mut m = ReuseModel::new(ReuseConfig::default());
        let mut refreshes = 0;
        for i in 0..2_000i64 {
            let e = ev(i as u64, "touch", i * 2400, &[("group", "g")]);
            m.observe(&e, Observe::Learn);
            let f = m.forecast(&e);
            if i > 1_000 {
                refreshes += f
                    .entities
                    .iter()
                    .filter(|p| p.entity.id == "g" && p.confidence >= 0.8)
                    .count();
            }
        }
        // One refresh per hour of the last 999 reads (666 hours); at least most of them.
        assert!(refreshes > 500, "{refreshes} confident refreshes");
        // While the refreshed copy is fresh, the model knows it.
        let now = 2_000 * 2400;
        assert!(m.copy_fresh(&EntityKey::new("group", "g"), now));
    }

    #[test]
    fn off_without_a_window_and_bounded() {
        let mut m = ReuseModel::new(ReuseConfig {
            window: None,
            ..ReuseConfig::default()
        });
        let e = ev(0, "a", 0, &[("k", "1")]);
        m.observe(&e, Observe::Learn);
        assert!(m.forecast(&e).entities.is_empty());
        assert_eq!(m.tracked(), 0);

        let mut m = ReuseModel::new(ReuseConfig {
            max_entities: 100,
            ..ReuseConfig::default()
        });
        for i in 0..10_000u64 {
            let e = ev(i, "a", i as i64, &[("k", &i.to_string())]);
            m.observe(&e, Observe::Learn);
            m.forecast(&e);
        }
        assert!(m.tracked() <= 101, "tracked {}", m.tracked());
    }

    #[test]
    fn cold_entities_stop_being_predicted_until_read() {
        // Entities read once and never again, then one read again two hours later; a week
        // of windows after each read.
        let run = |cold_windows: u32| {
            let mut m = ReuseModel::new(ReuseConfig {
                cold_windows,
                max_windows: 24 * 7,
                ..ReuseConfig::default()
            });
            for i in 0..2_000u64 {
                let e = ev(i, "once", (i * 600) as i64, &[("doc", &i.to_string())]);
                m.observe(&e, Observe::Learn);
                m.forecast(&e);
            }
            (m.windows_predicted(), m)
        };
        let (all, _) = run(0);
        let (cold, mut m) = run(12);
        let _ = m.forecast(&ev(0, "tick", 2_000 * 600, &[]));
        assert!(
            cold * 4 < all,
            "{cold} windows predicted with sleep, {all} without"
        );
        // A read wakes an entity (one read 30 hours ago, asleep since), and is counted
        // against its state's sleeping.
        let woke = |m: &ReuseModel| m.sleep.iter().map(|c| c[1]).sum::<u32>();
        let slept = m.sleep.iter().map(|c| c[0]).sum::<u32>();
        assert!(slept > 1_000, "{slept} entities put to sleep");
        assert_eq!(woke(&m), 0);
        let e = ev(9_000, "once", 2_000 * 600, &[("doc", "1820")]);
        m.observe(&e, Observe::Learn);
        assert_eq!(woke(&m), 1);
    }
}
