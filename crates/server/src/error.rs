//! [`ServerError`]: why `serve` could not start or had to stop.

/// Why `serve` could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The configuration is invalid; the message names the key.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The event source cannot be reached or read.
    #[error("event source: {0}")]
    Source(String),
    /// The cache cannot be reached.
    #[error("cache: {0}")]
    Cache(String),
    /// The store cannot be reached, or a configured query is wrong.
    #[error("store: {0}")]
    Store(String),
    /// The admin API cannot listen.
    #[error("admin API on {addr}: {error}")]
    Admin {
        /// The address.
        addr: String,
        /// Why.
        error: String,
    },
}

impl From<crate::config::ConfigError> for ServerError {
    fn from(e: crate::config::ConfigError) -> Self {
        match e {
            crate::config::ConfigError::Invalid(m) => ServerError::Config(m),
        }
    }
}
