//! Online calibration of the top-1 next-type probability, by probability bin, context level and
//! class.

use super::RelationalModel;

/// Calibration bins of the top-1 next-type probability.
pub(super) const CAL_BINS: usize = 20;

/// Flag of the context levels used (as [`mixture`] returns them): the forecast follows the
/// entity's first event. Such forecasts are calibrated apart from the others.
///
/// [`mixture`]: super::context::mixture
pub(super) const FIRST_EVENT: usize = 128;

/// Flag of the context levels used: the entity has touched an event type the model had not
/// learned when it was touched (new to the model in training, unknown to it when tracked).
/// Such forecasts are calibrated apart from the others: a process that has just shown
/// behaviour the model never learned tends to go on showing it, so the model's counts are
/// worth less there (a log whose later cases bring new activities).
pub(super) const NOVEL: usize = 64;

/// An entity counts as novel for this many of its events after touching a novel type, so
/// that a case stays novel while it runs but a long-lived entity (a resource, a product) does
/// not stay novel for having been touched when the stream began (`docs/tuning.md`).
pub(super) const NOVEL_SPAN: u8 = 64;

/// Calibration classes: plain or after an entity's first event, each without or with a
/// novel type.
pub(super) const CAL_CLASSES: usize = 4;

/// The calibration class of forecasts made from `used` context levels (with [`FIRST_EVENT`]
/// and [`NOVEL`]).
pub(super) fn cal_class(used: usize) -> usize {
    usize::from(used & FIRST_EVENT != 0) + 2 * usize::from(used & NOVEL != 0)
}

/// The context level of `used`, out of `levels` levels.
pub(super) fn cal_level(used: usize, levels: usize) -> usize {
    (used & !(FIRST_EVENT | NOVEL)).min(levels - 1)
}

/// The calibration cell of a raw top-1 probability `p` made from `used` context levels, out
/// of `levels` levels.
pub(super) fn cal_cell(p: f64, used: usize, levels: usize) -> usize {
    (cal_class(used) * levels + cal_level(used, levels)) * CAL_BINS + cal_bin(p)
}

pub(super) fn cal_bin(p: f64) -> usize {
    ((p * CAL_BINS as f64) as usize).min(CAL_BINS - 1)
}

impl RelationalModel {
    /// The calibrated top-1 probability: the observed hit rate of earlier top-1 predictions
    /// with a similar raw probability made from as many context levels, shrunk towards the
    /// pooled rate of the probability bin, which is shrunk towards the raw probability.
    ///
    /// Forecasts after a novel type are calibrated on such forecasts alone (first event or
    /// not), unless the novelty discount is off; then all forecasts with the same first-event
    /// flag are pooled, novel or not.
    pub(super) fn calibrate(&self, p: f64, used: usize) -> f64 {
        self.calibrate_as(p, used, !self.no_novelty_discount)
    }

    /// [`RelationalModel::calibrate`], with the novelty discount on or off.
    pub(super) fn calibrate_as(&self, p: f64, used: usize, discount: bool) -> f64 {
        let levels = self.cfg.contexts.len() + 1;
        if self.s.cal.len() != CAL_CLASSES * CAL_BINS * levels {
            return p;
        }
        let (b, level) = (cal_bin(p), cal_level(used, levels));
        let first = cal_class(used & !NOVEL);
        let (own, pooled) = ([first], [first, first + 2]);
        let classes: &[usize] = match (discount, used & NOVEL != 0) {
            (true, true) => &[2, 3],
            (true, false) => &own,
            (false, _) => &pooled,
        };
        let (mut nb, mut kb, mut n, mut k) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
        for &class in classes {
            for l in 0..levels {
                let (cn, ck) = self.s.cal[(class * levels + l) * CAL_BINS + b];
                nb += f64::from(cn);
                kb += f64::from(ck);
                if l == level {
                    n += f64::from(cn);
                    k += f64::from(ck);
                }
            }
        }
        let pooled = (kb + 2.0 * p) / (nb + 2.0);
        (k + 5.0 * pooled) / (n + 5.0)
    }
}
