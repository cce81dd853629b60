//! Calibration of successor edges and stream continuations: the cells of their hit-rate tables.

use super::state::{EDGE_COUNT_CAP, MAX_LEN_BUCKET, MAX_RUN_BUCKET};

/// A calibration cell: trials and hits, decayed.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Cal {
    pub(super) hits: f32,
    pub(super) trials: f32,
}

impl Cal {
    pub(super) fn add(&mut self, hit: bool, cap: f32) {
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
    pub(super) fn rate(&self) -> f32 {
        (self.hits + 0.5) / (self.trials + 2.0)
    }

    /// `raw`, replaced by the observed hit rate as evidence builds up.
    pub(super) fn calibrate(&self, raw: f32) -> f32 {
        (self.hits + SEQ_SHRINK * raw) / (self.trials + SEQ_SHRINK)
    }
}

/// The calibration bin of a readahead confidence.
pub(super) fn seq_bin(p: f32) -> u8 {
    ((p * SEQ_BINS as f32) as u8).min(SEQ_BINS as u8 - 1)
}

/// Tenths of the unit interval, for the calibration of readahead.
pub(super) const SEQ_BINS: usize = 10;

/// A readahead id counts as used when it is read within this many events of its prediction.
pub(super) const SEQ_HORIZON: u64 = 4096;

/// The most readahead ids awaiting their outcome; beyond, the oldest are dropped uncounted.
pub(super) const SEQ_PENDING: usize = 1 << 16;

/// Trials of a calibration cell worth as much as the raw confidence.
pub(super) const SEQ_SHRINK: f32 = 20.0;

pub(super) const EDGE_STATES: usize = EDGE_COUNT_CAP as usize + 1;

pub(super) fn edge_cell(hits: u8, misses: u8) -> usize {
    usize::from(hits.min(EDGE_COUNT_CAP)) * EDGE_STATES + usize::from(misses.min(EDGE_COUNT_CAP))
}

pub(super) fn len_bucket(len: u32) -> usize {
    (u32::BITS - len.max(1).leading_zeros() - 1).min(MAX_LEN_BUCKET as u32) as usize
}

pub(super) fn stream_cell(n: u32, strided: bool, len: u32) -> usize {
    let nb = (n as usize).min(MAX_RUN_BUCKET);
    (nb * 2 + usize::from(strided)) * (MAX_LEN_BUCKET + 1) + len_bucket(len)
}

pub(super) const STREAM_CELLS: usize = (MAX_RUN_BUCKET + 1) * 2 * (MAX_LEN_BUCKET + 1);
