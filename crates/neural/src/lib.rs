//! The neural sequence predictor of Prescient.
//!
//! A GRU (the default) or a causal Transformer encoder ([`Cell`]) reads each case's event
//! history — event-type embeddings plus time features (log1p seconds since the previous event
//! and since the case start, time of day, weekday, position) — and predicts the next event type (or the end of the case) and the time until it. It is
//! trained on the CPU with candle ([`NeuralModel::train`]), calibrated by temperature scaling and
//! then Platt scaling of the top-1 confidence ([`TopCalibration`]) on validation cases, saved as safetensors plus `meta.json` ([`NeuralModel::save`],
//! [`NeuralModel::load`]), and served three ways: batched over explicit contexts
//! ([`NeuralModel::predict_batch`]), as an [`OnlineModel`](prescient_core::OnlineModel) that
//! follows a stream ([`NeuralPredictor`], which can follow a [`ModelSlot`] so that a running
//! system swaps in a new model without stopping), and as a batching, hot-swappable
//! [`Predictor`](prescient_core::Predictor) ([`NeuralServer`]).
//!
//! [`NeuralLearner`] trains the network behind the plain online protocol (collecting the
//! learned events, training when first asked to predict), and [`EnsembleModel`] mixes it with
//! an online model by a weight chosen on validation data ([`choose_weight`]: the online model
//! alone unless a mix is significantly more accurate), recalibrates the mix's top-1 confidence,
//! and takes entities from the online model.
//!
//! The network is never trained online; entities are left to the relational model.

pub mod artifact;
pub use prescient_core::calibrate;
pub mod config;
pub mod ensemble;
pub mod error;
pub mod features;
pub mod learn;
pub mod model;
pub mod net;
pub mod online;
pub mod progress;
pub mod server;
pub mod slot;
pub mod train;

pub use artifact::{FORMAT_VERSION, Meta};
pub use calibrate::TopCalibration;
pub use config::{NeuralConfig, TrainProgress, TrainReport};
pub use ensemble::{
    EnsembleModel, OnlineFactory, SIGNIFICANCE_Z, WeightChoice, choose_weight, fit_mix, mix,
};
pub use error::NeuralError;
pub use learn::{NeuralLearner, ProgressFn};
pub use model::{EnsembleMix, ModelInfo, NeuralModel, NextTypeDistribution};
pub use net::{Arch, Cell};
pub use online::{ContextStore, NeuralPredictor, case_key};
pub use progress::ProgressBarReporter;
pub use server::NeuralServer;
pub use slot::ModelSlot;
pub use train::hash_cases;
