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

    /// The reliability table behind [`Calibration::ece`]: every bin that holds a prediction.
    pub fn reliability(&self) -> Vec<ReliabilityBin> {
        self.bins
            .iter()
            .enumerate()
            .filter(|(_, b)| b.0 > 0)
            .map(|(i, &(n, k, sum))| ReliabilityBin {
                lower: i as f64 / ECE_BINS as f64,
                upper: (i + 1) as f64 / ECE_BINS as f64,
                predictions: n,
                mean_confidence: sum / n as f64,
                accuracy: k as f64 / n as f64,
            })
            .collect()
    }
}

/// One confidence bin of a reliability table.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ReliabilityBin {
    /// The bin's lower confidence bound.
    pub lower: f64,
    /// The bin's upper confidence bound.
    pub upper: f64,
    /// Top-1 predictions made with a confidence in the bin.
    pub predictions: u64,
    /// Their mean confidence.
    pub mean_confidence: f64,
    /// The share of them that came true.
    pub accuracy: f64,
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

    #[test]
    fn reliability_lists_the_filled_bins() {
        let mut c = Calibration::default();
        for &(p, ok) in &[(0.25, true), (0.25, false), (0.95, true)] {
            c.add(p, ok);
        }
        let r = c.reliability();
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].predictions, r[0].accuracy), (2, 0.5));
        assert!((r[0].lower - 0.2).abs() < 1e-9 && (r[0].mean_confidence - 0.25).abs() < 1e-6);
        assert_eq!((r[1].predictions, r[1].accuracy), (1, 1.0));
    }
}
