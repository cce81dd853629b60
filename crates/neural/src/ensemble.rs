//! [`EnsembleModel`]: the neural next-type distribution mixed with an online model's
//! (`p = w · neural + (1 − w) · online`), with entities from the online model.
//!
//! The weight `w` is chosen on validation data when the network is trained: a fresh online
//! model learns the same training cases the network trains on, then both predict the held-out
//! validation cases (tracked, and scored as `tax2017` scores test cases). A mix is used only if
//! the most accurate `w` in 0, 0.05, …, 1 beats the online model alone (`w = 0`) by more than
//! [`SIGNIFICANCE_Z`] standard errors of the paired gain; then, by the one-standard-error
//! rule, the smallest `w` within one standard error of the best that also clears that margin
//! is taken ([`choose_weight`]): the closer to the online model, the better the mix holds up
//! when later cases drift from the validation cases. The mixed top-1 confidence is recalibrated
//! ([`TopCalibration`], Platt scaling) on the same validation rows only if a fit on their
//! earlier half also lowers the calibration error on the later half; both parts are calibrated
//! on their own already.

use std::collections::HashMap;
use std::fmt;

use prescient_core::{Event, Forecast, NextEvent, Observe, OnlineModel};
use smol_str::SmolStr;

use crate::calibrate::TopCalibration;
use crate::learn::NeuralLearner;
use crate::model::{EnsembleMix, NeuralModel, NextTypeDistribution};
use crate::online::NeuralPredictor;
use crate::train::validation_cases;

/// Makes fresh online models, for choosing the weight.
pub type OnlineFactory<M> = Box<dyn Fn() -> M + Send>;

/// The neural and an online model, mixed by a weight chosen on validation data.
pub struct EnsembleModel<M> {
    neural: NeuralLearner,
    online: M,
    /// Absent when the mix was fixed up front ([`EnsembleModel::served`]).
    factory: Option<OnlineFactory<M>>,
    weight: Option<f32>,
    validation: Option<(f64, usize)>,
    calibration: TopCalibration,
    choice: Option<WeightChoice>,
    /// Take the mix from the served model's artifact when it has one (so that a model swapped
    /// in brings its own mix).
    follow_mix: bool,
}

impl<M: OnlineModel> fmt::Debug for EnsembleModel<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnsembleModel")
            .field("neural", &self.neural)
            .field("online", &self.online)
            .field("weight", &self.weight)
            .finish_non_exhaustive()
    }
}

/// Mixes a neural distribution and an online forecast's next types; `top_k` most likely first.
pub fn mix(
    neural: Option<&NextTypeDistribution>,
    online: &Forecast,
    weight: f32,
    event: &Event,
    top_k: usize,
) -> Vec<NextEvent> {
    let mut p: HashMap<SmolStr, (f32, prescient_core::Timestamp)> = HashMap::new();
    let neural_f = neural.map(|d| {
        let at = crate::model::after_seconds(event.time, d.expected_seconds);
        (d, at)
    });
    if let Some((d, at)) = neural_f {
        for (t, q) in d.types().iter().zip(&d.probabilities) {
            p.insert(t.clone(), (weight * q, at));
        }
    }
    let w_online = if neural_f.is_some() {
        1.0 - weight
    } else {
        1.0
    };
    for n in &online.next {
        let e = p
            .entry(n.event_type.clone())
            .or_insert((0.0, n.expected_at));
        e.0 += w_online * n.probability;
    }
    let mut out: Vec<NextEvent> = p
        .into_iter()
        .map(|(event_type, (probability, expected_at))| NextEvent {
            event_type,
            probability,
            expected_at,
        })
        .collect();
    out.sort_by(|a, b| {
        b.probability
            .total_cmp(&a.probability)
            .then_with(|| a.event_type.cmp(&b.event_type))
    });
    out.truncate(top_k);
    out
}

/// Every next type of the mix, most likely first; the network's distribution alone when the
/// online model has nothing to say, and the online model's forecast as it is at weight 0.
fn combine(
    neural: Option<&NextTypeDistribution>,
    online: &Forecast,
    weight: f32,
    event: &Event,
) -> Vec<NextEvent> {
    match neural {
        Some(d) if online.next.is_empty() => {
            let expected_at = crate::model::after_seconds(event.time, d.expected_seconds);
            d.top(usize::MAX)
                .into_iter()
                .map(|(event_type, probability)| NextEvent {
                    event_type,
                    probability,
                    expected_at,
                })
                .collect()
        }
        // Weight 0 is the online model alone, in its own order (a mix would re-break its ties).
        _ if weight <= 0.0 => online.next.clone(),
        _ => mix(neural, online, weight, event, usize::MAX),
    }
}

