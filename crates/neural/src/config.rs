//! Training settings ([`NeuralConfig`]) and what training reports ([`TrainProgress`],
//! [`TrainReport`]).

use serde::{Deserialize, Serialize};

use crate::error::NeuralError;

/// Settings of the network and of its training. [`NeuralConfig::default`] is tuned for the
/// process-mining logs of `tax2017` (a few to a few hundred event types, cases of up to ~100 events).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NeuralConfig {
    /// Width of the event-type embedding.
    pub embed_dim: usize,
    /// Width of the recurrent hidden state.
    pub hidden: usize,
    /// Number of stacked layers (GRU or Transformer).
    pub layers: usize,
    /// The sequence body: a GRU (the default, more accurate on three of the four `tax2017` logs
    /// and faster to train and serve) or a causal Transformer encoder.
    #[serde(default)]
    pub cell: crate::net::Cell,
    /// Maximum number of passes over the training cases.
    pub epochs: usize,
    /// AdamW learning rate.
    pub lr: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Cases per mini-batch (each case is one padded sequence with a loss at every step).
    pub batch: usize,
    /// Seed of the weight initialisation and of the batch order.
    pub seed: u64,
    /// Epochs without a better validation accuracy before training stops.
    pub patience: usize,
    /// Longest history the network reads; longer cases are cut into windows when training,
    /// and only the last `max_len` events of a context are read when predicting.
    pub max_len: usize,
    /// Share of the training cases (the last ones, in the given order) held out for early
    /// stopping and calibration.
    pub validation_share: f64,
    /// Weight of the time-to-next regression loss relative to the next-type cross entropy.
    pub time_loss_weight: f64,
    /// Training stops after the epoch during which this many seconds have passed.
    pub max_train_seconds: f64,
    /// How many next types a forecast lists.
    pub top_k: usize,
    /// Probability that a training input token is replaced by the unknown token, so the network
    /// learns to read past event types it has never seen.
    pub token_dropout: f64,
}

impl Default for NeuralConfig {
    fn default() -> Self {
        NeuralConfig {
            embed_dim: 32,
            hidden: 64,
            layers: 1,
            cell: crate::net::Cell::Gru,
            epochs: 40,
            lr: 3e-3,
            weight_decay: 1e-4,
            batch: 32,
            seed: 42,
            patience: 5,
            max_len: 128,
            validation_share: 0.15,
            time_loss_weight: 0.1,
            max_train_seconds: 600.0,
            top_k: 5,
            token_dropout: 0.05,
        }
    }
}

impl NeuralConfig {
    /// The default settings for a network of kind `cell`; a Transformer gets two layers.
    pub fn for_cell(cell: crate::net::Cell) -> Self {
        NeuralConfig {
            cell,
            layers: match cell {
                crate::net::Cell::Gru => 1,
                crate::net::Cell::Transformer => 2,
            },
            ..NeuralConfig::default()
        }
    }

    /// Checks that the settings can train a model.
    ///
    /// # Errors
    /// [`NeuralError::Config`] naming the first bad setting.
    pub fn validate(&self) -> Result<(), NeuralError> {
        let positive = [
            ("embed_dim", self.embed_dim),
            ("hidden", self.hidden),
            ("layers", self.layers),
            ("epochs", self.epochs),
            ("batch", self.batch),
            ("max_len", self.max_len),
            ("top_k", self.top_k),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(NeuralError::Config(format!("{name} must be at least 1")));
            }
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(NeuralError::Config("lr must be positive".into()));
        }
        if !(0.0..1.0).contains(&self.validation_share) {
            return Err(NeuralError::Config(
                "validation_share must be in [0, 1)".into(),
            ));
        }
        if !(0.0..1.0).contains(&self.token_dropout) {
            return Err(NeuralError::Config(
                "token_dropout must be in [0, 1)".into(),
            ));
        }
        if !(self.time_loss_weight.is_finite() && self.time_loss_weight >= 0.0) {
            return Err(NeuralError::Config(
                "time_loss_weight must be non-negative".into(),
            ));
        }
        Ok(())
    }
}

/// A progress report, sent after every mini-batch and at the end of every epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainProgress {
    /// The current epoch, from 1.
    pub epoch: usize,
    /// The maximum number of epochs.
    pub max_epochs: usize,
    /// Mini-batches done in this epoch.
    pub batch: usize,
    /// Mini-batches per epoch.
    pub batches: usize,
    /// Mean training loss of this epoch so far.
    pub loss: f64,
    /// Validation accuracy after the last finished epoch, if any.
    pub val_accuracy: Option<f64>,
    /// Validation loss after the last finished epoch, if any.
    pub val_loss: Option<f64>,
    /// Whether this report closes an epoch.
    pub epoch_done: bool,
}

/// What a training run achieved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainReport {
    /// Epochs run (including those after the best one, before early stopping).
    pub epochs: usize,
    /// The epoch whose weights were kept.
    pub best_epoch: usize,
    /// Next-type accuracy on the validation cases with the kept weights (end of case excluded).
    pub val_accuracy: f64,
    /// Next-type cross entropy on the validation cases with the kept weights, before calibration.
    pub val_loss: f64,
    /// Calibrated expected calibration error (10 bins, top-1) on the validation cases.
    pub val_ece: f64,
    /// The softmax temperature chosen on the validation cases.
    pub temperature: f64,
    /// Training cases and validation cases.
    pub train_cases: usize,
    /// Validation cases.
    pub val_cases: usize,
    /// Wall-clock seconds of training, including calibration.
    pub train_seconds: f64,
}
