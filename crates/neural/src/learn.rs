//! [`NeuralLearner`]: the neural model behind the plain [`OnlineModel`] protocol of
//! `prescient evaluate`. Events observed with [`Observe::Learn`] are collected into cases (by
//! case entity, in order of first appearance); the network is trained on them, in one go, the
//! first time the learner is asked for anything else. From then on it serves like a
//! [`NeuralPredictor`]: the network is never trained online.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use prescient_core::{EntityKey, Event, Forecast, Observe, OnlineModel};

use crate::config::{NeuralConfig, TrainProgress, TrainReport};
use crate::error::NeuralError;
use crate::model::NeuralModel;
use crate::model::NextTypeDistribution;
use crate::online::{NeuralPredictor, case_key};

/// A progress callback that can move between threads.
pub type ProgressFn = Box<dyn FnMut(TrainProgress) + Send>;

/// Collects training cases, trains the network when first asked to predict, then serves it.
pub struct NeuralLearner {
    cfg: NeuralConfig,
    cases: Vec<Vec<Event>>,
    index: HashMap<EntityKey, usize>,
    predictor: Option<NeuralPredictor>,
    report: Option<TrainReport>,
    failure: Option<String>,
    progress: ProgressFn,
}

impl fmt::Debug for NeuralLearner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NeuralLearner")
            .field("cfg", &self.cfg)
            .field("cases", &self.cases.len())
            .field("trained", &self.predictor.is_some())
            .field("report", &self.report)
            .finish_non_exhaustive()
    }
}

impl NeuralLearner {
    /// A learner that will train with `cfg`.
    pub fn new(cfg: NeuralConfig) -> Self {
        NeuralLearner {
            cfg,
            cases: Vec::new(),
            index: HashMap::new(),
            predictor: None,
            report: None,
            failure: None,
            progress: Box::new(|_| {}),
        }
    }

    /// A learner that is already trained: it serves `predictor` and collects nothing.
    pub fn serving(predictor: NeuralPredictor) -> Self {
        let mut learner = NeuralLearner::new(NeuralConfig::default());
        learner.predictor = Some(predictor);
        learner
    }

    /// Reports training progress to `progress` (e.g. a [`crate::ProgressBarReporter`]).
    pub fn with_progress(mut self, progress: ProgressFn) -> Self {
        self.progress = progress;
        self
    }

    /// The cases collected so far (emptied when training starts).
    pub fn cases(&self) -> &[Vec<Event>] {
        &self.cases
    }

    /// The training settings.
    pub fn config(&self) -> &NeuralConfig {
        &self.cfg
    }

    /// The training report, once trained.
    pub fn report(&self) -> Option<&TrainReport> {
        self.report.as_ref()
    }

    /// The trained model, once trained.
    pub fn model(&self) -> Option<&Arc<NeuralModel>> {
        self.predictor.as_ref().map(NeuralPredictor::model)
    }

    /// Why training failed, if it did (the learner then answers with empty forecasts).
    pub fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }

    /// Trains on the collected cases now, unless already trained or failed.
    ///
    /// # Errors
    /// What [`NeuralModel::train`] returns; the learner remembers the failure.
    pub fn train_now(&mut self) -> Result<(), NeuralError> {
        if self.predictor.is_some() || self.failure.is_some() {
            return Ok(());
        }
        let cases = std::mem::take(&mut self.cases);
        self.index.clear();
        match NeuralModel::train(&cases, &self.cfg, &mut *self.progress) {
            Ok((model, report)) => {
                self.report = Some(report);
                self.predictor = Some(NeuralPredictor::new(Arc::new(model)));
                Ok(())
            }
            Err(e) => {
                tracing::warn!(message = "Neural training failed.", error = %e);
                self.failure = Some(e.to_string());
                Err(e)
            }
        }
    }

    /// Observes each event (unless `Skip`) and returns the network's distribution after each,
    /// in one batch; `None` before training or when the network fails.
    pub fn distributions(
        &mut self,
        items: &[(&Event, Observe)],
    ) -> Option<Vec<NextTypeDistribution>> {
        self.predictor.as_mut()?.distributions(items).ok()
    }

    /// The network's distribution after `event` (trains first if needed).
    pub fn distribution(&mut self, event: &Event) -> Option<NextTypeDistribution> {
        let _ = self.train_now();
        self.predictor.as_mut()?.distribution(event).ok()
    }
}

impl OnlineModel for NeuralLearner {
    fn name(&self) -> &str {
        "neural"
    }

    fn observe(&mut self, event: &Event, mode: Observe) {
        if mode == Observe::Learn && self.predictor.is_none() && self.failure.is_none() {
            let key = case_key(event).unwrap_or_else(|| EntityKey::new("", ""));
            let next = self.cases.len();
            let i = *self.index.entry(key).or_insert(next);
            if i == next {
                self.cases.push(Vec::new());
            }
            self.cases[i].push(event.clone());
            return;
        }
        let _ = self.train_now();
        if let Some(p) = self.predictor.as_mut() {
            p.observe(event, mode);
        }
    }

    fn forecast(&mut self, event: &Event) -> Forecast {
        let _ = self.train_now();
        self.predictor
            .as_mut()
            .map(|p| p.forecast(event))
            .unwrap_or_default()
    }
}