impl<M: OnlineModel> EnsembleModel<M> {
    /// An ensemble of `neural` (trained when first asked to predict) and `online`; `factory`
    /// makes fresh online models configured like `online`, for choosing the weight.
    pub fn new(neural: NeuralLearner, online: M, factory: OnlineFactory<M>) -> Self {
        EnsembleModel {
            neural,
            online,
            factory: Some(factory),
            weight: None,
            validation: None,
            calibration: TopCalibration::IDENTITY,
            choice: None,
            follow_mix: false,
        }
    }

    /// An ensemble of a trained network, served by `neural` (which may follow a
    /// [`crate::ModelSlot`]), and `online`, mixed as `mix` says. With a weight of 1 the next
    /// types and their times are the network's alone, and the entities still the online
    /// model's.
    pub fn served(neural: NeuralPredictor, online: M, mix: EnsembleMix) -> Self {
        EnsembleModel {
            neural: NeuralLearner::serving(neural),
            online,
            factory: None,
            weight: Some(mix.weight.clamp(0.0, 1.0)),
            validation: Some((mix.validation_accuracy, mix.rows)),
            calibration: mix.calibration,
            choice: None,
            follow_mix: false,
        }
    }

    /// Like [`EnsembleModel::served`], but mixed as the served model's artifact says
    /// ([`NeuralModel::ensemble`]) whenever it says anything, `fallback` otherwise: a model
    /// swapped into the predictor's [`crate::ModelSlot`] brings its own weight and calibration.
    pub fn served_following(neural: NeuralPredictor, online: M, fallback: EnsembleMix) -> Self {
        EnsembleModel {
            follow_mix: true,
            ..Self::served(neural, online, fallback)
        }
    }

    /// The neural weight, once chosen.
    pub fn weight(&self) -> Option<f32> {
        self.weight
    }

    /// Validation accuracy of the chosen mix and the number of validation rows, once chosen.
    pub fn validation(&self) -> Option<(f64, usize)> {
        self.validation
    }

    /// The neural part.
    pub fn neural(&self) -> &NeuralLearner {
        &self.neural
    }

    /// The calibration of the mixed top-1 confidence, once fitted.
    pub fn calibration(&self) -> Option<TopCalibration> {
        self.weight.map(|_| self.calibration)
    }

    /// What the weight choice saw on the validation rows, once made.
    pub fn choice(&self) -> Option<&WeightChoice> {
        self.choice.as_ref()
    }

    /// Trains the network and chooses the weight, unless done.
    fn ensure_ready(&mut self) {
        if self.weight.is_some() {
            return;
        }
        let cases = self.neural.cases().to_vec();
        let share = self.neural.config().validation_share;
        let trained = self.neural.train_now().is_ok();
        let (Some(model), Some(factory), true) =
            (self.neural.model().cloned(), self.factory.as_ref(), trained)
        else {
            self.weight = Some(0.0);
            return;
        };
        let (choice, mix) = fit_mix(&model, &cases, share, factory());
        self.calibration = mix.calibration;
        self.weight = Some(mix.weight);
        self.validation = Some((choice.accuracy, mix.rows));
        self.choice = Some(choice);
    }
}

