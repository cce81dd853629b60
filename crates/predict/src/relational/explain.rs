//! Forecasts with their reasons ([`RelationalModel::explain`]).

use prescient_core::{EntityKey, Event, NextEvent, Prediction, SmolStr};
use serde::Serialize;

use super::RelationalModel;
use super::config::ContextSpec;

/// How a next-type forecast was made, for [`RelationalModel::explain`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContextUse {
    /// The context level, as configured.
    pub spec: ContextSpec,
    /// The types of the context, oldest first.
    pub types: Vec<SmolStr>,
    /// Events seen after this context (after decay).
    pub count: f32,
    /// Distinct next types seen after it.
    pub distinct: usize,
}

/// One entity prediction with its reasons.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExplainedPrediction {
    /// The prediction.
    pub prediction: Prediction,
    /// The entity through which it was found (itself for `same`).
    pub via: EntityKey,
    /// Trials of its relation context (after decay).
    pub trials: f32,
    /// Trials whose next touch fell in a window like the predicted one.
    pub hits: f32,
}

/// What the model predicted after an event and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explanation {
    /// The entity whose history drove the next-type forecast.
    pub main_entity: Option<EntityKey>,
    /// The context levels found, most general first.
    pub contexts: Vec<ContextUse>,
    /// The forecast of next types (calibrated).
    pub next: Vec<NextEvent>,
    /// The raw top-1 probability before calibration.
    pub raw_top_probability: f32,
    /// The novelty discount: the entity touched a type the model had not learned, and the
    /// calibrated top-1 probability is this fraction of what it would be otherwise.
    pub novelty_discount: Option<f32>,
    /// The entity predictions with their reasons.
    pub entities: Vec<ExplainedPrediction>,
}

impl RelationalModel {
    /// Predicts what follows `event` and says why.
    pub fn explain(&mut self, event: &Event) -> Explanation {
        let (f, raw, contexts) = self.forecast_inner(event, true);
        let mut entities = Vec::new();
        for (p, via, trials, hits) in f.1 {
            entities.push(ExplainedPrediction {
                prediction: p,
                via,
                trials,
                hits,
            });
        }
        Explanation {
            main_entity: Self::main_ref(event).map(|r| r.key()),
            contexts,
            next: f.0,
            raw_top_probability: raw as f32,
            novelty_discount: self.last_discount,
            entities,
        }
    }

    #[allow(clippy::type_complexity)] // internal: the forecast parts with their reasons
    pub(super) fn forecast_inner(
        &mut self,
        event: &Event,
        explain: bool,
    ) -> (
        (Vec<NextEvent>, Vec<(Prediction, EntityKey, f32, f32)>),
        f64,
        Vec<ContextUse>,
    ) {
        let ((next, ents, why), raw, uses) = self.forecast_parts(event, explain);
        let mut ents: Vec<_> = ents
            .into_iter()
            .zip(why)
            .map(|(p, (via, trials, hits))| (p, via, trials, hits))
            .collect();
        ents.sort_by(|a, b| b.0.confidence.total_cmp(&a.0.confidence));
        ((next, ents), raw, uses)
    }
}
