//! What the key model tracks: anchors, successor edges, pending trials, streams and per-kind state.

use std::hash::BuildHasher;

use prescient_core::{Relation, SmolStr, Timestamp};

use super::calibration::Cal;

/// The most successors an anchor may keep (hits are tracked in a byte).
pub(super) const MAX_SUCCESSORS: usize = 8;

/// Edge hit and miss counts are halved when their sum passes this.
pub(super) const EDGE_COUNT_CAP: u8 = 6;

/// Stream lengths are bucketed up to this.
pub(super) const MAX_RUN_BUCKET: usize = 15;

/// Request sizes are bucketed by log2 up to this.
pub(super) const MAX_LEN_BUCKET: usize = 7;

/// An anchor: an integer id (the start of a run) or a text id, of a kind.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum Key {
    Num(u16, u64),
    Text(u16, SmolStr),
}

impl Key {
    /// A 64-bit fingerprint: keys that differ almost always differ in it, so that scans for a
    /// key compare integers and look at the key itself only on a match.
    pub(super) fn fingerprint(&self) -> u64 {
        rustc_hash::FxBuildHasher.hash_one(self)
    }

    pub(super) fn kind(&self) -> u16 {
        match self {
            Key::Num(k, _) | Key::Text(k, _) => *k,
        }
    }
}

/// An anchor of the current event: the key and how many consecutive ids it covers.
#[derive(Clone, Debug)]
pub(super) struct Anchor {
    pub(super) key: Key,
    /// [`Key::fingerprint`] of `key`.
    pub(super) fp: u64,
    pub(super) len: u32,
}

#[derive(Clone, Debug)]
pub(super) struct Edge {
    pub(super) target: Key,
    pub(super) len: u32,
    pub(super) hits: u8,
    pub(super) misses: u8,
    pub(super) dist: u8,
    pub(super) serial: u32,
}

impl Edge {
    pub(super) fn record(&mut self, hit: bool) {
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

    pub(super) fn score(&self) -> i32 {
        i32::from(self.hits) - i32::from(self.misses)
    }
}

#[derive(Clone, Debug, Default)]
pub(super) struct Node {
    pub(super) edges: Vec<Edge>,
    /// [`Key::fingerprint`] of each edge's target, in the order of `edges`.
    pub(super) fps: [u64; MAX_SUCCESSORS],
    pub(super) last_seen: u64,
}

/// One anchor occurrence waiting for its successors to show up.
#[derive(Clone, Debug)]
pub(super) struct Pending {
    pub(super) key: Key,
    /// [`Key::fingerprint`] of `key`.
    pub(super) fp: u64,
    /// The serials of the edges present when the anchor was read: those are on trial.
    pub(super) serials: [u32; MAX_SUCCESSORS],
    pub(super) tried: usize,
    pub(super) hits: u8,
}

#[derive(Clone, Debug, Default)]
pub(super) struct RingEntry {
    pub(super) event_no: u64,
    pub(super) anchors: Vec<Pending>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mode {
    /// One request so far.
    Fresh,
    /// Requests continue where the previous one ended (or inside the readahead window).
    Seq,
    /// Requests start a constant stride after the previous start.
    Stride(u64),
}

#[derive(Clone, Debug)]
pub(super) struct Stream {
    pub(super) kind: u16,
    pub(super) last_start: u64,
    pub(super) last_end: u64,
    pub(super) len: u32,
    pub(super) mode: Mode,
    /// Requests so far.
    pub(super) n: u32,
    /// Ids below this were predicted already.
    pub(super) emitted_to: u64,
    /// The event that last continued the stream.
    pub(super) last_event: u64,
    pub(super) last_time: Timestamp,
    /// Mean time between the stream's requests, microseconds.
    pub(super) gap_us: f64,
}

/// Per kind: its name and calibration tables.
#[derive(Clone, Debug)]
pub(super) struct KindState {
    pub(super) name: SmolStr,
    /// Successor edges, by edge state (hits, misses), each up to `EDGE_COUNT_CAP`.
    pub(super) edges: Vec<Cal>,
    /// Stream continuation, by (run bucket, strided, size bucket).
    pub(super) streams: Vec<Cal>,
    /// Whether readahead ids were read within [`SEQ_HORIZON`] events, by tenth of the
    /// confidence the continuation rates gave them.
    ///
    /// [`SEQ_HORIZON`]: super::calibration::SEQ_HORIZON
    pub(super) seq: Vec<Cal>,
}

/// A canonical non-negative decimal integer (no sign, no leading zero), if `s` is one.
pub(super) fn parse_id(s: &str) -> Option<u64> {
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
pub(super) fn after(now: Timestamp, us: f64) -> Timestamp {
    Timestamp::from_micros(now.as_micros().saturating_add(us.clamp(0.0, 1e15) as i64))
}

/// What the predictions of one group of ids share.
#[derive(Clone, Copy, Debug)]
pub(super) struct Window {
    pub(super) confidence: f32,
    pub(super) expected_at: Timestamp,
    pub(super) latest: Timestamp,
    pub(super) relation: Relation,
}
