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

use std::collections::VecDeque;
use std::hash::BuildHasher;

use prescient_core::{
    EntityKey, Event, Forecast, Observe, OnlineModel, Prediction, Relation, SmolStr, Timestamp,
};
use rustc_hash::FxHashMap;
use smol_str::ToSmolStr;

/// The most successors an anchor may keep (hits are tracked in a byte).
const MAX_SUCCESSORS: usize = 8;
/// Edge hit and miss counts are halved when their sum passes this.
const EDGE_COUNT_CAP: u8 = 6;
/// Stream lengths are bucketed up to this.
const MAX_RUN_BUCKET: usize = 15;
/// Request sizes are bucketed by log2 up to this.
const MAX_LEN_BUCKET: usize = 7;

/// Settings of a [`KeyModel`]. [`Default`] is the one setting for every trace and log.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyConfig {
    /// The most anchors (keys or runs of keys) tracked for successors.
    pub max_keys: usize,
    /// The most successors kept per anchor (at most 8).
    pub max_successors: usize,
    /// A successor must be read within this many events after its source.
    pub successor_distance: usize,
    /// Whether the successors of predicted successors are predicted too (with the product of
    /// the two confidences), to look one step further ahead.
    pub successor_chain: bool,
    /// How many steps a chain of successors is followed (with `successor_chain`). On P3
    /// (access-trace scenario, first million reads), 3 closed 0.497 of the gap, 2 closed 0.505.
    pub successor_depth: usize,
    /// The most sequential or strided streams followed at once (all kinds together).
    pub max_streams: usize,
    /// A request continues a sequential stream if it starts at most this many request lengths
    /// after the stream's end (and inside the window read ahead).
    pub skip_requests: u64,
    /// The most ids read ahead of a stream's last request.
    pub max_readahead: u64,
    /// The largest forward stride recognised between two requests of a stream.
    pub max_stride: u64,
    /// The longest run of ids predicted as one successor.
    pub max_run: u64,
    /// The least confidence of an emitted prediction. The default, 0.3, is the prefetch
    /// planner's lowest threshold: the planner learns, per relation, which of these are worth
    /// a load, so the model leaves that choice to it.
    pub min_confidence: f32,
    /// The predicted windows end this many mean event gaps after the event.
    pub window_events: f64,
    /// The most entity kinds; ids of further kinds are ignored.
    pub max_kinds: usize,
    /// Calibration counts halve when a cell has seen this many trials (follows drift).
    pub max_count: f32,
}

impl Default for KeyConfig {
    fn default() -> Self {
        KeyConfig {
            max_keys: 1 << 18,
            max_successors: 8,
            successor_distance: 4,
            successor_chain: true,
            successor_depth: 2,
            max_streams: 16,
            skip_requests: 1,
            max_readahead: 256,
            max_stride: 64,
            max_run: 256,
            min_confidence: 0.3,
            window_events: 1_000_000.0,
            max_kinds: 64,
            max_count: 4096.0,
        }
    }
}

/// An anchor: an integer id (the start of a run) or a text id, of a kind.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Num(u16, u64),
    Text(u16, SmolStr),
}

impl Key {
    /// A 64-bit fingerprint: keys that differ almost always differ in it, so that scans for a
    /// key compare integers and look at the key itself only on a match.
    fn fingerprint(&self) -> u64 {
        rustc_hash::FxBuildHasher.hash_one(self)
    }

    fn kind(&self) -> u16 {
        match self {
            Key::Num(k, _) | Key::Text(k, _) => *k,
        }
    }
}

/// An anchor of the current event: the key and how many consecutive ids it covers.
#[derive(Clone, Debug)]
struct Anchor {
    key: Key,
    /// [`Key::fingerprint`] of `key`.
    fp: u64,
    len: u32,
}

/// A calibration cell: trials and hits, decayed.
#[derive(Clone, Copy, Debug, Default)]
struct Cal {
    hits: f32,
    trials: f32,
}

impl Cal {
    fn add(&mut self, hit: bool, cap: f32) {
        self.trials += 1.0;
        if hit {
            self.hits += 1.0;
        }
        if self.trials > cap {
            self.trials *= 0.5;
            self.hits *= 0.5;
        }
    }

    /// The hit rate, shrunk towards a low prior (1/4) while there is little evidence.
    fn rate(&self) -> f32 {
        (self.hits + 0.5) / (self.trials + 2.0)
    }

