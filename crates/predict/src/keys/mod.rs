//! [`KeyModel`]: structure between keys, for access traces (block and key traces).
//!
//! The model knows nothing about event types or processes. It looks only at which keys are read
//! and in which order, and learns two kinds of structure:
//!
//! - **Successors** ([`Relation::Successor`]). Each event is cut into *anchors*: one per maximal
//!   run of consecutive integer ids of one kind (a block request `start..start+n` is one anchor),
//!   and one per non-integer id. Every anchor keeps a small bounded set of anchors that followed
//!   it within [`KeyConfig::successor_distance`] events. Each edge has a small state, its recent
//!   hits and misses (`h`, `m`, halved when they grow). Every time its source anchor is read
//!   again, the edge is tried: a hit if its target is read within the distance, a miss if not.
//!   The confidence of an edge is the observed hit rate of all edges of that kind in the same
//!   state, so it is calibrated and generalises to edges seen only once. With
//!   [`KeyConfig::successor_chain`] the successors of each predicted successor are predicted
//!   too (up to [`KeyConfig::successor_depth`] steps), with the product of the confidences, to
//!   look further ahead than the next event.
//! - **Sequential and strided runs** ([`Relation::Sequential`]). Where ids parse as integers, a
//!   bounded table of streams (per entity kind) follows requests that start where an earlier
//!   request ended (or inside the window already read ahead), or at a constant forward stride.
//!   A sequential request may skip at most [`KeyConfig::skip_requests`] request lengths.
//!   The model learns the probability that a stream continues, per stream state (its length so
//!   far, strided or not, request size), and reads ahead chunk by chunk while the product of
//!   continuation probabilities stays above [`KeyConfig::min_confidence`]: as a stream proves
//!   itself the probabilities grow and so does the readahead depth, up to
//!   [`KeyConfig::max_readahead`] ids, like Linux readahead. Only ids not predicted before are
//!   emitted. A continuation probability measures whether the stream goes on as one run; a
//!   prefetch is worth it if its id is read at all while cached. So the confidence emitted is
//!   that product calibrated by what came true: per kind and tenth of the product, the share
//!   of ids read ahead that were read within 4,096 events (new case numbers of a business log
//!   are read as their cases start, out of step with any run; a block trace's runs do end
//!   where their rates say).
//!
//! Times: readahead is expected soon (half the stream's usual gap per chunk), successors after
//! their observed distance in events, and every window ends [`KeyConfig::window_events`] mean
//! event gaps after the event. So one setting fits a block trace at 1 ms per event and a business
//! log at minutes per event.
//!
//! **Bounded memory.** At most [`KeyConfig::max_keys`] anchors are tracked (the least recently
//! read quarter is evicted when full), [`KeyConfig::max_successors`] edges each,
//! [`KeyConfig::max_streams`] streams and [`KeyConfig::max_kinds`] entity kinds, and 65,536
//! ids read ahead await their outcome.
//!
//! On logs without integer ids or sequential structure the calibrated confidences stay low, so
//! the model predicts little.
//!
//! [`Relation::Successor`]: prescient_core::Relation::Successor
//! [`Relation::Sequential`]: prescient_core::Relation::Sequential

use std::collections::VecDeque;

use prescient_core::{Event, SmolStr, Timestamp};
use rustc_hash::{FxHashMap, FxHashSet};

mod calibration;
mod config;
mod observe;
mod state;
mod streams;
mod successors;
#[cfg(test)]
mod tests;

use calibration::{Cal, EDGE_STATES, SEQ_BINS, STREAM_CELLS};
pub use config::KeyConfig;
use state::{Anchor, Key, KindState, MAX_SUCCESSORS, Node, RingEntry, Stream, after, parse_id};

/// A model of the structure between keys: successors and sequential or strided readahead.
/// See the module docs.
///
/// `forecast` after `observe` of the same event emits each readahead id once per stream; a
/// forecast for an event that was not observed last predicts successors only.
///
/// # Examples
/// ```
/// use prescient_core::{EntityRef, Event, Observe, OnlineModel, Relation, Timestamp};
/// use prescient_predict::KeyModel;
///
/// let mut m = KeyModel::default();
/// let mut last = None;
/// for i in 0..200u64 {
///     let e = Event::new(i.to_string(), "read", Timestamp::from_millis(i as i64))
///         .with_entity(EntityRef::new("block", (1000 + i).to_string()));
///     m.observe(&e, Observe::Learn);
///     last = Some(m.forecast(&e));
/// }
/// let f = last.unwrap_or_default();
/// assert!(f.entities.iter().any(|p| p.relation == Relation::Sequential));
/// ```
#[derive(Debug)]
pub struct KeyModel {
    cfg: KeyConfig,
    kinds: Vec<KindState>,
    kind_ids: FxHashMap<SmolStr, u16>,
    nodes: FxHashMap<Key, Node>,
    ring: VecDeque<RingEntry>,
    spare: Vec<RingEntry>,
    streams: Vec<Stream>,
    next_serial: u32,
    event_no: u64,
    last_time: Option<Timestamp>,
    /// Mean time between events, microseconds.
    gap_us: f64,
    /// The last observed event (id, time), its anchors and the streams it moved.
    last_event: Option<(SmolStr, Timestamp)>,
    cur: Vec<Anchor>,
    touched: Vec<usize>,
    scratch_nums: Vec<(u16, u64)>,
    scratch_seen: Vec<u64>,
    /// Readahead ids predicted and not yet read: calibration bin and deadline (event number).
    seq_pending: FxHashMap<(u16, u64), (u8, u64)>,
    /// The same, by deadline: `(deadline, kind, id)`.
    seq_order: VecDeque<(u64, u16, u64)>,
}

