//! [`NeuralServer`]: the neural model as a shared, batching [`Predictor`] with hot swap.

use std::sync::{Arc, Mutex, RwLock};

use async_trait::async_trait;
use prescient_core::{Forecast, PredictError, PredictRequest, Predictor};

use crate::model::NeuralModel;
use crate::online::{ContextStore, DEFAULT_MAX_CASES};

/// Serves a [`NeuralModel`] through the [`Predictor`] trait. Requests that arrive together
/// ([`Predictor::predict_batch`]) share one forward pass per wave of distinct cases.
/// [`NeuralServer::swap`] replaces the model atomically: requests in flight finish on the model
/// they started with, later ones use the new one, and no request is dropped.
#[derive(Debug)]
pub struct NeuralServer {
    model: RwLock<Arc<NeuralModel>>,
    contexts: Mutex<ContextStore>,
}

impl NeuralServer {
    /// Serves `model`, keeping up to [`DEFAULT_MAX_CASES`] cases.
    pub fn new(model: NeuralModel) -> Self {
        Self::with_max_cases(model, DEFAULT_MAX_CASES)
    }

    /// Serves `model`, keeping up to `max_cases` cases.
    pub fn with_max_cases(model: NeuralModel, max_cases: usize) -> Self {
        NeuralServer {
            model: RwLock::new(Arc::new(model)),
            contexts: Mutex::new(ContextStore::new(max_cases)),
        }
    }

    /// The model currently served.
    pub fn model(&self) -> Result<Arc<NeuralModel>, PredictError> {
        self.model
            .read()
            .map(|m| Arc::clone(&m))
            .map_err(|_| PredictError::Internal("model lock poisoned".into()))
    }

    /// Replaces the model and returns the old one. Case contexts are kept; their hidden states
    /// are rebuilt from the kept history with the new model on next use.
    ///
    /// # Errors
    /// [`PredictError::Internal`] if a lock is poisoned.
    pub fn swap(&self, model: NeuralModel) -> Result<Arc<NeuralModel>, PredictError> {
        let mut slot = self
            .model
            .write()
            .map_err(|_| PredictError::Internal("model lock poisoned".into()))?;
        Ok(std::mem::replace(&mut *slot, Arc::new(model)))
    }

    /// Observes and predicts synchronously; what the async methods do.
    pub fn predict_now(&self, reqs: &[PredictRequest<'_>]) -> Vec<Result<Forecast, PredictError>> {
        let model = match self.model() {
            Ok(m) => m,
            Err(e) => return reqs.iter().map(|_| Err(e.clone())).collect(),
        };
        let items: Vec<_> = reqs.iter().map(|r| (r.event, r.observe)).collect();
        let result = self
            .contexts
            .lock()
            .map_err(|_| PredictError::Internal("context lock poisoned".into()))
            .and_then(|mut c| {
                c.process(&model, &items)
                    .map_err(|e| PredictError::Internal(e.to_string()))
            });
        match result {
            Ok(fs) => fs.into_iter().map(Ok).collect(),
            Err(e) => reqs.iter().map(|_| Err(e.clone())).collect(),
        }
    }
}

#[async_trait]
impl Predictor for NeuralServer {
    fn name(&self) -> &str {
        "neural"
    }

    async fn predict(&self, req: PredictRequest<'_>) -> Result<Forecast, PredictError> {
        self.predict_now(&[req])
            .pop()
            .unwrap_or_else(|| Err(PredictError::Internal("no answer".into())))
    }

    async fn predict_batch(
        &self,
        reqs: &[PredictRequest<'_>],
    ) -> Vec<Result<Forecast, PredictError>> {
        self.predict_now(reqs)
    }
}
