//! [`EnsembleModel`]: the neural next-type distribution mixed with an online model's
//! (`p = w · neural + (1 − w) · online`), with entities from the online model.
//!
//! The weight `w` is chosen on validation data when the network is trained: a fresh online
//! model learns the same training cases the network trains on, then both predict the held-out
//! validation cases (tracked, as test cases are), and the `w` in 0, 0.05, …, 1 with the best
//! accuracy (then the lowest log loss) wins.

use std::collections::HashMap;
use std::fmt;

use prescient_core::{Event, Forecast, NextEvent, Observe, OnlineModel};
use smol_str::SmolStr;

use crate::learn::NeuralLearner;
use crate::model::NextTypeDistribution;
use crate::online::forecast;
use crate::train::validation_cases;

/// Makes fresh online models, for choosing the weight.
pub type OnlineFactory<M> = Box<dyn Fn() -> M + Send>;

/// The neural and an online model, mixed by a weight chosen on validation data.
pub struct EnsembleModel<M> {
    neural: NeuralLearner,
    online: M,
    factory: OnlineFactory<M>,
    weight: Option<f32>,
    validation: Option<(f64, usize)>,
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
        let at = event.time.plus(std::time::Duration::from_secs_f64(
            d.expected_seconds.clamp(0.0, 1e12),
        ));
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

impl<M: OnlineModel> EnsembleModel<M> {
    /// An ensemble of `neural` (trained when first asked to predict) and `online`; `factory`
    /// makes fresh online models configured like `online`, for choosing the weight.
    pub fn new(neural: NeuralLearner, online: M, factory: OnlineFactory<M>) -> Self {
        EnsembleModel {
            neural,
            online,
            factory,
            weight: None,
            validation: None,
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

    /// Trains the network and chooses the weight, unless done.
    fn ensure_ready(&mut self) {
        if self.weight.is_some() {
            return;
        }
        let cases = self.neural.cases().to_vec();
        let share = self.neural.config().validation_share;
        if self.neural.train_now().is_err() {
            self.weight = Some(0.0);
            return;
        }
        let Some(model) = self.neural.model().cloned() else {
            self.weight = Some(0.0);
            return;
        };
        let cases: Vec<Vec<Event>> = cases.into_iter().filter(|c| !c.is_empty()).collect();
        let n_val = validation_cases(cases.len(), share);
        let (train, val) = cases.split_at(cases.len() - n_val);
        let mut fresh = (self.factory)();
        for e in train.iter().flatten() {
            fresh.observe(e, Observe::Learn);
        }
        let mut contexts: Vec<&[Event]> = Vec::new();
        let mut online = Vec::new();
        let mut targets = Vec::new();
        for c in val {
            for k in 1..c.len() {
                fresh.observe(&c[k - 1], Observe::Track);
                if k >= 2 {
                    online.push(fresh.forecast(&c[k - 1]));
                    contexts.push(&c[..k]);
                    targets.push(&c[k]);
                }
            }
        }
        let neural = model.predict_batch(&contexts).unwrap_or_default();
        let mut best = (0.0f32, -1.0f64, f64::INFINITY);
        for step in 0..=20 {
            let w = step as f32 / 20.0;
            let (mut hits, mut loss) = (0usize, 0.0f64);
            for (i, target) in targets.iter().enumerate() {
                let next = mix(neural.get(i), &online[i], w, target, usize::MAX);
                hits += usize::from(
                    next.first()
                        .is_some_and(|n| n.event_type == target.event_type),
                );
                let q = next
                    .iter()
                    .find(|n| n.event_type == target.event_type)
                    .map_or(0.0, |n| f64::from(n.probability));
                loss -= q.max(1e-4).ln();
            }
            let acc = hits as f64 / targets.len().max(1) as f64;
            if acc > best.1 + 1e-12 || (acc >= best.1 - 1e-12 && loss < best.2) {
                best = (w, acc, loss);
            }
        }
        self.weight = Some(best.0);
        self.validation = Some((best.1.max(0.0), targets.len()));
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
        let online = self.online.forecast(event);
        let neural = self.neural.distribution(event);
        let w = self.weight.unwrap_or(0.0);
        let top_k = self
            .neural
            .model()
            .map_or(self.neural.config().top_k, |m| m.top_k());
        let next = match (&neural, self.neural.model()) {
            (Some(d), Some(m)) if online.next.is_empty() => forecast(m, event, d).next,
            _ => mix(neural.as_ref(), &online, w, event, top_k),
        };
        Forecast {
            next,
            entities: online.entities,
        }
    }
}