/// Chooses how to mix `model` with an online model, on the validation part of `cases` (the
/// last `validation_share` of the non-empty cases, as [`NeuralModel::train`] splits them):
/// `fresh`, a new online model, learns the training cases, then both predict the validation
/// cases, scored as `tax2017` scores test cases (prefixes of 2 up to the longest training
/// case, end of case never a target). The weight is [`choose_weight`]'s, with
/// [`SIGNIFICANCE_Z`]; the mix's top-1 confidence is then recalibrated on the same rows.
pub fn fit_mix<M: OnlineModel>(
    model: &NeuralModel,
    cases: &[Vec<Event>],
    validation_share: f64,
    mut fresh: M,
) -> (WeightChoice, EnsembleMix) {
    let cases: Vec<&Vec<Event>> = cases.iter().filter(|c| !c.is_empty()).collect();
    let n_val = validation_cases(cases.len(), validation_share);
    let (train, val) = cases.split_at(cases.len() - n_val);
    fresh.set_novelty_discount(false);
    for e in train.iter().copied().flatten() {
        fresh.observe(e, Observe::Learn);
    }
    let longest = train.iter().map(|c| c.len()).max().unwrap_or(0);
    let mut contexts: Vec<&[Event]> = Vec::new();
    let mut online = Vec::new();
    let mut targets = Vec::new();
    for c in val {
        let kmax = c.len().saturating_sub(1).min(longest);
        for k in 1..=kmax {
            fresh.observe(&c[k - 1], Observe::Track);
            if k >= 2 {
                online.push(fresh.forecast(&c[k - 1]));
                contexts.push(&c[..k]);
                targets.push(&c[k]);
            }
        }
    }
    let neural = model.predict_batch(&contexts).unwrap_or_default();
    let weights: Vec<f32> = (0..=WEIGHT_STEPS)
        .map(|s| s as f32 / WEIGHT_STEPS as f32)
        .collect();
    let mut hits = Vec::with_capacity(weights.len());
    let mut losses = Vec::with_capacity(weights.len());
    let mut tops = Vec::with_capacity(weights.len());
    for &w in &weights {
        let (mut h, mut l, mut t) = (Vec::new(), Vec::new(), Vec::new());
        for (i, target) in targets.iter().enumerate() {
            let next = combine(neural.get(i), &online[i], w, target);
            let hit = next
                .first()
                .is_some_and(|n| n.event_type == target.event_type);
            let q = next
                .iter()
                .find(|n| n.event_type == target.event_type)
                .map_or(0.0, |n| f64::from(n.probability));
            h.push(hit);
            l.push(-q.max(1e-4).ln());
            t.push((next.first().map_or(0.0, |n| f64::from(n.probability)), hit));
        }
        hits.push(h);
        losses.push(l);
        tops.push(t);
    }
    let choice = choose_weight(&weights, &hits, &losses, SIGNIFICANCE_Z);
    let rows = &tops[choice.index];
    // Both parts are calibrated on their own; recalibrating the mix is kept only if a fit on
    // the earlier half of the validation rows also helps on the later half (rows come in case
    // order), so that a fit to the validation period alone is not carried forward.
    let calibration = TopCalibration::fit_if_it_carries(rows);
    let calibrated: Vec<(f64, bool)> = rows.iter().map(|&(c, h)| (calibration.map(c), h)).collect();
    tracing::info!(
        message = "Ensemble weight chosen.",
        weight = choice.weight,
        accuracy = choice.accuracy,
        best_weight = choice.best_weight,
        best_accuracy = choice.best_accuracy,
        online_accuracy = choice.baseline_accuracy,
        gain_se = choice.gain_se,
        rows = targets.len(),
        ece_before = crate::calibrate::ece(rows),
        ece_after = crate::calibrate::ece(&calibrated),
        a = calibration.a,
        b = calibration.b,
    );
    let mix = EnsembleMix {
        weight: choice.weight,
        calibration,
        validation_accuracy: choice.accuracy,
        online_accuracy: choice.baseline_accuracy,
        rows: targets.len(),
    };
    (choice, mix)
}

/// The weight grid has this many steps between 0 and 1.
const WEIGHT_STEPS: usize = 20;

/// How many standard errors a mix must gain over the online model on the validation rows.
pub const SIGNIFICANCE_Z: f64 = 2.0;

/// What [`choose_weight`] decided and why.
#[derive(Debug, Clone, PartialEq)]
pub struct WeightChoice {
    /// The chosen neural weight.
    pub weight: f32,
    /// Its index among the candidates.
    pub index: usize,
    /// Validation accuracy of the chosen weight.
    pub accuracy: f64,
    /// The most accurate weight on validation (lowest log loss among ties).
    pub best_weight: f32,
    /// Its validation accuracy.
    pub best_accuracy: f64,
    /// Validation accuracy of the online model alone (weight 0).
    pub baseline_accuracy: f64,
    /// Standard error of the paired accuracy gain of the best weight over weight 0.
    pub gain_se: f64,
}

