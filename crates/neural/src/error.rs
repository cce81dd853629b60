//! The error type of the neural predictor.

use std::path::PathBuf;

/// Why training, loading, saving or predicting with a neural model failed.
#[derive(Debug, thiserror::Error)]
pub enum NeuralError {
    /// The training data cannot train a model (no cases, too few events).
    #[error("invalid training data: {0}")]
    Data(String),
    /// The configuration is invalid (zero sizes, a non-positive learning rate).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A prediction was asked for an empty context.
    #[error("context {index} of the batch is empty: a prediction needs at least one event")]
    EmptyContext {
        /// The position of the empty context in the batch.
        index: usize,
    },
    /// An artifact file cannot be read or written.
    #[error("cannot read or write {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An artifact file is corrupt or incompatible with this version of the crate.
    #[error("{}: {problem}", path.display())]
    Artifact {
        /// The offending file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// The model panicked while predicting (the panic's message).
    #[error("the model panicked: {0}")]
    Panic(String),
    /// The tensor library failed.
    #[error("tensor error: {0}")]
    Tensor(#[from] candle_core::Error),
}
