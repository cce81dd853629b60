//! [`ModelSlot`]: a shared place for the model being served, so that a running system can swap
//! in a newly trained model without stopping.
//!
//! Predictors that follow a slot ([`crate::NeuralPredictor::follow`]) check its generation (one
//! atomic load) before each call and pick the new model up between two calls: an event is
//! always predicted by one whole model, never by a mix of two, and none is dropped. Case
//! histories are kept across the swap; their hidden states are rebuilt with the new model.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::error::NeuralError;
use crate::model::NeuralModel;

#[derive(Debug)]
struct Shared {
    model: RwLock<Arc<NeuralModel>>,
    generation: AtomicU64,
    /// The model the last swap replaced, to go back to if the new one fails at run time.
    previous: Mutex<Option<Arc<NeuralModel>>>,
}

/// The model being served, swappable while predictors use it. Clones share the slot.
#[derive(Debug, Clone)]
pub struct ModelSlot {
    shared: Arc<Shared>,
}

impl ModelSlot {
    /// A slot holding `model`, at generation 0.
    pub fn new(model: Arc<NeuralModel>) -> Self {
        ModelSlot {
            shared: Arc::new(Shared {
                model: RwLock::new(model),
                generation: AtomicU64::new(0),
                previous: Mutex::new(None),
            }),
        }
    }

    /// How many swaps the slot has seen.
    pub fn generation(&self) -> u64 {
        self.shared.generation.load(Ordering::Acquire)
    }

    /// The model now in the slot, and its generation.
    pub fn current(&self) -> (Arc<NeuralModel>, u64) {
        let guard = match self.shared.model.read() {
            Ok(g) => g,
            // A writer that panicked left a whole `Arc` behind: still a valid model.
            Err(poisoned) => poisoned.into_inner(),
        };
        (Arc::clone(&guard), self.generation())
    }

    /// Puts `model` in the slot and returns the one it replaces.
    pub fn swap(&self, model: Arc<NeuralModel>) -> Arc<NeuralModel> {
        let mut guard = match self.shared.model.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let old = std::mem::replace(&mut *guard, model);
        self.shared.generation.fetch_add(1, Ordering::AcqRel);
        *self.previous() = Some(Arc::clone(&old));
        old
    }

    fn previous(&self) -> std::sync::MutexGuard<'_, Option<Arc<NeuralModel>>> {
        match self.shared.previous.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Swaps the model of `generation` back out for the one it replaced, when it failed at run
    /// time. Does nothing (and returns `false`) if the slot has moved on since, or holds the
    /// model it started with.
    pub fn revert(&self, generation: u64) -> bool {
        let mut guard = match self.shared.model.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if self.generation() != generation || generation == 0 {
            return false;
        }
        let Some(previous) = self.previous().take() else {
            return false;
        };
        *guard = previous;
        self.shared.generation.fetch_add(1, Ordering::AcqRel);
        true
    }

    /// Loads the artifact in `dir` and swaps it in; on any error the slot keeps its model.
    ///
    /// # Errors
    /// What [`NeuralModel::load`] returns for a missing, corrupt or incompatible artifact.
    pub fn load(&self, dir: impl AsRef<Path>) -> Result<Arc<NeuralModel>, NeuralError> {
        let model = Arc::new(NeuralModel::load(dir)?);
        self.swap(Arc::clone(&model));
        Ok(model)
    }
}