/// Chooses the neural weight from validation rows: `hits[j][i]` and `losses[j][i]` say whether
/// candidate `weights[j]` ranked the target of row `i` first, and its log loss there. A mix is
/// taken only if the candidate with the best accuracy (then the lowest mean loss) gains over
/// weight 0 (the online model alone, which must be among the candidates) more than `z`
/// standard errors of the paired gain; otherwise weight 0 is. A gain that small could be the
/// luck of the validation cases (the network also chose its epoch on them), and the online
/// model is the safer bet on unseen cases. When a mix is taken, it is the smallest weight
/// that is within one standard error of the best (paired) and itself gains more than `z`
/// standard errors over weight 0.
///
/// # Panics
/// Never; without candidates or rows the choice is weight 0.
pub fn choose_weight(
    weights: &[f32],
    hits: &[Vec<bool>],
    losses: &[Vec<f64>],
    z: f64,
) -> WeightChoice {
    let n = hits.first().map_or(0, Vec::len);
    let accuracy = |j: usize| hits[j].iter().filter(|&&h| h).count() as f64 / n.max(1) as f64;
    let mean_loss =
        |j: usize| losses.get(j).map_or(0.0, |l| l.iter().sum::<f64>()) / n.max(1) as f64;
    let base = weights.iter().position(|&w| w == 0.0);
    let fallback = WeightChoice {
        weight: 0.0,
        index: base.unwrap_or(0),
        accuracy: 0.0,
        best_weight: 0.0,
        best_accuracy: 0.0,
        baseline_accuracy: 0.0,
        gain_se: 0.0,
    };
    let Some(base) = base else {
        return fallback;
    };
    if n == 0 || hits.len() != weights.len() {
        return fallback;
    }
    let mut best = base;
    for j in 0..weights.len() {
        let (a, b) = (accuracy(j), accuracy(best));
        if a > b + 1e-12 || (a >= b - 1e-12 && mean_loss(j) < mean_loss(best)) {
            best = j;
        }
    }
    // Paired gain of candidate `j` over `k`, row by row: mean and standard error.
    let paired = |j: usize, k: usize| {
        let diffs: Vec<f64> = hits[j]
            .iter()
            .zip(&hits[k])
            .map(|(&a, &b)| f64::from(u8::from(a)) - f64::from(u8::from(b)))
            .collect();
        let mean = diffs.iter().sum::<f64>() / n as f64;
        let var = if n > 1 {
            diffs.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (n - 1) as f64
        } else {
            0.0
        };
        (mean, (var / n as f64).sqrt())
    };
    let (mean, se) = paired(best, base);
    let take = best != base && mean > 0.0 && mean > z * se;
    // The one-standard-error rule: of the weights within one standard error of the best, the
    // one closest to the online model, which holds up better when the cases drift away from
    // the validation cases.
    let index = if take {
        let mut order: Vec<usize> = (0..weights.len()).filter(|&j| j != base).collect();
        order.sort_by(|&a, &b| weights[a].total_cmp(&weights[b]));
        order
            .into_iter()
            .find(|&j| {
                let (gain, gain_se) = paired(j, base);
                let (behind, behind_se) = paired(best, j);
                gain > z * gain_se && behind <= behind_se
            })
            .unwrap_or(best)
    } else {
        base
    };
    WeightChoice {
        weight: weights[index],
        index,
        accuracy: accuracy(index),
        best_weight: weights[best],
        best_accuracy: accuracy(best),
        baseline_accuracy: accuracy(base),
        gain_se: se,
    }
}

impl<M: OnlineModel> OnlineModel for EnsembleModel<M> {
    fn name(&self) -> &str {
        "ensemble"
    }

    fn observe(&mut self, event: &Event, mode: Observe) {
        if mode != Observe::Learn {
            self.ensure_ready();
        }
        self.neural.observe(event, mode);
        self.online.observe(event, mode);
    }

    fn forecast(&mut self, event: &Event) -> Forecast {
        self.ensure_ready();
        self.discount_novelty_alone();
        let online = self.online.forecast(event);
        let neural = self.neural.distribution(event);
        self.assemble(event, online, neural.as_ref())
    }

    /// The online model event by event, the network for the whole batch in one pass.
    fn process_batch(&mut self, items: &[(&Event, Observe)]) -> Vec<Forecast> {
        let learning = items.iter().any(|&(_, m)| m == Observe::Learn);
        if (self.weight.is_none() && learning) || self.neural.model().is_none() {
            // Still collecting training cases: event by event, as `observe` decides.
            return prescient_core::process_each(self, items);
        }
        self.ensure_ready();
        self.discount_novelty_alone();
        let online: Vec<Forecast> = items
            .iter()
            .map(|&(e, m)| {
                if m != Observe::Skip {
                    self.online.observe(e, m);
                }
                self.online.forecast(e)
            })
            .collect();
        let neural = self.neural.distributions(items);
        items
            .iter()
            .zip(online)
            .enumerate()
            .map(|(i, (&(e, _), f))| {
                let d = neural.as_ref().and_then(|d| d.get(i));
                self.assemble(e, f, d)
            })
            .collect()
    }

