//! How the consumer of `bench live` reads an event's entities: through the prefetcher's
//! consumer API, or with plain cache-aside on the same cache and store.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prescient_core::{Cache, EntityKey, SmolStr, Store, Version};
use prescient_prefetch::{Prefetcher, ReadOutcome};

/// How the consumer reads an event's entities.
#[derive(Debug, Clone)]
pub(super) enum Reader {
    /// Through the prefetcher's consumer API.
    Prescient(Prefetcher),
    /// Plain cache-aside: the cache, then the store for the misses (one batch per kind), filling
    /// the cache.
    CacheAside {
        cache: Arc<dyn Cache>,
        store: Arc<dyn Store>,
        loads: Arc<AtomicU64>,
    },
}

impl Reader {
    /// Reads `keys`; returns how many were cache hits.
    pub(super) async fn read(&self, keys: &[EntityKey]) -> u32 {
        match self {
            Reader::Prescient(p) => p
                .get_many(keys, Version::ZERO)
                .await
                .iter()
                .filter(|r| matches!(r, Ok((_, ReadOutcome::Hit))))
                .count() as u32,
            Reader::CacheAside {
                cache,
                store,
                loads,
            } => {
                let cached = cache
                    .get_many(keys)
                    .await
                    .unwrap_or_else(|_| vec![None; keys.len()]);
                let missed: Vec<&EntityKey> = keys
                    .iter()
                    .zip(&cached)
                    .filter(|(_, e)| e.is_none())
                    .map(|(k, _)| k)
                    .collect();
                let hits = (keys.len() - missed.len()) as u32;
                // Like the consumer API, load the misses with one store batch per kind.
                let mut kinds: Vec<Vec<&EntityKey>> = Vec::new();
                for key in missed {
                    match kinds.iter_mut().find(|g| g[0].kind == key.kind) {
                        Some(g) => g.push(key),
                        None => kinds.push(vec![key]),
                    }
                }
                futures::future::join_all(kinds.into_iter().map(|group| async move {
                    loads.fetch_add(1, Ordering::Relaxed);
                    let ids: Vec<SmolStr> = group.iter().map(|k| k.id.clone()).collect();
                    let Ok(entries) = store.load_batch(&group[0].kind, &ids).await else {
                        return;
                    };
                    futures::future::join_all(group.into_iter().zip(entries).filter_map(
                        |(key, e)| {
                            e.map(|e| async move {
                                let _ = cache.put(key, e, Duration::from_secs(3600)).await;
                            })
                        },
                    ))
                    .await;
                }))
                .await;
                hits
            }
        }
    }
}