    /// `raw`, replaced by the observed hit rate as evidence builds up.
    fn calibrate(&self, raw: f32) -> f32 {
        (self.hits + SEQ_SHRINK * raw) / (self.trials + SEQ_SHRINK)
    }
}

/// The calibration bin of a readahead confidence.
fn seq_bin(p: f32) -> u8 {
    ((p * SEQ_BINS as f32) as u8).min(SEQ_BINS as u8 - 1)
}

#[derive(Clone, Debug)]
struct Edge {
    target: Key,
    len: u32,
    hits: u8,
    misses: u8,
    dist: u8,
    serial: u32,
}

impl Edge {
    fn record(&mut self, hit: bool) {
        if hit {
            self.hits = self.hits.saturating_add(1);
        } else {
            self.misses = self.misses.saturating_add(1);
        }
        if self.hits.saturating_add(self.misses) > EDGE_COUNT_CAP {
            self.hits = self.hits.div_ceil(2);
            self.misses /= 2;
        }
    }

    fn score(&self) -> i32 {
        i32::from(self.hits) - i32::from(self.misses)
    }
}

#[derive(Clone, Debug, Default)]
struct Node {
    edges: Vec<Edge>,
    /// [`Key::fingerprint`] of each edge's target, in the order of `edges`.
    fps: [u64; MAX_SUCCESSORS],
    last_seen: u64,
}

/// One anchor occurrence waiting for its successors to show up.
#[derive(Clone, Debug)]
struct Pending {
    key: Key,
    /// [`Key::fingerprint`] of `key`.
    fp: u64,
    /// The serials of the edges present when the anchor was read: those are on trial.
    serials: [u32; MAX_SUCCESSORS],
    tried: usize,
    hits: u8,
}

#[derive(Clone, Debug, Default)]
struct RingEntry {
    event_no: u64,
    anchors: Vec<Pending>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// One request so far.
    Fresh,
    /// Requests continue where the previous one ended (or inside the readahead window).
    Seq,
    /// Requests start a constant stride after the previous start.
    Stride(u64),
}

#[derive(Clone, Debug)]
struct Stream {
    kind: u16,
    last_start: u64,
    last_end: u64,
    len: u32,
    mode: Mode,
    /// Requests so far.
    n: u32,
    /// Ids below this were predicted already.
    emitted_to: u64,
    /// The event that last continued the stream.
    last_event: u64,
    last_time: Timestamp,
    /// Mean time between the stream's requests, microseconds.
    gap_us: f64,
}

/// Per kind: its name and calibration tables.
#[derive(Clone, Debug)]
struct KindState {
    name: SmolStr,
    /// Successor edges, by edge state (hits, misses), each up to `EDGE_COUNT_CAP`.
    edges: Vec<Cal>,
    /// Stream continuation, by (run bucket, strided, size bucket).
    streams: Vec<Cal>,
    /// Whether readahead ids were read within [`SEQ_HORIZON`] events, by tenth of the
    /// confidence the continuation rates gave them.
    seq: Vec<Cal>,
}

/// Tenths of the unit interval, for the calibration of readahead.
const SEQ_BINS: usize = 10;
/// A readahead id counts as used when it is read within this many events of its prediction.
const SEQ_HORIZON: u64 = 4096;
/// The most readahead ids awaiting their outcome; beyond, the oldest are dropped uncounted.
const SEQ_PENDING: usize = 1 << 16;
/// Trials of a calibration cell worth as much as the raw confidence.
const SEQ_SHRINK: f32 = 20.0;

const EDGE_STATES: usize = EDGE_COUNT_CAP as usize + 1;

fn edge_cell(hits: u8, misses: u8) -> usize {
    usize::from(hits.min(EDGE_COUNT_CAP)) * EDGE_STATES + usize::from(misses.min(EDGE_COUNT_CAP))
}

fn len_bucket(len: u32) -> usize {
    (u32::BITS - len.max(1).leading_zeros() - 1).min(MAX_LEN_BUCKET as u32) as usize
}

fn stream_cell(n: u32, strided: bool, len: u32) -> usize {
    let nb = (n as usize).min(MAX_RUN_BUCKET);
    (nb * 2 + usize::from(strided)) * (MAX_LEN_BUCKET + 1) + len_bucket(len)
}

const STREAM_CELLS: usize = (MAX_RUN_BUCKET + 1) * 2 * (MAX_LEN_BUCKET + 1);

