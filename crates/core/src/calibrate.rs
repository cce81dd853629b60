//! Calibration of the top-1 confidence ([`TopCalibration`]): Platt scaling of the most likely
//! type's probability, fitted on validation rows, because the top-1 confidence is what `ece`
//! judges and what the prefetch threshold compares against.
//!
//! The map is `c' = σ(a · logit(c) + b)`; the other probabilities are scaled by
//! `(1 − c') / (1 − c)` so that the distribution still sums to what it did, and `c'` is kept
//! at least as large as the runner-up so the ranking never changes.

use serde::{Deserialize, Serialize};

/// Confidences are clamped into `[EPS, 1 − EPS]` before taking logits.
const EPS: f64 = 1e-6;

/// Platt scaling of the top-1 confidence. [`TopCalibration::IDENTITY`] changes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TopCalibration {
    /// Slope on the logit of the confidence.
    pub a: f64,
    /// Offset on the logit of the confidence.
    pub b: f64,
}

impl Default for TopCalibration {
    fn default() -> Self {
        Self::IDENTITY
    }
}

fn logit(c: f64) -> f64 {
    let c = c.clamp(EPS, 1.0 - EPS);
    (c / (1.0 - c)).ln()
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Expected calibration error of `(confidence, correct)` rows over 10 equal-width bins.
pub fn ece(rows: &[(f64, bool)]) -> f64 {
    let mut bins = [(0usize, 0usize, 0.0f64); 10];
    for &(c, hit) in rows {
        let c = if c.is_nan() { 0.0 } else { c.clamp(0.0, 1.0) };
        let b = ((c * 10.0) as usize).min(9);
        bins[b].0 += 1;
        bins[b].1 += usize::from(hit);
        bins[b].2 += c;
    }
    let n = rows.len().max(1) as f64;
    bins.iter()
        .map(|&(_, k, sum)| (k as f64 - sum).abs() / n)
        .sum()
}

impl TopCalibration {
    /// The map that changes nothing.
    pub const IDENTITY: TopCalibration = TopCalibration { a: 1.0, b: 0.0 };

    /// Whether the map is usable: a positive finite slope and a finite offset.
    pub fn is_valid(&self) -> bool {
        self.a.is_finite() && self.a > 0.0 && self.b.is_finite()
    }

    /// Fits `a` and `b` by Newton's method on the binary cross entropy of the top-1 rows
    /// `(confidence, correct)`, with Platt's smoothed targets and a weak pull towards the
    /// identity. Fewer than 20 rows, or all right or all wrong, give the identity.
    pub fn fit(rows: &[(f64, bool)]) -> TopCalibration {
        let pos = rows.iter().filter(|r| r.1).count();
        let neg = rows.len() - pos;
        if rows.len() < 20 || pos == 0 || neg == 0 {
            return Self::IDENTITY;
        }
        let t_pos = (pos as f64 + 1.0) / (pos as f64 + 2.0);
        let t_neg = 1.0 / (neg as f64 + 2.0);
        let xs: Vec<(f64, f64)> = rows
            .iter()
            .map(|&(c, hit)| (logit(c), if hit { t_pos } else { t_neg }))
            .collect();
        let lambda = 1e-3 * rows.len() as f64;
        let (mut a, mut b) = (1.0f64, 0.0f64);
        for _ in 0..50 {
            let (mut ga, mut gb) = (lambda * (a - 1.0), lambda * b);
            let (mut haa, mut hab, mut hbb) = (lambda, 0.0, lambda);
            for &(x, t) in &xs {
                let p = sigmoid(a * x + b);
                let d = p - t;
                ga += d * x;
                gb += d;
                let w = (p * (1.0 - p)).max(1e-12);
                haa += w * x * x;
                hab += w * x;
                hbb += w;
            }
            let det = haa * hbb - hab * hab;
            if !(det.is_finite() && det > 1e-12) {
                break;
            }
            let da = (hbb * ga - hab * gb) / det;
            let db = (haa * gb - hab * ga) / det;
            a -= da;
            b -= db;
            if da.abs() + db.abs() < 1e-9 {
                break;
            }
        }
        if a.is_finite() && b.is_finite() && a > 0.0 {
            TopCalibration { a, b }
        } else {
            Self::IDENTITY
        }
    }

    /// [`TopCalibration::fit`] on all `rows` (in time order) if a fit on their earlier half
    /// also lowers the calibration error of their later half, else the identity: a map fitted
    /// to one period alone is not carried forward.
    pub fn fit_if_it_carries(rows: &[(f64, bool)]) -> TopCalibration {
        let half = rows.len() / 2;
        let early = TopCalibration::fit(&rows[..half]);
        let later: Vec<(f64, bool)> = rows[half..]
            .iter()
            .map(|&(c, h)| (early.map(c), h))
            .collect();
        if ece(&later) < ece(&rows[half..]) {
            TopCalibration::fit(rows)
        } else {
            TopCalibration::IDENTITY
        }
    }

    /// Whether this is the identity.
    pub fn is_identity(&self) -> bool {
        *self == Self::IDENTITY
    }

    /// The calibrated confidence of a top-1 probability `c`.
    pub fn map(&self, c: f64) -> f64 {
        if self.is_identity() {
            return c;
        }
        sigmoid(self.a * logit(c) + self.b)
    }

    /// Recalibrates probabilities whose total is `total` (≤ 1): the largest, at `top`, gets the
    /// calibrated confidence, the rest are scaled to keep the total, and the largest stays the
    /// largest (ties allowed). Returns the factor the others were scaled by.
    pub fn apply(&self, probs: &mut [f32], top: usize) -> f32 {
        if self.is_identity() || top >= probs.len() {
            return 1.0;
        }
        let total: f64 = probs.iter().map(|&p| f64::from(p)).sum();
        let total = total.min(1.0);
        let c = f64::from(probs[top]);
        let rest = (total - c).max(0.0);
        let runner_up = probs
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != top)
            .map(|(_, &p)| f64::from(p))
            .fold(0.0f64, f64::max);
        let mut new_c = self.map(c).min(total);
        if rest > 0.0 && runner_up > 0.0 {
            // keep new_c >= runner_up · (total − new_c) / rest
            let floor = runner_up * total / (rest + runner_up);
            new_c = new_c.max(floor);
        }
        let scale = if rest > 0.0 {
            ((total - new_c) / rest) as f32
        } else {
            1.0
        };
        for (i, p) in probs.iter_mut().enumerate() {
            if i == top {
                *p = new_c as f32;
            } else {
                *p *= scale;
            }
        }
        scale
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fitting_fixes_overconfidence() {
        // confidence 0.9, right 60% of the time; confidence 0.5, right 30%
        let mut rows = Vec::new();
        for i in 0..1000 {
            rows.push((0.9, i % 10 < 6));
            rows.push((0.5, i % 10 < 3));
        }
        let cal = TopCalibration::fit(&rows);
        let mapped: Vec<(f64, bool)> = rows.iter().map(|&(c, h)| (cal.map(c), h)).collect();
        assert!(ece(&rows) > 0.2, "{}", ece(&rows));
        assert!(ece(&mapped) < 0.02, "{cal:?}: {}", ece(&mapped));
        assert!(cal.map(0.9) > cal.map(0.5));
    }

    #[test]
    fn calibrated_rows_stay_nearly_unchanged() {
        let mut rows = Vec::new();
        for i in 0..1000 {
            rows.push((0.8, i % 10 < 8));
            rows.push((0.4, i % 10 < 4));
        }
        let cal = TopCalibration::fit(&rows);
        assert!((cal.map(0.8) - 0.8).abs() < 0.02, "{cal:?}");
        assert!((cal.map(0.4) - 0.4).abs() < 0.02, "{cal:?}");
    }

    #[test]
    fn applying_keeps_the_ranking_and_the_total() {
        let cal = TopCalibration { a: 1.0, b: -3.0 };
        let mut p = vec![0.2f32, 0.5, 0.3];
        cal.apply(&mut p, 1);
        let total: f32 = p.iter().sum();
        assert!((total - 1.0).abs() < 1e-5, "{p:?}");
        assert!(p[1] >= p[0] && p[1] >= p[2] - 1e-6, "{p:?}");
        assert!(p[1] < 0.5, "{p:?}");
        let mut q = vec![0.9f32, 0.05];
        TopCalibration::IDENTITY.apply(&mut q, 0);
        assert_eq!(q, vec![0.9, 0.05]);
    }
}
