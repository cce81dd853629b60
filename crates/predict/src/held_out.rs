//! [`HeldOutCalibrated`]: an online model whose top-1 confidence is recalibrated on held-out
//! cases when it stops learning.
//!
//! An online model calibrates itself prequentially: each forecast is scored against what the
//! model then learns. That is the right measure while it goes on learning. Frozen after
//! training and asked about later cases it only tracks (the `tax2017` and `pt2021` protocols),
//! it meets drift its own calibration never saw: on `env_permit`, later cases bring activities
//! the training cases never had, and its confidences run about 0.05 above its hit rate.
//!
//! The wrapper keeps the cases the model learns. At the first tracked event it trains a fresh
//! model on the earlier cases, lets it track the last [`HeldOutCalibrated::VALIDATION_SHARE`]
//! of them as held-out cases (scored as `tax2017` scores test cases: prefixes of two events or
//! more), and fits Platt scaling ([`TopCalibration`]) to those rows, kept only if a fit on
//! their earlier half also lowers the calibration error of their later half
//! ([`TopCalibration::fit_if_it_carries`]). The map then applies to every forecast. It is
//! meant for evaluation on held-out cases: it holds every learned event until it fits.

use std::fmt;

use prescient_core::event::cases_in_order;
use prescient_core::{Event, Forecast, Observe, OnlineModel, Timestamp, TopCalibration};

/// Makes fresh models configured like the wrapped one.
pub type Factory<M> = Box<dyn Fn() -> M + Send>;

/// An online model recalibrated on held-out cases once it stops learning. See the module docs.
pub struct HeldOutCalibrated<M> {
    model: M,
    fresh: Factory<M>,
    /// Learned events, until the map is fitted.
    learned: Vec<Event>,
    /// The fitted map, once fitted.
    calibration: Option<TopCalibration>,
    novelty_discount: bool,
}

impl<M> fmt::Debug for HeldOutCalibrated<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeldOutCalibrated")
            .field("learned", &self.learned.len())
            .field("calibration", &self.calibration)
            .finish_non_exhaustive()
    }
}

impl<M: OnlineModel> HeldOutCalibrated<M> {
    /// The share of learned cases (the last ones) held out to fit the map.
    pub const VALIDATION_SHARE: f64 = 0.2;

    /// Fewer held-out rows than this leave the confidences as they are.
    pub const MIN_ROWS: usize = 200;

    /// Wraps `model`; `fresh` makes new models configured like it.
    pub fn new(model: M, fresh: Factory<M>) -> Self {
        HeldOutCalibrated {
            model,
            fresh,
            learned: Vec::new(),
            calibration: None,
            novelty_discount: true,
        }
    }

    /// The fitted map, once the model has tracked an event.
    pub fn calibration(&self) -> Option<TopCalibration> {
        self.calibration
    }

    /// Fits the map on the learned cases and forgets them.
    fn fit(&mut self) -> TopCalibration {
        let learned = std::mem::take(&mut self.learned);
        let rows = self.held_out_rows(&learned);
        let calibration = if rows.len() < Self::MIN_ROWS {
            TopCalibration::IDENTITY
        } else {
            TopCalibration::fit_if_it_carries(&rows)
        };
        tracing::info!(
            message = "Held-out calibration fitted.",
            rows = rows.len(),
            ece_before = prescient_core::calibrate::ece(&rows),
            a = calibration.a,
            b = calibration.b,
        );
        calibration
    }

    /// `(top-1 confidence, right)` of a fresh model that learns the earlier cases of
    /// `learned`, on each prefix of two events or more of the held-out cases.
    fn held_out_rows(&self, learned: &[Event]) -> Vec<(f64, bool)> {
        let cases = cases_in_order(learned);
        let n = cases.len();
        let n_val = ((n as f64 * Self::VALIDATION_SHARE).round() as usize).min(n.saturating_sub(1));
        if n_val == 0 {
            return Vec::new();
        }
        let first_val = n - n_val;
        let mut fresh = (self.fresh)();
        fresh.set_novelty_discount(self.novelty_discount);
        let mut longest = 0;
        let mut training = vec![false; learned.len()];
        for c in &cases[..first_val] {
            longest = longest.max(c.len());
            for &i in c {
                training[i] = true;
            }
        }
        for (e, _) in learned.iter().zip(&training).filter(|(_, t)| **t) {
            fresh.observe(e, Observe::Learn);
        }
        let mut rows = Vec::new();
        for c in &cases[first_val..] {
            let kmax = c.len().saturating_sub(1).min(longest);
            for k in 1..=kmax {
                let e = &learned[c[k - 1]];
                fresh.observe(e, Observe::Track);
                if k >= 2 {
                    let target = &learned[c[k]].event_type;
                    let f = fresh.forecast(e);
                    rows.push(f.next.first().map_or((0.0, false), |t| {
                        (f64::from(t.probability), t.event_type == *target)
                    }));
                }
            }
        }
        rows
    }
}

