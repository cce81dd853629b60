//! The [`Store`] seam: the source of truth that prefetches and misses load from.

use std::fmt;

use async_trait::async_trait;
use smol_str::SmolStr;

use crate::entity::{EntityKey, Entry};

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached. Worth retrying.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The query failed. Retrying the same query is unlikely to help.
    #[error("store query failed: {0}")]
    Query(String),
    /// The store is not set up for this kind of entity.
    #[error("no query configured for entity kind {0:?}")]
    UnknownKind(String),
}

impl StoreError {
    /// Whether retrying may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// Loads entities, in batches of one kind.
#[async_trait]
pub trait Store: Send + Sync + fmt::Debug {
    /// Loads the entities `ids` of `kind`, in order; `None` where the store has no such entity.
    ///
    /// # Errors
    /// [`StoreError`] when the whole batch fails.
    async fn load_batch(
        &self,
        kind: &str,
        ids: &[SmolStr],
    ) -> Result<Vec<Option<Entry>>, StoreError>;

    /// Loads one entity.
    ///
    /// # Errors
    /// [`StoreError`] when the load fails.
    async fn load(&self, key: &EntityKey) -> Result<Option<Entry>, StoreError> {
        let mut v = self
            .load_batch(&key.kind, std::slice::from_ref(&key.id))
            .await?;
        Ok(v.pop().flatten())
    }
}

/// Writes entities: used to seed a store for demos, replays and benchmarks.
#[async_trait]
pub trait StoreWriter: Send + Sync + fmt::Debug {
    /// Inserts or replaces the given rows.
    ///
    /// # Errors
    /// [`StoreError`] when the write fails.
    async fn upsert_batch(&self, rows: &[(EntityKey, Entry)]) -> Result<(), StoreError>;
}
