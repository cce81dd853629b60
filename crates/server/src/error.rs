//! [`ServerError`]: why `serve` could not start or had to stop.

/// An underlying error, kept whole so that its own causes stay in the chain.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why `serve` could not start or had to stop. Each variant names the part that failed and
/// keeps the error it failed with as its [`source`](std::error::Error::source), so that a
/// report prints every cause once (`event source: connecting to ...: connection refused`).
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The configuration is invalid; the message names the key.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The event source cannot be reached or read.
    #[error("event source")]
    Source(#[source] BoxError),
    /// The cache cannot be reached.
    #[error("cache")]
    Cache(#[source] BoxError),
    /// The store cannot be reached, or a configured query is wrong.
    #[error("store")]
    Store(#[source] BoxError),
    /// The admin API cannot listen.
    #[error("admin API on {addr}")]
    Admin {
        /// The address.
        addr: String,
        /// Why.
        #[source]
        error: std::io::Error,
    },
}

impl ServerError {
    /// The event source failed with `e`.
    pub fn source<E: std::error::Error + Send + Sync + 'static>(e: E) -> Self {
        ServerError::Source(Box::new(e))
    }

    /// The cache failed with `e`.
    pub fn cache<E: std::error::Error + Send + Sync + 'static>(e: E) -> Self {
        ServerError::Cache(Box::new(e))
    }

    /// The store failed with `e`.
    pub fn store<E: std::error::Error + Send + Sync + 'static>(e: E) -> Self {
        ServerError::Store(Box::new(e))
    }
}

impl From<crate::config::ConfigError> for ServerError {
    fn from(e: crate::config::ConfigError) -> Self {
        match e {
            crate::config::ConfigError::Invalid(m) => ServerError::Config(m),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cause_is_in_the_chain_once() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let e = ServerError::source(io);
        assert_eq!(e.to_string(), "event source");
        let chain = prescient_core::error_chain(&e);
        assert_eq!(chain.matches("connection refused").count(), 1, "{chain}");
    }
}
