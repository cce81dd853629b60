//! The [`Cache`] seam: versioned entries with never-older writes.
//!
//! **Architecture Invariant:** a cache never replaces an entry with an older version, and never
//! returns or accepts a version below the floor that the last invalidation set. So a slow
//! prefetch that read version 5 cannot overwrite version 6, nor resurrect version 5 after the
//! event that wrote version 6 invalidated it.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

use crate::entity::{EntityKey, Entry, Version};

/// Why a cache operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CacheError {
    /// The cache cannot be reached.
    #[error("cache unavailable: {0}")]
    Unavailable(String),
    /// The cache answered with something this client cannot read.
    #[error("cache returned a malformed entry for {key}: {reason}")]
    Malformed {
        /// The entry's key.
        key: String,
        /// What was wrong.
        reason: String,
    },
    /// Any other failure of the backend.
    #[error("cache error: {0}")]
    Backend(String),
}

/// What a [`Cache::put`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The entry was stored.
    Stored,
    /// The cache already held a newer version, or an invalidation set a higher floor.
    /// Nothing was written.
    KeptNewer {
        /// The version (or floor) that won.
        current: Version,
    },
}

/// A versioned cache of entities.
///
/// # Concurrent calls on the same key
/// `put` is atomic with respect to other `put`s and `invalidate`s on the same key: of two
/// concurrent writers, the higher version wins whatever the order in which they land.
#[async_trait]
pub trait Cache: Send + Sync + fmt::Debug {
    /// The cached entry of `key`, if any and not expired.
    ///
    /// # Errors
    /// [`CacheError`] when the backend fails; callers treat it as a miss.
    async fn get(&self, key: &EntityKey) -> Result<Option<Entry>, CacheError>;

    /// The cached entries of several keys, in order. The default calls [`Cache::get`] in turn.
    ///
    /// # Errors
    /// [`CacheError`] when the backend fails.
    async fn get_many(&self, keys: &[EntityKey]) -> Result<Vec<Option<Entry>>, CacheError> {
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            out.push(self.get(k).await?);
        }
        Ok(out)
    }

    /// Stores `entry` for at most `ttl`, unless the cache holds a newer version or a higher
    /// floor. An equal version is stored again (which renews its time to live).
    ///
    /// # Errors
    /// [`CacheError`] when the backend fails.
    async fn put(
        &self,
        key: &EntityKey,
        entry: Entry,
        ttl: Duration,
    ) -> Result<PutOutcome, CacheError>;

    /// Declares that `key` now has at least version `min_version`: removes any older entry and
    /// refuses older writes from now on (for at least as long as entries live).
    ///
    /// # Errors
    /// [`CacheError`] when the backend fails.
    async fn invalidate(&self, key: &EntityKey, min_version: Version) -> Result<(), CacheError>;
}