    /// Predictions due by time alone come from the online model only: the network predicts
    /// after events.
    fn forecast_due(&mut self, now: prescient_core::Timestamp) -> Forecast {
        self.online.forecast_due(now)
    }

    fn set_max_age(&mut self, max_age: Option<std::time::Duration>) {
        self.online.set_max_age(max_age);
    }

    fn filled(&mut self, key: &prescient_core::EntityKey, at: prescient_core::Timestamp) {
        self.online.filled(key, at);
    }
}

impl<M: OnlineModel> EnsembleModel<M> {
    /// The neural weight and the calibration of the mix served now.
    fn mix_params(&self) -> (f32, TopCalibration) {
        let own = self
            .neural
            .model()
            .and_then(|m| m.ensemble())
            .filter(|_| self.follow_mix);
        match own {
            Some(mix) => (mix.weight.clamp(0.0, 1.0), mix.calibration),
            None => (self.weight.unwrap_or(0.0), self.calibration),
        }
    }

    /// The online model discounts its confidences after novel types itself only when it
    /// answers alone (weight 0): in a mix its confidences rank types, and the discount it
    /// reports is applied to the recalibrated mix instead: a discounted online part would hand
    /// novel cases to the network, which knows them less, while the discount applied to the
    /// mix keeps the mix calibrated (`docs/tuning.md`).
    fn discount_novelty_alone(&mut self) {
        let (w, _) = self.mix_params();
        self.online.set_novelty_discount(w <= 0.0);
    }

