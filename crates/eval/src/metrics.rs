//! Calibration: the expected calibration error of top-1 confidences.

/// The number of equal-width confidence bins of [`Calibration::ece`].
pub const ECE_BINS: usize = 10;

/// Confidence and outcome counts in [`ECE_BINS`] equal-width bins over `[0, 1]`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Calibration {
    /// Per bin: predictions, correct ones, and the sum of their confidences.
    bins: [(u64, u64, f64); ECE_BINS],
}

impl Calibration {
    /// Records one prediction made with `confidence` that was `correct` or not.
    /// Confidences outside `[0, 1]` (or NaN) are clamped into it.
    pub fn add(&mut self, confidence: f32, correct: bool) {
        let c = if confidence.is_nan() {
            0.0
        } else {
            f64::from(confidence).clamp(0.0, 1.0)
        };
        let b = ((c * ECE_BINS as f64) as usize).min(ECE_BINS - 1);
        self.bins[b].0 += 1;
        self.bins[b].1 += u64::from(correct);
        self.bins[b].2 += c;
    }

    /// The expected calibration error: the mean over bins, weighted by their share of
    /// predictions, of |accuracy − mean confidence|. Zero when nothing was recorded.
    pub fn ece(&self) -> f64 {
        let total: u64 = self.bins.iter().map(|b| b.0).sum();
        if total == 0 {
            return 0.0;
        }
        self.bins
            .iter()
            .filter(|b| b.0 > 0)
            .map(|&(n, k, sum)| {
                let n_f = n as f64;
                (n_f / total as f64) * (k as f64 / n_f - sum / n_f).abs()
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(preds: &[(f32, bool)], expect: f64) {
        let mut c = Calibration::default();
        for &(p, ok) in preds {
            c.add(p, ok);
        }
        assert!((c.ece() - expect).abs() < 1e-6, "got {}", c.ece());
    }

    #[test]
    fn ece_by_hand() {
        check(&[], 0.0);
        // Perfectly calibrated: 0.5 right half the time.
        check(&[(0.5, true), (0.5, false)], 0.0);
        // One bin, confidence 0.9, accuracy 0.5: |0.5 - 0.9| = 0.4.
        check(&[(0.9, true), (0.9, false)], 0.4);
        // Two bins of two: bin 0.2 all wrong (0.2), bin 1.0 all right (0.0): mean 0.1.
        check(&[(0.2, false), (0.2, false), (1.0, true), (1.0, true)], 0.1);
        // Out of range is clamped.
        check(&[(1.5, true), (f32::NAN, false)], 0.0);
    }
}
