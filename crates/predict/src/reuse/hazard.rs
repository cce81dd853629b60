//! The discrete hazard: hashed features of a window, the online logistic regression and its
//! calibration.

use std::hash::BuildHasher;

use rustc_hash::FxBuildHasher;

use super::ReuseModel;
use super::config::MARGIN_US;
use super::state::{EntityState, Prefix};

pub(super) const NUM_FEATURES: usize = 16;

/// The log-odds before anything is learned: a window picked at random rarely holds a read.
pub(super) const PRIOR: f32 = -3.0;

pub(super) const CAL_BINS: usize = 10;

pub(super) const CAL_KINDS: usize = 64;

/// Windows of a reliability cell beyond which its counts halve (it follows drift).
pub(super) const CAL_MAX: f32 = 20_000.0;

/// Windows a cell needs before it replaces the raw probability.
pub(super) const CAL_MIN: f32 = 50.0;

pub(super) fn mix(a: u64, b: u64) -> u64 {
    let x = (a ^ b.rotate_left(29)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^ (x >> 31)
}

pub(super) fn hash_str(s: &str) -> u64 {
    FxBuildHasher.hash_one(s)
}

pub(super) fn log_bucket(j: u32) -> u64 {
    u64::from(32 - j.max(1).leading_zeros())
}

pub(super) fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z.clamp(-30.0, 30.0)).exp())
}

impl ReuseModel {
    /// The start of window `j` after a copy filled at `fill`.
    pub(super) fn start_of(&self, fill: i64, j: u32) -> i64 {
        fill.saturating_add(self.window_us.saturating_mul(i64::from(j)))
            .saturating_add(MARGIN_US)
    }

    /// The window (after a copy filled at `fill`) that holds `t`; 0 while the copy is fresh.
    pub(super) fn window_of(&self, fill: i64, t: i64) -> u32 {
        let since = t.saturating_sub(fill).saturating_sub(MARGIN_US);
        if since < 0 {
            return 0;
        }
        u32::try_from(since / self.window_us.max(1)).unwrap_or(u32::MAX)
    }

    /// The parts of `st`'s features that do not depend on the window: whole features, and the
    /// hashes the window's features extend. Computed once per state, for all its windows.
    pub(super) fn prefix(&self, st: &EntityState) -> Prefix {
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
    pub(super) fn features(&mut self, pre: &Prefix, j: u32, start: i64) {
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

    pub(super) fn score(&self) -> f32 {
        sigmoid(PRIOR + self.feats.iter().map(|&i| self.weights[i][0]).sum::<f32>())
    }

    pub(super) fn cal_cell(kind: u64, p: f32) -> (usize, usize) {
        let bin = ((p * CAL_BINS as f32) as usize).min(CAL_BINS - 1);
        ((kind as usize) % CAL_KINDS, bin)
    }

    /// The raw probability `p` of a window of `kind`, calibrated by what windows of that kind
    /// and raw probability turned out to hold.
    pub(super) fn calibrated(&self, kind: u64, p: f32) -> f32 {
        let (k, b) = Self::cal_cell(kind, p);
        let [n, hits] = self.calibration[k][b];
        if n < CAL_MIN {
            p
        } else {
            // Shrink towards the raw probability with the weight of a few windows.
            (hits + 10.0 * p) / (n + 10.0)
        }
    }

    pub(super) fn learn(&mut self, st: &EntityState, pre: &Prefix, j: u32, read: bool) {
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
    pub(super) fn probability(&mut self, st: &EntityState, pre: &Prefix, j: u32) -> f32 {
        let start = self.start_of(st.fill, j);
        self.features(pre, j, start);
        self.score()
    }
}