impl Default for KeyModel {
    fn default() -> Self {
        KeyModel::new(KeyConfig::default())
    }
}

impl KeyModel {
    /// A model with the given settings.
    pub fn new(cfg: KeyConfig) -> Self {
        let cfg = KeyConfig {
            max_successors: cfg.max_successors.min(MAX_SUCCESSORS),
            successor_distance: cfg.successor_distance.max(1),
            ..cfg
        };
        KeyModel {
            cfg,
            kinds: Vec::new(),
            kind_ids: FxHashMap::default(),
            nodes: FxHashMap::default(),
            ring: VecDeque::new(),
            spare: Vec::new(),
            streams: Vec::new(),
            next_serial: 0,
            event_no: 0,
            last_time: None,
            gap_us: 0.0,
            last_event: None,
            cur: Vec::new(),
            touched: Vec::new(),
            scratch_nums: Vec::new(),
            scratch_seen: Vec::new(),
            seq_pending: FxHashMap::default(),
            seq_order: VecDeque::new(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &KeyConfig {
        &self.cfg
    }

    /// Anchors (keys or runs of keys) tracked for successors.
    pub fn tracked_keys(&self) -> usize {
        self.nodes.len()
    }

    /// Streams followed.
    pub fn tracked_streams(&self) -> usize {
        self.streams.len()
    }

    fn kind_id(&mut self, kind: &SmolStr) -> Option<u16> {
        if let Some(&k) = self.kind_ids.get(kind) {
            return Some(k);
        }
        if self.kinds.len() >= self.cfg.max_kinds {
            return None;
        }
        let k = u16::try_from(self.kinds.len()).ok()?;
        self.kinds.push(KindState {
            name: kind.clone(),
            edges: vec![Cal::default(); EDGE_STATES * EDGE_STATES],
            streams: vec![Cal::default(); STREAM_CELLS],
            seq: vec![Cal::default(); SEQ_BINS],
        });
        self.kind_ids.insert(kind.clone(), k);
        Some(k)
    }

    /// Cuts `event` into anchors (into `self.cur`): runs of consecutive integer ids per kind,
    /// and text ids.
    fn decompose(&mut self, event: &Event) {
        self.cur.clear();
        self.scratch_nums.clear();
        // Text anchors taken so far, by hash: an event with many text ids costs linearly.
        let mut texts: FxHashSet<Key> = FxHashSet::default();
        for r in &event.entities {
            let Some(k) = self.kind_id(&r.kind) else {
                continue;
            };
            match parse_id(&r.id) {
                Some(v) => self.scratch_nums.push((k, v)),
                None => {
                    let key = Key::Text(k, r.id.clone());
                    let fp = key.fingerprint();
                    if texts.insert(key.clone()) {
                        self.cur.push(Anchor { key, fp, len: 1 });
                    }
                }
            }
        }
        let nums = &mut self.scratch_nums;
        if nums.windows(2).any(|w| w[0] >= w[1]) {
            nums.sort_unstable();
            nums.dedup();
        }
        let mut i = 0;
        while i < nums.len() {
            let (k, start) = nums[i];
            let mut j = i + 1;
            while j < nums.len()
                && nums[j].0 == k
                && nums[j].1 == start + (j - i) as u64
                && ((j - i) as u64) < self.cfg.max_run
            {
                j += 1;
            }
            let key = Key::Num(k, start);
            self.cur.push(Anchor {
                fp: key.fingerprint(),
                key,
                len: u32::try_from(j - i).unwrap_or(u32::MAX),
            });
            i = j;
        }
    }

    fn is_current(&self, event: &Event) -> bool {
        self.last_event
            .as_ref()
            .is_some_and(|(id, t)| *id == event.id && *t == event.time)
    }

    /// Drops the least recently read quarter of the anchors.
    fn evict_cold(&mut self) {
        self.scratch_seen.clear();
        self.scratch_seen
            .extend(self.nodes.values().map(|n| n.last_seen));
        let q = self.scratch_seen.len() / 4;
        let (_, &mut cutoff, _) = self.scratch_seen.select_nth_unstable(q);
        self.nodes.retain(|_, n| n.last_seen > cutoff);
    }

    /// The end of the predicted windows of an event at `now`.
    fn latest(&self, now: Timestamp) -> Timestamp {
        after(now, self.gap_us * self.cfg.window_events)
    }
}