    /// The mixed, recalibrated next types after `event` with the online model's entities.
    fn assemble(
        &self,
        event: &Event,
        online: Forecast,
        neural: Option<&NextTypeDistribution>,
    ) -> Forecast {
        let (w, calibration) = self.mix_params();
        let top_k = self
            .neural
            .model()
            .map_or(self.neural.config().top_k, |m| m.top_k());
        let mut next = combine(neural, &online, w, event);
        let mut probs: Vec<f32> = next.iter().map(|n| n.probability).collect();
        calibration.apply(&mut probs, 0);
        // The online model's novelty discount, which it did not apply itself in a mix (see
        // `discount_novelty_alone`), lowers the mix's top confidence; the others stay below it.
        if w > 0.0
            && let Some(d) = online.novelty_discount
            && let Some((top, rest)) = probs.split_first_mut()
        {
            *top *= d.clamp(0.0, 1.0);
            for p in rest {
                *p = p.min(*top);
            }
        }
        for (n, p) in next.iter_mut().zip(probs) {
            n.probability = p;
        }
        next.truncate(top_k);
        Forecast {
            next,
            entities: online.entities,
            novelty_discount: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows where the online model (weight 0) is right on `base` of every 100, and the mix
    /// (weight 0.5) is right on `mix` of every 100, on different rows where they differ.
    fn rows(n: usize, base: usize, mix: usize) -> (Vec<f32>, Vec<Vec<bool>>, Vec<Vec<f64>>) {
        let h0: Vec<bool> = (0..n).map(|i| i % 100 < base).collect();
        // the mix loses the first 10 of every 100 the online model gets, and gains others
        let h1: Vec<bool> = (0..n)
            .map(|i| {
                let r = i % 100;
                (r >= 10 && r < base) || (r >= base && r < mix + 10)
            })
            .collect();
        let loss = |h: &[bool]| h.iter().map(|&x| if x { 0.5 } else { 2.0 }).collect();
        let l0 = loss(&h0);
        let l1 = loss(&h1);
        (vec![0.0, 0.5], vec![h0, h1], vec![l0, l1])
    }

    #[test]
    fn weight_zero_is_the_online_forecast_as_it_is() {
        let at = prescient_core::Timestamp::from_secs(10);
        let online = Forecast {
            next: ["b", "a", "c"]
                .into_iter()
                .zip([0.4, 0.4, 0.2])
                .map(|(t, p)| NextEvent {
                    event_type: t.into(),
                    probability: p,
                    expected_at: at,
                })
                .collect(),
            entities: Vec::new(),
            novelty_discount: None,
        };
        let e = Event::new("1", "x", prescient_core::Timestamp::from_secs(0));
        let order = |v: Vec<NextEvent>| v.into_iter().map(|n| n.event_type).collect::<Vec<_>>();
        // the online model's tie order survives; a mix re-breaks ties by name
        assert_eq!(order(combine(None, &online, 0.0, &e)), ["b", "a", "c"]);
        assert_eq!(order(combine(None, &online, 0.5, &e)), ["a", "b", "c"]);
    }

    #[test]
    fn a_clear_gain_takes_the_mix() {
        // 50% vs 60% on 2000 rows: the gain is many standard errors
        let (w, h, l) = rows(2000, 50, 60);
        let c = choose_weight(&w, &h, &l, SIGNIFICANCE_Z);
        assert_eq!(c.weight, 0.5, "{c:?}");
        assert!((c.accuracy - 0.6).abs() < 1e-9, "{c:?}");
        assert!((c.baseline_accuracy - 0.5).abs() < 1e-9, "{c:?}");
        assert!(c.gain_se > 0.0);
    }

    #[test]
    fn of_the_mixes_as_good_as_the_best_the_lightest_is_taken() {
        // Of every 100 rows the online model is right on the first 50 and weight 0.5 on the
        // first 60; weight 0.25 on the first 50 and 9 others, and 0.75 on the first 55. The
        // 0.25 mix is one row behind the best, on rows where the two disagree often: within
        // a standard error.
        let n = 1000;
        let h = |f: &dyn Fn(usize) -> bool| (0..n).map(|i| f(i % 100)).collect::<Vec<bool>>();
        let losses = vec![vec![1.0; n]; 4];
        let weights = [0.0, 0.25, 0.5, 0.75];
        let base = h(&|r| r < 50);
        let best = h(&|r| r < 60);
        let third = h(&|r| r < 55);
        let light = h(&|r| r < 50 || (60..69).contains(&r));
        let hits = vec![base.clone(), light, best.clone(), third.clone()];
        let c = choose_weight(&weights, &hits, &losses, SIGNIFICANCE_Z);
        assert_eq!(c.best_weight, 0.5, "{c:?}");
        assert_eq!(c.weight, 0.25, "{c:?}");
        assert!((c.accuracy - 0.59).abs() < 1e-9, "{c:?}");
        // 0.25 far behind the best: the best is taken
        let far = h(&|r| r < 50 || (60..62).contains(&r));
        let c = choose_weight(&weights, &[base, far, best, third], &losses, SIGNIFICANCE_Z);
        assert_eq!(c.weight, 0.5, "{c:?}");
    }

    #[test]
    fn a_gain_within_the_noise_keeps_the_online_model() {
        // 50% vs 51% on 200 rows, with 21% of the rows disagreeing: about one standard error
        let (w, h, l) = rows(200, 50, 51);
        let c = choose_weight(&w, &h, &l, SIGNIFICANCE_Z);
        assert_eq!(c.best_weight, 0.5, "{c:?}");
        assert_eq!(c.weight, 0.0, "{c:?}");
        assert_eq!(c.index, 0);
        assert!((c.accuracy - 0.5).abs() < 1e-9, "{c:?}");
        // with no margin the most accurate mix wins
        let c = choose_weight(&w, &h, &l, 0.0);
        assert_eq!(c.weight, 0.5, "{c:?}");
    }

    #[test]
    fn a_worse_mix_or_no_rows_keeps_the_online_model() {
        let (w, h, l) = rows(2000, 60, 50);
        assert_eq!(choose_weight(&w, &h, &l, SIGNIFICANCE_Z).weight, 0.0);
        let c = choose_weight(&w, &[vec![], vec![]], &[vec![], vec![]], 2.0);
        assert_eq!(c.weight, 0.0);
        // without weight 0 among the candidates there is no baseline: weight 0
        let c = choose_weight(&[0.5], &[vec![true]], &[vec![0.1]], 2.0);
        assert_eq!(c.weight, 0.0);
    }

    #[test]
    fn equal_accuracy_prefers_the_lower_loss_but_needs_a_gain() {
        let h = vec![vec![true, false, true, false]; 2];
        let l = vec![vec![1.0; 4], vec![0.5; 4]];
        let c = choose_weight(&[0.0, 0.3], &h, &l, 0.0);
        assert_eq!(c.best_weight, 0.3);
        // no accuracy gain at all: the online model stays
        assert_eq!(c.weight, 0.0);
    }
}