impl<M: OnlineModel> OnlineModel for HeldOutCalibrated<M> {
    fn name(&self) -> &str {
        self.model.name()
    }

    fn observe(&mut self, event: &Event, mode: Observe) {
        match mode {
            Observe::Learn if self.calibration.is_none() => self.learned.push(event.clone()),
            Observe::Track if self.calibration.is_none() => self.calibration = Some(self.fit()),
            _ => {}
        }
        self.model.observe(event, mode);
    }

    fn forecast(&mut self, event: &Event) -> Forecast {
        let mut f = self.model.forecast(event);
        if let Some(cal) = self.calibration.filter(|c| !c.is_identity()) {
            let mut probs: Vec<f32> = f.next.iter().map(|n| n.probability).collect();
            cal.apply(&mut probs, 0);
            for (n, p) in f.next.iter_mut().zip(probs) {
                n.probability = p;
            }
        }
        f
    }

    fn forecast_due(&mut self, now: Timestamp) -> Forecast {
        self.model.forecast_due(now)
    }

    fn set_max_age(&mut self, max_age: Option<std::time::Duration>) {
        self.model.set_max_age(max_age);
    }

    fn filled(&mut self, key: &prescient_core::EntityKey, at: Timestamp) {
        self.model.filled(key, at);
    }

    fn set_novelty_discount(&mut self, on: bool) {
        self.novelty_discount = on;
        self.model.set_novelty_discount(on);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{RelationalConfig, RelationalModel};
    use prescient_core::EntityRef;

    fn wrapped() -> HeldOutCalibrated<RelationalModel> {
        HeldOutCalibrated::new(
            RelationalModel::new(RelationalConfig::default()),
            Box::new(|| RelationalModel::new(RelationalConfig::default())),
        )
    }

    /// Case `i` of `n`: `a b X Y e`, 10 s apart, where `X` is `d` (else `c`) in a share of
    /// cases that grows from 0 to 0.9 through the stream, and `Y` is `g` (else `f`) in a share
    /// that grows from 0 to 0.5: drift that goes on.
    fn case(i: usize, n: usize) -> Vec<Event> {
        let drifted = |salt: usize, to: f64| {
            ((i * 7919 + salt) % 1000) as f64 / 1000.0 < to * i as f64 / n as f64
        };
        let x = if drifted(0, 0.9) { "d" } else { "c" };
        let y = if drifted(500, 0.5) { "g" } else { "f" };
        ["a", "b", x, y, "e"]
            .iter()
            .enumerate()
            .map(|(k, ty)| {
                let t = Timestamp::from_secs((i * 1000 + k * 10) as i64);
                Event::new(format!("{i}-{k}"), *ty, t)
                    .with_entity(EntityRef::new("case", i.to_string()))
            })
            .collect()
    }

    /// Learns `train` cases, then tracks `test` more and scores them as `tax2017` does:
    /// `(top-1 confidence, right)` per prefix of two events or more.
    fn run<M: OnlineModel>(m: &mut M, train: usize, test: usize) -> Vec<(f64, bool)> {
        let n = train + test;
        for i in 0..train {
            for e in case(i, n) {
                m.observe(&e, Observe::Learn);
            }
        }
        let mut rows = Vec::new();
        for i in train..n {
            let c = case(i, n);
            for k in 1..c.len() {
                m.observe(&c[k - 1], Observe::Track);
                if k >= 2 {
                    let f = m.forecast(&c[k - 1]);
                    let top = f.top().expect("a forecast");
                    rows.push((
                        f64::from(top.probability),
                        top.event_type == c[k].event_type,
                    ));
                }
            }
        }
        rows
    }

    #[test]
    fn drift_seen_in_held_out_cases_lowers_overconfidence() {
        let mut plain = RelationalModel::new(RelationalConfig::default());
        let mut held = wrapped();
        let before = run(&mut plain, 2000, 1000);
        let after = run(&mut held, 2000, 1000);
        let cal = held
            .calibration()
            .expect("fitted at the first tracked event");
        assert!(!cal.is_identity(), "{cal:?}");
        let hits = |rows: &[(f64, bool)]| rows.iter().filter(|r| r.1).count();
        assert_eq!(hits(&before), hits(&after), "the ranking never changes");
        let (e0, e1) = (
            prescient_core::calibrate::ece(&before),
            prescient_core::calibrate::ece(&after),
        );
        assert!(e1 < e0 - 0.005, "ece {e0} to {e1}");
    }

    #[test]
    fn too_few_held_out_rows_leave_confidences_alone() {
        let mut plain = RelationalModel::new(RelationalConfig::default());
        let mut held = wrapped();
        let before = run(&mut plain, 50, 10);
        let after = run(&mut held, 50, 10);
        assert_eq!(held.calibration(), Some(TopCalibration::IDENTITY));
        assert_eq!(before, after);
        assert!(held.learned.is_empty(), "the learned cases are let go");
    }
}
