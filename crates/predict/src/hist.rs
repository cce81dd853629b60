//! [`LogHist`]: a fixed-size, log-bucketed histogram of durations with decay by halving.

use std::cell::Cell;

use serde::{Deserialize, Serialize};

/// Number of buckets: bucket 0 holds `[0, 1 s)`, bucket `b ≥ 1` holds `[2^((b-1)/2), 2^(b/2))`
/// seconds, and the last bucket everything longer (about 35 years).
pub const BUCKETS: usize = 64;

/// A log-bucketed histogram of durations (half-octave buckets), weights as `f32`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogHist {
    counts: Vec<f32>,
    total: f32,
    /// The cached median in seconds (negative: not known); not part of the snapshot.
    #[serde(skip, default = "unknown_median")]
    median: Cell<f64>,
}

fn unknown_median() -> Cell<f64> {
    Cell::new(-1.0)
}

impl PartialEq for LogHist {
    fn eq(&self, other: &Self) -> bool {
        self.counts == other.counts && self.total == other.total
    }
}

impl Default for LogHist {
    fn default() -> Self {
        LogHist {
            counts: vec![0.0; BUCKETS],
            total: 0.0,
            median: unknown_median(),
        }
    }
}

/// The bucket of a duration in seconds.
pub fn bucket_of(secs: f64) -> usize {
    if secs.is_nan() || secs < 1.0 {
        return 0;
    }
    // `secs` lies in `[2^e, 2^(e+1))` (its binary exponent; no logarithm needed): bucket
    // `2e + 1`, or `2e + 2` from `2^e·√2` on.
    let e = ((secs.to_bits() >> 52) & 0x7ff) as usize - 1023;
    let b = 2 * e + 1;
    if b >= BUCKETS - 1 {
        return BUCKETS - 1;
    }
    b + usize::from(secs >= EDGES[b])
}

/// `EDGES[b] = 2^(b/2)`: the upper edge of bucket `b` and the lower edge of bucket `b + 1`.
static EDGES: [f64; BUCKETS + 1] = edges();

const fn edges() -> [f64; BUCKETS + 1] {
    let mut t = [0.0; BUCKETS + 1];
    let mut b = 0;
    while b <= BUCKETS {
        let mut p = 1.0;
        let mut k = 0;
        while k < b / 2 {
            p *= 2.0;
            k += 1;
        }
        if b % 2 == 1 {
            p *= std::f64::consts::SQRT_2;
        }
        t[b] = p;
        b += 1;
    }
    t
}

/// The lower edge of a bucket, in seconds.
pub fn bucket_lo(b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        EDGES.get(b - 1).copied().unwrap_or(f64::INFINITY)
    }
}

/// The upper edge of a bucket, in seconds.
pub fn bucket_hi(b: usize) -> f64 {
    EDGES.get(b).copied().unwrap_or(f64::INFINITY)
}

/// `2^(1/4)`: the ratio of a bucket's geometric middle to its lower edge.
const FOURTH_ROOT_2: f64 = 1.189_207_115_002_721;

/// A representative value of a bucket: its geometric middle (0.5 s for the first).
pub fn bucket_mid(b: usize) -> f64 {
    if b == 0 {
        0.5
    } else {
        bucket_lo(b) * FOURTH_ROOT_2
    }
}

impl LogHist {
    /// Adds one observation of `secs` with weight 1; halves everything once the total passes
    /// `cap` (a cap of 0 never halves).
    pub fn add(&mut self, secs: f64, cap: f32) {
        let b = bucket_of(secs);
        self.median.set(-1.0);
        self.counts[b] += 1.0;
        self.total += 1.0;
        if cap > 0.0 && self.total > cap {
            for c in &mut self.counts {
                *c *= 0.5;
            }
            self.total *= 0.5;
        }
    }

    /// Multiplies every weight by `f` (decay).
    pub fn scale(&mut self, f: f32) {
        self.median.set(-1.0);
        for c in &mut self.counts {
            *c *= f;
        }
        self.total *= f;
    }

    /// The total weight.
    pub fn total(&self) -> f32 {
        self.total
    }

    /// The weight of a bucket.
    pub fn count(&self, b: usize) -> f32 {
        self.counts.get(b).copied().unwrap_or(0.0)
    }

    /// The median in seconds (bucket middle), or `None` when empty: `quantile(0.5)`, cached
    /// until the histogram changes.
    pub fn median(&self) -> Option<f64> {
        let m = self.median.get();
        if m >= 0.0 {
            return Some(m);
        }
        let m = self.quantile(0.5)?;
        self.median.set(m);
        Some(m)
    }