/// A canonical non-negative decimal integer (no sign, no leading zero), if `s` is one.
fn parse_id(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.is_empty() || b.len() > 18 || (b.len() > 1 && b[0] == b'0') {
        return None;
    }
    let mut v: u64 = 0;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u64::from(c - b'0');
    }
    Some(v)
}

/// `us` microseconds (at least 0) after `now`.
fn after(now: Timestamp, us: f64) -> Timestamp {
    Timestamp::from_micros(now.as_micros().saturating_add(us.clamp(0.0, 1e15) as i64))
}

/// What the predictions of one group of ids share.
#[derive(Clone, Copy, Debug)]
struct Window {
    confidence: f32,
    expected_at: Timestamp,
    latest: Timestamp,
    relation: Relation,
}

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
        for r in &event.entities {
            let Some(k) = self.kind_id(&r.kind) else {
                continue;
            };
            match parse_id(&r.id) {
                Some(v) => self.scratch_nums.push((k, v)),
                None => {
                    let key = Key::Text(k, r.id.clone());
                    let fp = key.fingerprint();
                    if !self.cur.iter().any(|a| a.fp == fp && a.key == key) {
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

    /// Tries the edges of recent anchors against the current anchors, and learns new edges.
    fn learn_successors(&mut self) {
        let max_succ = self.cfg.max_successors;
        for entry in self.ring.iter_mut() {
            let dist = self.event_no.saturating_sub(entry.event_no);
            let dist = u8::try_from(dist).unwrap_or(u8::MAX);
            for p in entry.anchors.iter_mut() {
                let Some(node) = self.nodes.get_mut(&p.key) else {
                    continue;
                };
                for a in &self.cur {
                    if a.fp == p.fp && a.key == p.key {
                        continue;
                    }
                    let n = node.edges.len();
                    match (0..n).find(|&i| node.fps[i] == a.fp && node.edges[i].target == a.key) {
                        Some(i) => {
                            let e = &mut node.edges[i];
                            if i < p.tried && p.serials[i] == e.serial && p.hits & (1 << i) == 0 {
                                p.hits |= 1 << i;
                                e.dist = dist;
                                e.len = a.len;
                            }
                        }
                        None => {
                            let serial = self.next_serial;
                            let edge = Edge {
                                target: a.key.clone(),
                                len: a.len,
                                hits: 1,
                                misses: 0,
                                dist,
                                serial,
                            };
                            if node.edges.len() < max_succ {
                                node.fps[node.edges.len()] = a.fp;
                                node.edges.push(edge);
                                self.next_serial = self.next_serial.wrapping_add(1);
                                continue;
                            }
                            // Replace the weakest edge not on trial now, if it is unconfirmed.
                            let victim = node
                                .edges
                                .iter()
                                .enumerate()
                                .filter(|(i, e)| !(*i < p.tried && p.serials[*i] == e.serial))
                                .min_by_key(|(_, e)| (e.score(), e.hits))
                                .map(|(i, e)| (i, e.score()));
                            if let Some((i, score)) = victim
                                && score <= 1
                            {
                                node.edges[i] = edge;
                                node.fps[i] = a.fp;
                                self.next_serial = self.next_serial.wrapping_add(1);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Resolves the trials of the anchors read `successor_distance` events ago.
    fn resolve_old(&mut self, learn: bool) {
        while let Some(front) = self.ring.front() {
            if self.event_no.saturating_sub(front.event_no) < self.cfg.successor_distance as u64 {
                break;
            }
            let Some(mut entry) = self.ring.pop_front() else {
                break;
            };
            if learn {
                let cap = self.cfg.max_count;
                for p in &entry.anchors {
                    let Some(node) = self.nodes.get_mut(&p.key) else {
                        continue;
                    };
                    let Some(ks) = self.kinds.get_mut(usize::from(p.key.kind())) else {
                        continue;
                    };
                    for (i, e) in node.edges.iter_mut().enumerate().take(p.tried) {
                        if p.serials[i] != e.serial {
                            continue;
                        }
                        let hit = p.hits & (1 << i) != 0;
                        ks.edges[edge_cell(e.hits, e.misses)].add(hit, cap);
                        e.record(hit);
                    }
                }
            }
            entry.anchors.clear();
            self.spare.push(entry);
        }
    }

    /// Records the current anchors as waiting for their successors.
    fn push_pending(&mut self) {
        let mut entry = self.spare.pop().unwrap_or_default();
        entry.event_no = self.event_no;
        entry.anchors.clear();
        for a in &self.cur {
            let node = self.nodes.entry(a.key.clone()).or_default();
            node.last_seen = self.event_no;
            let mut serials = [0u32; MAX_SUCCESSORS];
            for (s, e) in serials.iter_mut().zip(&node.edges) {
                *s = e.serial;
            }
            entry.anchors.push(Pending {
                key: a.key.clone(),
                fp: a.fp,
                serials,
                tried: node.edges.len(),
                hits: 0,
            });
        }
        self.ring.push_back(entry);
        if self.nodes.len() > self.cfg.max_keys {
            self.evict_cold();
        }
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

    /// Moves the streams with the current integer runs.
    fn follow_streams(&mut self, now: Timestamp, learn: bool) {
        self.touched.clear();
        let cap = self.cfg.max_count;
        let skip = self.cfg.skip_requests;
        for ai in 0..self.cur.len() {
            let Key::Num(kind, s) = self.cur[ai].key else {
                continue;
            };
            let len = self.cur[ai].len;
            let end = s + u64::from(len);
            // 1. A continuation: sequential (inside the window read ahead) or at the stride.
            let mut found = None;
            for (i, st) in self.streams.iter().enumerate() {
                if st.kind != kind || self.touched.contains(&i) {
                    continue;
                }
                let ok = match st.mode {
                    Mode::Fresh | Mode::Seq => {
                        s >= st.last_end
                            && s <= st.last_end.max(st.emitted_to).min(
                                st.last_end
                                    .saturating_add(skip.saturating_mul(u64::from(st.len))),
                            )
                    }
                    Mode::Stride(d) => s == st.last_start + d,
                };
                if ok {
                    found = Some(i);
                    if s == st.last_end {
                        break;
                    }
                }
            }
            // 2. A fresh stream a small forward stride behind: a strided stream.
            if found.is_none() {
                found = self
                    .streams
                    .iter()
                    .enumerate()
                    .filter(|(i, st)| {
                        st.kind == kind
                            && st.mode == Mode::Fresh
                            && !self.touched.contains(i)
                            && s > st.last_end
                            && s - st.last_start <= self.cfg.max_stride
                    })
                    .max_by_key(|(_, st)| st.last_event)
                    .map(|(i, _)| i);
            }
            match found {
                Some(i) => {
                    let st = &mut self.streams[i];
                    let was_fresh = st.mode == Mode::Fresh;
                    if was_fresh {
                        st.mode = if s >= st.last_end && s <= st.last_end.max(st.emitted_to) {
                            Mode::Seq
                        } else {
                            Mode::Stride(s - st.last_start)
                        };
                    }
                    let strided = matches!(st.mode, Mode::Stride(_));
                    if learn && let Some(ks) = self.kinds.get_mut(usize::from(kind)) {
                        ks.streams[stream_cell(st.n, strided, st.len)].add(true, cap);
                        if was_fresh {
                            // A fresh stream is a trial of both ways to continue.
                            ks.streams[stream_cell(st.n, !strided, st.len)].add(false, cap);
                        }
                    }
                    let gap = now.as_micros().saturating_sub(st.last_time.as_micros()) as f64;
                    st.gap_us = if st.n <= 1 {
                        gap
                    } else {
                        0.75 * st.gap_us + 0.25 * gap
                    };
                    st.n = st.n.saturating_add(1);
                    st.last_start = s;
                    st.last_end = end;
                    st.len = len;
                    st.emitted_to = st.emitted_to.max(end);
                    st.last_event = self.event_no;
                    st.last_time = now;
                    self.touched.push(i);
                }
                None => {
                    let st = Stream {
                        kind,
                        last_start: s,
                        last_end: end,
                        len,
                        mode: Mode::Fresh,
                        n: 1,
                        emitted_to: end,
                        last_event: self.event_no,
                        last_time: now,
                        gap_us: 0.0,
                    };
                    if self.streams.len() < self.cfg.max_streams {
                        self.streams.push(st);
                        self.touched.push(self.streams.len() - 1);
                    } else if let Some(i) = self
                        .streams
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| !self.touched.contains(i))
                        .min_by_key(|(_, st)| st.last_event)
                        .map(|(i, _)| i)
                    {
                        // The least recently continued stream ends: it did not continue.
                        let old = &self.streams[i];
                        let strided = matches!(old.mode, Mode::Stride(_));
                        let fresh = old.mode == Mode::Fresh;
                        let (n, len) = (old.n, old.len);
                        if learn && let Some(ks) = self.kinds.get_mut(usize::from(old.kind)) {
                            ks.streams[stream_cell(n, strided, len)].add(false, cap);
                            if fresh {
                                ks.streams[stream_cell(n, true, len)].add(false, cap);
                            }
                        }
                        self.streams[i] = st;
                        self.touched.push(i);
                    }
                }
            }
        }
    }

    /// The end of the predicted windows of an event at `now`.
    fn latest(&self, now: Timestamp) -> Timestamp {
        after(now, self.gap_us * self.cfg.window_events)
    }

    fn push_ids(out: &mut Vec<Prediction>, kind: &SmolStr, start: u64, len: u64, w: Window) {
        for v in start..start.saturating_add(len) {
            out.push(Prediction {
                entity: EntityKey {
                    kind: kind.clone(),
                    id: v.to_smolstr(),
                },
                confidence: w.confidence,
                expected_at: w.expected_at,
                latest: w.latest.max(w.expected_at),
                event_type: None,
                relation: w.relation,
            });
        }
    }

    fn emit_target(
        out: &mut Vec<Prediction>,
        kinds: &[KindState],
        target: &Key,
        len: u32,
        max_run: u64,
        w: Window,
    ) {
        let Some(kind) = kinds.get(usize::from(target.kind())) else {
            return;
        };
        match target {
            Key::Num(_, start) => {
                Self::push_ids(out, &kind.name, *start, u64::from(len).min(max_run), w)
            }
            Key::Text(_, id) => out.push(Prediction {
                entity: EntityKey {
                    kind: kind.name.clone(),
                    id: id.clone(),
                },
                confidence: w.confidence,
                expected_at: w.expected_at,
                latest: w.latest.max(w.expected_at),
                event_type: None,
                relation: w.relation,
            }),
        }
    }

    fn forecast_successors(&self, now: Timestamp, latest: Timestamp, out: &mut Vec<Prediction>) {
        let depth = if self.cfg.successor_chain {
            self.cfg.successor_depth.max(1)
        } else {
            1
        };
        let mut path = Vec::with_capacity(depth + 1);
        for a in &self.cur {
            path.clear();
            path.push(a.fp);
            self.walk_successors(&a.key, 1.0, 0, depth, &mut path, now, latest, out);
        }
    }

    /// Predicts the successors of `from`, reached with confidence `conf` after `dist` events,
    /// and theirs up to `depth` steps, each with the product of the confidences along the way.
    /// `path` holds the fingerprints of the anchors on the way: none is predicted again.
    #[allow(clippy::too_many_arguments)]
    fn walk_successors(
        &self,
        from: &Key,
        conf: f32,
        dist: u8,
        depth: usize,
        path: &mut Vec<u64>,
        now: Timestamp,
        latest: Timestamp,
        out: &mut Vec<Prediction>,
    ) {
        let Some(node) = self.nodes.get(from) else {
            return;
        };
        let Some(ks) = self.kinds.get(usize::from(from.kind())) else {
            return;
        };
        for (e, &fp) in node.edges.iter().zip(&node.fps) {
            if path.contains(&fp) {
                continue;
            }
            let c = conf * ks.edges[edge_cell(e.hits, e.misses)].rate();
            if c < self.cfg.min_confidence {
                continue;
            }
            let d = dist.saturating_add(e.dist);
            let expected_at = after(now, f64::from(d.saturating_sub(1)) * self.gap_us);
            Self::emit_target(
                out,
                &self.kinds,
                &e.target,
                e.len,
                self.cfg.max_run,
                Window {
                    confidence: c,
                    expected_at,
                    latest,
                    relation: Relation::Successor,
                },
            );
            if depth > 1 {
                path.push(fp);
                self.walk_successors(&e.target, c, d, depth - 1, path, now, latest, out);
                path.pop();
            }
        }
    }

    fn forecast_streams(&mut self, now: Timestamp, latest: Timestamp, out: &mut Vec<Prediction>) {
        let mut pending = Vec::new();
        for ti in 0..self.touched.len() {
            let i = self.touched[ti];
            let Some(st) = self.streams.get(i) else {
                continue;
            };
            let Some(ks) = self.kinds.get(usize::from(st.kind)) else {
                continue;
            };
            let strided = matches!(st.mode, Mode::Stride(_));
            let step = match st.mode {
                Mode::Fresh | Mode::Seq => u64::from(st.len),
                Mode::Stride(d) => d,
            };
            let len = u64::from(st.len);
            let limit = st.last_end.saturating_add(self.cfg.max_readahead);
            let mut raw = 1.0f32;
            let mut emitted_to = st.emitted_to;
            for c in 1..=self.cfg.max_readahead {
                let n =
                    st.n.saturating_add(u32::try_from(c - 1).unwrap_or(u32::MAX));
                raw *= ks.streams[stream_cell(n, strided, st.len)].rate();
                let bin = seq_bin(raw);
                let conf = ks.seq[usize::from(bin)].calibrate(raw);
                if conf < self.cfg.min_confidence {
                    break;
                }
                let start = st.last_start.saturating_add(step.saturating_mul(c));
                let end = start.saturating_add(len).min(limit);
                if start >= limit {
                    break;
                }
                let from = start.max(emitted_to);
                if from < end {
                    let expected_at = after(now, (c - 1) as f64 * 0.5 * st.gap_us);
                    Self::push_ids(
                        out,
                        &ks.name,
                        from,
                        end - from,
                        Window {
                            confidence: conf,
                            expected_at,
                            latest,
                            relation: Relation::Sequential,
                        },
                    );
                    for v in from..end {
                        pending.push((st.kind, v, bin));
                    }
                    emitted_to = end;
                }
            }
            if let Some(st) = self.streams.get_mut(i) {
                st.emitted_to = emitted_to;
            }
        }
        let deadline = self.event_no.saturating_add(SEQ_HORIZON);
        for (k, v, bin) in pending {
            self.seq_pending.insert((k, v), (bin, deadline));
            self.seq_order.push_back((deadline, k, v));
            if self.seq_order.len() > SEQ_PENDING
                && let Some((d, k, v)) = self.seq_order.pop_front()
                && self.seq_pending.get(&(k, v)).is_some_and(|p| p.1 == d)
            {
                self.seq_pending.remove(&(k, v));
            }
        }
    }

    /// Learns whether readahead came true: ids of this event that were predicted are hits,
    /// predicted ids whose horizon has passed unread are misses.
    fn resolve_readahead(&mut self) {
        let cap = self.cfg.max_count;
        for &(k, v) in &self.scratch_nums {
            if let Some((bin, _)) = self.seq_pending.remove(&(k, v))
                && let Some(ks) = self.kinds.get_mut(usize::from(k))
            {
                ks.seq[usize::from(bin)].add(true, cap);
            }
        }
        while let Some(&(d, k, v)) = self.seq_order.front() {
            if d >= self.event_no {
                break;
            }
            self.seq_order.pop_front();
            if self.seq_pending.get(&(k, v)).is_some_and(|p| p.1 == d)
                && let Some((bin, _)) = self.seq_pending.remove(&(k, v))
                && let Some(ks) = self.kinds.get_mut(usize::from(k))
            {
                ks.seq[usize::from(bin)].add(false, cap);
            }
        }
    }
}

impl OnlineModel for KeyModel {
    fn name(&self) -> &str {
        "keys"
    }

    fn observe(&mut self, event: &Event, mode: Observe) {
        if mode == Observe::Skip {
            return;
        }
        let learn = mode == Observe::Learn;
        let now = event.time;
        if let Some(prev) = self.last_time {
            let gap = now.as_micros().saturating_sub(prev.as_micros()).max(0) as f64;
            self.gap_us = if self.event_no <= 1 {
                gap
            } else {
                0.999 * self.gap_us + 0.001 * gap
            };
        }
        self.last_time = Some(now);
        self.event_no += 1;
        self.decompose(event);
        if learn {
            self.learn_successors();
        }
        self.resolve_old(learn);
        if learn {
            self.push_pending();
            self.resolve_readahead();
        }
        self.follow_streams(now, learn);
        self.last_event = Some((event.id.clone(), event.time));
    }

    fn forecast(&mut self, event: &Event) -> Forecast {
        let now = event.time;
        let current = self.is_current(event);
        if !current {
            self.decompose(event);
            self.touched.clear();
        }
        let latest = self.latest(now);
        let mut out = Vec::new();
        self.forecast_successors(now, latest, &mut out);
        if current {
            self.forecast_streams(now, latest, &mut out);
            self.touched.clear();
        }
        out.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
        Forecast {
            next: Vec::new(),
            entities: out,
            novelty_discount: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prescient_core::EntityRef;

    fn ev(i: u64, ids: &[u64]) -> Event {
        let mut e = Event::new(i.to_string(), "read", Timestamp::from_millis(i as i64));
        for id in ids {
            e = e.with_entity(EntityRef::new("block", id.to_string()));
        }
        e
    }

    fn step(m: &mut KeyModel, e: &Event) -> Forecast {
        m.observe(e, Observe::Learn);
        m.forecast(e)
    }

    fn ids(f: &Forecast, rel: Relation) -> Vec<u64> {
        f.entities
            .iter()
            .filter(|p| p.relation == rel)
            .filter_map(|p| p.entity.id.parse().ok())
            .collect()
    }

    /// The readahead calibration of kind `block`: `(trials, hit rate)` over all bins.
    fn readahead_record(m: &KeyModel) -> (f32, f32) {
        let ks = &m.kinds[usize::from(m.kind_ids["block"])];
        let (n, k) = ks
            .seq
            .iter()
            .fold((0.0, 0.0), |(n, k), c| (n + c.trials, k + c.hits));
        (n, k / n.max(1.0))
    }

    #[test]
    fn readahead_confidence_follows_what_was_read() {
        // A sequential scan: every id predicted ahead is read soon after.
        let mut m = KeyModel::default();
        let mut last = Forecast::default();
        for i in 0..3000 {
            last = step(&mut m, &ev(i, &[i]));
        }
        let (n, rate) = readahead_record(&m);
        assert!(n >= 100.0 && rate > 0.9, "{n} {rate}");
        let seq: Vec<f32> = last
            .entities
            .iter()
            .filter(|p| p.relation == Relation::Sequential)
            .map(|p| p.confidence)
            .collect();
        assert!(!seq.is_empty() && seq.iter().all(|c| *c > 0.8), "{seq:?}");

        // Runs of one, two or three ids at scattered places: the id after a run's last is
        // predicted at times and never read, and the record says so.
        let mut m = KeyModel::default();
        let (mut x, mut i) = (12345u64, 0u64);
        for r in 0..6000u64 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let base = (x >> 20) % 1_000_000_000 * 8;
            for j in 0..=r % 3 {
                step(&mut m, &ev(i, &[base + j]));
                i += 1;
            }
        }
        let (n, rate) = readahead_record(&m);
        assert!(n >= 100.0 && rate > 0.2 && rate < 0.8, "{n} {rate}");
    }

    #[test]
    fn parses_only_canonical_integers() {
        assert_eq!(parse_id("0"), Some(0));
        assert_eq!(parse_id("1234"), Some(1234));
        assert_eq!(parse_id("007"), None);
        assert_eq!(parse_id("-1"), None);
        assert_eq!(parse_id("a1"), None);
        assert_eq!(parse_id(""), None);
    }

    #[test]
    fn runs_become_one_anchor() {
        let mut m = KeyModel::default();
        let mut e = ev(0, &[7, 5, 6, 9]);
        e = e.with_entity(EntityRef::new("user", "alice"));
        m.decompose(&e);
        let got: Vec<(Key, u32)> = m.cur.iter().map(|a| (a.key.clone(), a.len)).collect();
        assert_eq!(
            got,
            vec![
                (Key::Text(1, "alice".into()), 1),
                (Key::Num(0, 5), 3),
                (Key::Num(0, 9), 1)
            ]
        );
    }

    #[test]
    fn sequential_stream_gets_readahead_ahead_of_the_next_reads() {
        let mut m = KeyModel::default();
        let mut last = Forecast::default();
        // Many sequential runs of 4-block requests, interleaved with random reads.
        let mut t = 0;
        for run in 0..50u64 {
            let base = 1_000_000 * (run + 1);
            for r in 0..20u64 {
                last = step(
                    &mut m,
                    &ev(
                        t,
                        &[
                            base + 4 * r,
                            base + 4 * r + 1,
                            base + 4 * r + 2,
                            base + 4 * r + 3,
                        ],
                    ),
                );
                t += 1;
                step(&mut m, &ev(t, &[(t * 7919) % 100_000 + 50_000_000]));
                t += 1;
            }
        }
        let _ = last;
        // A new run, a few requests in: the readahead covers more than the next request.
        let base = 900_000_000;
        let mut seen = Vec::new();
        for r in 0..6u64 {
            let f = step(
                &mut m,
                &ev(
                    t,
                    &[
                        base + 4 * r,
                        base + 4 * r + 1,
                        base + 4 * r + 2,
                        base + 4 * r + 3,
                    ],
                ),
            );
            t += 1;
            seen.extend(ids(&f, Relation::Sequential));
        }
        let end = base + 24;
        assert!(
            seen.contains(&(end + 4)),
            "reads ahead more than one request: {seen:?}"
        );
        // Each id once.
        let mut dedup = seen.clone();
        dedup.sort_unstable();
        dedup.dedup();
        assert_eq!(dedup.len(), seen.len());
        assert!(seen.iter().all(|&b| b >= base + 4 && b < end + 256));
    }

    #[test]
    fn strided_stream_is_followed() {
        let mut m = KeyModel::default();
        let mut t = 0;
        let mut seen = Vec::new();
        for run in 0..40u64 {
            let base = 1_000_000 * (run + 1);
            seen.clear();
            for r in 0..20u64 {
                let f = step(&mut m, &ev(t, &[base + 10 * r]));
                seen.extend(ids(&f, Relation::Sequential));
                t += 1;
            }
        }
        // The last run: ids at the stride ahead of the reads, none in between.
        let base = 40_000_000;
        assert!(seen.contains(&(base + 200)), "{seen:?}");
        assert!(seen.iter().all(|b| (b - base) % 10 == 0), "{seen:?}");
    }

    #[test]
    fn repeated_pattern_predicts_successor() {
        let mut m = KeyModel::default();
        let mut t = 0;
        // A -> x -> B, repeated, with different fillers each time; many such pairs.
        for round in 0..30u64 {
            for pair in 0..20u64 {
                let a = 10_000 + pair * 1000;
                let b = 20_000_000 + pair * 1000;
                step(&mut m, &ev(t, &[a]));
                t += 1;
                step(&mut m, &ev(t, &[90_000_000 + t * 13 + round]));
                t += 1;
                step(&mut m, &ev(t, &[b]));
                t += 1;
                step(&mut m, &ev(t, &[95_000_000 + t * 17]));
                t += 1;
            }
        }
        let f = step(&mut m, &ev(t, &[10_000]));
        let p = f
            .entities
            .iter()
            .find(|p| p.entity.id == "20000000")
            .map(|p| (p.relation, p.confidence));
        let Some((rel, conf)) = p else {
            panic!("B not predicted: {f:?}");
        };
        assert_eq!(rel, Relation::Successor);
        assert!(conf > 0.8, "{conf}");
        // Fillers that never repeat are not predicted.
        assert!(f.entities.iter().all(|p| p.confidence >= 0.5));
        assert!(
            f.entities
                .iter()
                .all(|p| p.entity.id.parse::<u64>().is_ok_and(|v| v < 90_000_000)),
            "{f:?}"
        );
    }

    #[test]
    fn text_ids_without_structure_predict_little() {
        let mut m = KeyModel::default();
        let mut predicted = 0;
        let mut x: u64 = 12345;
        for t in 0..20_000u64 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let e = Event::new(t.to_string(), "a", Timestamp::from_secs(t as i64))
                .with_entity(EntityRef::new("case", format!("c-{}", (x >> 33) % 5000)))
                .with_entity(EntityRef::new("user", format!("u{}", (x >> 20) % 50)));
            let f = step(&mut m, &e);
            predicted += f.entities.len();
        }
        assert!(predicted < 200, "{predicted}");
    }

    #[test]
    fn memory_stays_bounded() {
        let cfg = KeyConfig {
            max_keys: 1000,
            max_streams: 16,
            ..KeyConfig::default()
        };
        let mut m = KeyModel::new(cfg);
        let mut x: u64 = 1;
        for t in 0..50_000u64 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            step(&mut m, &ev(t, &[x >> 24]));
            assert!(m.tracked_keys() <= 1001);
            assert!(m.tracked_streams() <= 16);
        }
        assert!(m.ring.len() <= m.cfg.successor_distance);
        assert!(m.spare.len() <= m.cfg.successor_distance + 1);
    }

    #[test]
    fn track_learns_nothing() {
        let mut m = KeyModel::default();
        for t in 0..1000u64 {
            m.observe(&ev(t, &[t]), Observe::Track);
        }
        assert!(
            m.kinds
                .iter()
                .all(|k| k.streams.iter().all(|c| c.trials == 0.0))
        );
        assert!(m.forecast(&ev(1000, &[1000])).entities.is_empty());
    }
}
