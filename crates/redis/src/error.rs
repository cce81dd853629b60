//! The error type of the Redis adapters and its mapping onto the core error types.

use prescient_core::{CacheError, SourceError};

/// Why a Redis adapter could not be built or an operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    /// The options are invalid (bad URL, bad key prefix, empty stream name, ...).
    #[error("invalid redis options: {0}")]
    Config(String),
    /// Redis could not be reached, or the connection broke.
    #[error("redis unavailable: {0}")]
    Unavailable(#[source] redis::RedisError),
    /// Redis answered with an error, or with a reply this client cannot read.
    #[error("redis error: {0}")]
    Backend(#[source] redis::RedisError),
}

impl From<redis::RedisError> for RedisError {
    fn from(e: redis::RedisError) -> Self {
        if is_connection_error(&e) {
            RedisError::Unavailable(e)
        } else {
            RedisError::Backend(e)
        }
    }
}

/// Whether the error means the server cannot be reached (as opposed to a refused command).
pub(crate) fn is_connection_error(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_unrecoverable_error()
}

impl From<RedisError> for CacheError {
    fn from(e: RedisError) -> Self {
        match e {
            RedisError::Unavailable(e) => CacheError::Unavailable(e.to_string()),
            RedisError::Config(m) => CacheError::Backend(m),
            RedisError::Backend(e) => CacheError::Backend(e.to_string()),
        }
    }
}

impl From<RedisError> for SourceError {
    fn from(e: RedisError) -> Self {
        match e {
            RedisError::Unavailable(e) => SourceError::Unavailable(e.to_string()),
            RedisError::Config(m) => SourceError::Config(m),
            RedisError::Backend(e) => SourceError::Unavailable(e.to_string()),
        }
    }
}

pub(crate) fn cache_err(e: redis::RedisError) -> CacheError {
    RedisError::from(e).into()
}