    /// The `q`-quantile in seconds (bucket middle), or `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.total <= 0.0 {
            return None;
        }
        let target = q.clamp(0.0, 1.0) * f64::from(self.total);
        let mut acc = 0.0;
        for (b, &c) in self.counts.iter().enumerate() {
            acc += f64::from(c);
            if acc >= target && c > 0.0 {
                return Some(bucket_mid(b));
            }
        }
        Some(bucket_mid(BUCKETS - 1))
    }

    /// The window with the most weight, no wider than `width` seconds, starting at
    /// `min_start` or later and ending at `max_end` or sooner: `(start, end, weight)` in
    /// seconds. Windows are runs of whole buckets; a bucket wider than `width` contributes a
    /// window of `width` around its middle, with its weight scaled by the share of the bucket
    /// covered (weight is assumed uniform within a bucket).
    pub fn densest_window(
        &self,
        width: f64,
        min_start: f64,
        max_end: f64,
    ) -> Option<(f64, f64, f32)> {
        let mut best: Option<(f64, f64, f32)> = None;
        let mut consider = |s: f64, e: f64, w: f32| {
            if w > 0.0 && best.is_none_or(|(_, _, bw)| w > bw) {
                best = Some((s, e, w));
            }
        };
        for lo in 0..BUCKETS {
            let start = bucket_lo(lo).max(min_start);
            let b_end = bucket_hi(lo).min(max_end);
            if b_end <= start {
                if bucket_lo(lo) > max_end {
                    break;
                }
                continue;
            }
            let share = (b_end - start) / (bucket_hi(lo) - bucket_lo(lo));
            if b_end - start > width {
                // Too wide: a window of `width` in the part of the bucket that is allowed.
                let mid = bucket_mid(lo).clamp(start + width / 2.0, b_end - width / 2.0);
                let frac = width / (bucket_hi(lo) - bucket_lo(lo));
                consider(
                    mid - width / 2.0,
                    mid + width / 2.0,
                    self.counts[lo] * frac as f32,
                );
                continue;
            }
            let mut w = self.counts[lo] * share as f32;
            consider(start, b_end, w);
            for hi in lo + 1..BUCKETS {
                let end = bucket_hi(hi);
                if end - start > width || end > max_end {
                    break;
                }
                w += self.counts[hi];
                consider(start, end, w);
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_follow_the_half_octave_edges() {
        // The logarithm's answer, away from the edges, and the edges themselves.
        for i in 0..4000 {
            let secs = 1.0 + f64::from(i) * 0.37 * f64::from(i % 97 + 1);
            let log = ((2.0 * secs.log2()).floor() as i64 + 1).clamp(1, BUCKETS as i64 - 1);
            assert_eq!(bucket_of(secs), log as usize, "{secs}");
        }
        for b in 1..BUCKETS - 1 {
            assert_eq!(bucket_of(bucket_lo(b)), b, "lower edge of {b}");
            assert_eq!(
                bucket_of(bucket_hi(b) * (1.0 - 1e-12)),
                b,
                "below the upper edge of {b}"
            );
        }
        assert_eq!(bucket_of(0.5), 0);
        assert_eq!(bucket_of(f64::NAN), 0);
        assert_eq!(bucket_of(f64::INFINITY), BUCKETS - 1);
        assert_eq!(bucket_of(1e300), BUCKETS - 1);
    }

    #[test]
    fn buckets_are_half_octaves() {
        assert_eq!(bucket_of(0.2), 0);
        assert_eq!(bucket_of(1.0), 1);
        assert_eq!(bucket_of(1.5), 2);
        assert_eq!(bucket_of(2.0), 3);
        assert_eq!(bucket_of(1e30), BUCKETS - 1);
        for b in 1..BUCKETS - 1 {
            assert_eq!(bucket_of(bucket_mid(b)), b);
        }
    }

    #[test]
    fn quantiles_and_densest_window() {
        let mut h = LogHist::default();
        for _ in 0..3 {
            h.add(10.0, 0.0);
        }
        h.add(1000.0, 0.0);
        let med = h.quantile(0.5).unwrap_or(0.0);
        assert_eq!(bucket_of(med), bucket_of(10.0));
        // A 100 s window holds the three 10 s gaps, not the 1000 s one.
        let (s, e, w) = h.densest_window(100.0, 0.0, 1e9).unwrap_or_default();
        assert!(s <= 10.0 && e >= 10.0 && e - s <= 100.0);
        assert_eq!(w, 3.0);
        // Forced to start after 100 s, it finds the 1000 s gap.
        // Its bucket is wider than 100 s, so it gets the covered share of the weight.
        let (s, e, w) = h.densest_window(100.0, 100.0, 1e9).unwrap_or_default();
        let b = bucket_of(1000.0);
        assert!(s >= bucket_lo(b) && e <= bucket_hi(b) && (e - s - 100.0).abs() < 1e-6);
        let share = 100.0 / (bucket_hi(b) - bucket_lo(b));
        assert!((f64::from(w) - share).abs() < 1e-4, "{w} {share}");
        // Decay halves once past the cap.
        let mut d = LogHist::default();
        for _ in 0..5 {
            d.add(1.0, 4.0);
        }
        assert_eq!(d.total(), 2.5);
    }
}
