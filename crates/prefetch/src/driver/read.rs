//! The consumer API: `get(entity, min_version)` and its batched form.
//!
//! A read is served from the cache only with a current version (at least `min_version`, and at
//! least the floor of an invalidation that is not yet known to hold), else by joining a load
//! in flight, else from the store, filling the cache. Each outcome goes to the core, whose
//! crediting rule decides whether a prefetch was used.

use std::sync::atomic::Ordering;

use prescient_core::{EntityKey, Entry, PutOutcome, SmolStr, StoreError, Version};
use tokio::sync::oneshot;

use super::Prefetcher;
use crate::machine::Demand;

/// How a read was served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadOutcome {
    /// From the cache.
    Hit,
    /// By waiting for a load already in flight.
    Joined,
    /// From the store.
    Miss,
}

impl ReadOutcome {
    /// `hit`, `joined` or `miss`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReadOutcome::Hit => "hit",
            ReadOutcome::Joined => "joined",
            ReadOutcome::Miss => "miss",
        }
    }
}

/// Why a read failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The store has no such entity.
    #[error("no entity {0}")]
    NotFound(EntityKey),
    /// The store only has an older version than the reader needs (replication lag): returning
    /// it would be a stale read.
    #[error("{key}: the store has {have}, the reader needs at least {want}")]
    VersionUnavailable {
        /// The entity.
        key: EntityKey,
        /// What the store returned.
        have: Version,
        /// What the reader asked for.
        want: Version,
    },
    /// The store did not answer in time.
    #[error("store load of {0} timed out")]
    Timeout(EntityKey),
}

type Loaded = Result<Option<Entry>, ReadError>;
type Read = Result<(Entry, ReadOutcome), ReadError>;

impl Prefetcher {
    /// Reads `key` at `min_version` or newer: from the cache if it holds a current version, else
    /// by joining a load in flight, else from the store (filling the cache).
    ///
    /// # Errors
    /// [`ReadError`] when the store fails, lacks the entity, or only has an older version.
    ///
    /// # Cancel safety
    /// Cancel safe: a cancelled reader leaves any load it started to finish and fill the cache.
    pub async fn get(&self, key: &EntityKey, min_version: Version) -> Read {
        let mut out = self.get_many(std::slice::from_ref(key), min_version).await;
        out.pop()
            .unwrap_or_else(|| Err(ReadError::NotFound(key.clone())))
    }

    /// Reads several entities at `min_version` or newer, as [`Prefetcher::get`] would each, but
    /// with one cache round trip for all of them. A miss joins the load of its entity in flight
    /// if there is one; the other misses are loaded with one store batch per kind, and fill the
    /// cache. The results are in the order of `keys`.
    ///
    /// # Errors
    /// Each result fails as [`Prefetcher::get`] would for that entity.
    ///
    /// # Cancel safety
    /// Cancel safe: a cancelled reader leaves any load it started to finish and fill the cache.
    pub async fn get_many(&self, keys: &[EntityKey], min_version: Version) -> Vec<Read> {
        let m = &self.inner.metrics;
        let cached = match self.inner.cache.get_many(keys).await {
            Ok(v) if v.len() == keys.len() => v,
            Ok(v) => {
                m.cache_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    message = "Cache returned the wrong number of entries; reading the store.",
                    got = v.len(),
                    keys = keys.len()
                );
                vec![None; keys.len()]
            }
            Err(error) => {
                m.cache_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(message = "Cache read failed; reading the store.", %error, entities = keys.len());
                vec![None; keys.len()]
            }
        };
        let now = self.inner.clock.now();
        let mut out: Vec<Option<Read>> = Vec::with_capacity(keys.len());
        let mut missed = Vec::new();
        {
            let mut s = self.state();
            for (i, (key, entry)) in keys.iter().zip(cached).enumerate() {
                s.core.on_read();
                let floor = s.floors.get(key).copied().unwrap_or(Version::ZERO);
                match entry {
                    Some(e) if e.version >= min_version && e.version >= floor => {
                        m.hits.fetch_add(1, Ordering::Relaxed);
                        s.core.on_hit(now, key);
                        out.push(Some(Ok((e, ReadOutcome::Hit))));
                    }
                    _ => {
                        missed.push(i);
                        out.push(None);
                    }
                }
            }
        }
        if !missed.is_empty() {
            let refs: Vec<&EntityKey> = missed.iter().map(|&i| &keys[i]).collect();
            let loads = self.read_missed(&refs, min_version).await;
            for (i, r) in missed.into_iter().zip(loads) {
                out[i] = Some(r);
            }
        }
        out.into_iter()
            .zip(keys)
            .map(|(r, key)| r.unwrap_or_else(|| Err(ReadError::NotFound(key.clone()))))
            .collect()
    }

    /// The read path after cache misses: each joins a load in flight where there is one; the
    /// others are loaded with one store batch per kind, and fill the cache.
    async fn read_missed(&self, keys: &[&EntityKey], min_version: Version) -> Vec<Read> {
        let mut joined = Vec::new();
        let mut own: Vec<(usize, &EntityKey, crate::planner::LoadId)> = Vec::new();
        {
            let now = self.inner.clock.now();
            let mut s = self.state();
            for (i, key) in keys.iter().enumerate() {
                match s.core.begin_demand(now, key) {
                    Demand::Load(f) => {
                        s.waiters.insert((*key).clone(), (f.id, Vec::new()));
                        own.push((i, *key, f.id));
                    }
                    Demand::Join(f) => {
                        s.core.on_joined(key);
                        let (tx, rx) = oneshot::channel();
                        s.waiters
                            .entry((*key).clone())
                            .or_insert_with(|| (f.id, Vec::new()))
                            .1
                            .push(tx);
                        joined.push((i, *key, rx));
                    }
                }
            }
        }
        // One store batch per kind, in the order kinds first appear.
        let mut kinds: Vec<Vec<(usize, &EntityKey, crate::planner::LoadId)>> = Vec::new();
        for item in own {
            match kinds.iter_mut().find(|g| g[0].1.kind == item.1.kind) {
                Some(g) => g.push(item),
                None => kinds.push(vec![item]),
            }
        }
        let loads = futures::future::join_all(kinds.into_iter().map(|group| async move {
            let ks: Vec<&EntityKey> = group.iter().map(|(_, k, _)| *k).collect();
            let results = self.load_and_fill(&ks).await;
            group
                .into_iter()
                .zip(results)
                .map(|((i, key, load), r)| (i, self.end_read(key, load, r, min_version)))
                .collect::<Vec<_>>()
        }));
        let waits =
            futures::future::join_all(joined.into_iter().map(|(i, key, rx)| async move {
                (i, self.await_joined(key, rx, min_version).await)
            }));
        let (loaded, waited) = futures::future::join(loads, waits).await;
        let mut out: Vec<Option<Read>> = (0..keys.len()).map(|_| None).collect();
        for (i, r) in loaded.into_iter().flatten().chain(waited) {
            out[i] = Some(r);
        }
        out.into_iter()
            .zip(keys)
            .map(|(r, key)| r.unwrap_or_else(|| Err(ReadError::NotFound((*key).clone()))))
            .collect()
    }

    /// Waits for the load `key` joined; falls back to a store read of its own when that load
    /// fails or brings an older version than `min_version`.
    async fn await_joined(
        &self,
        key: &EntityKey,
        rx: oneshot::Receiver<Loaded>,
        min_version: Version,
    ) -> Read {
        if let Ok(Ok(Some(e))) = rx.await
            && e.version >= min_version
        {
            self.inner.metrics.joined.fetch_add(1, Ordering::Relaxed);
            return Ok((e, ReadOutcome::Joined));
        }
        // The shared load failed or brought an older version: read the store ourselves.
        self.inner.metrics.misses.fetch_add(1, Ordering::Relaxed);
        let r = self.load_and_fill(&[key]).await.pop().unwrap_or(Ok(None));
        check(key, r, min_version).map(|e| (e, ReadOutcome::Miss))
    }

    /// Ends the demand load `load` of `key`: hands its result to the readers that joined it,
    /// and turns it into this reader's answer.
    fn end_read(
        &self,
        key: &EntityKey,
        load: crate::planner::LoadId,
        result: Loaded,
        min_version: Version,
    ) -> Read {
        {
            let mut s = self.state();
            s.core.end_demand(key, load);
            if s.waiters.get(key).is_some_and(|w| w.0 == load)
                && let Some((_, waiters)) = s.waiters.remove(key)
            {
                for w in waiters {
                    let _ = w.send(result.clone());
                }
            }
        }
        self.inner.metrics.misses.fetch_add(1, Ordering::Relaxed);
        check(key, result, min_version).map(|e| (e, ReadOutcome::Miss))
    }

    /// Loads entities of one kind with one store round trip, and fills the cache with those
    /// found (the writes go out together). The results are in the order of `keys`.
    async fn load_and_fill(&self, keys: &[&EntityKey]) -> Vec<Loaded> {
        let Some(first) = keys.first() else {
            return Vec::new();
        };
        self.inner
            .metrics
            .store_loads
            .fetch_add(1, Ordering::Relaxed);
        let ids: Vec<SmolStr> = keys.iter().map(|k| k.id.clone()).collect();
        let loaded = tokio::time::timeout(
            self.inner.cfg.store_timeout,
            self.inner.store.load_batch(&first.kind, &ids),
        )
        .await;
        let entries = match loaded {
            Err(_) => {
                return keys
                    .iter()
                    .map(|k| Err(ReadError::Timeout((*k).clone())))
                    .collect();
            }
            Ok(Err(e)) => {
                return keys
                    .iter()
                    .map(|_| Err(ReadError::Store(e.clone())))
                    .collect();
            }
            Ok(Ok(entries)) if entries.len() != keys.len() => {
                let e = StoreError::Query(format!(
                    "store returned {} rows for {} ids",
                    entries.len(),
                    keys.len()
                ));
                return keys
                    .iter()
                    .map(|_| Err(ReadError::Store(e.clone())))
                    .collect();
            }
            Ok(Ok(entries)) => entries,
        };
        let ttl = self.inner.cfg.demand_ttl;
        let cache = &self.inner.cache;
        let puts = futures::future::join_all(keys.iter().zip(&entries).map(|(k, e)| async move {
            match e {
                Some(e) => Some(cache.put(k, e.clone(), ttl).await),
                None => None,
            }
        }))
        .await;
        let now = self.inner.clock.now();
        let mut failed = 0u64;
        {
            let mut s = self.state();
            for ((k, e), put) in keys.iter().zip(&entries).zip(puts) {
                match (e, put) {
                    (Some(e), Some(Ok(PutOutcome::Stored))) => {
                        s.core
                            .on_demand_filled(now, (*k).clone(), e.version, now.plus(ttl));
                    }
                    (_, Some(Err(error))) => {
                        failed += 1;
                        if failed == 1 {
                            tracing::warn!(message = "Cache fill failed.", %error, entity = %k);
                        }
                    }
                    _ => {}
                }
            }
        }
        if failed > 0 {
            self.inner
                .metrics
                .cache_errors
                .fetch_add(failed, Ordering::Relaxed);
        }
        entries.into_iter().map(Ok).collect()
    }
}

/// A load's result as a read at `min_version`.
fn check(key: &EntityKey, result: Loaded, min_version: Version) -> Result<Entry, ReadError> {
    match result? {
        Some(e) if e.version >= min_version => Ok(e),
        Some(e) => Err(ReadError::VersionUnavailable {
            key: key.clone(),
            have: e.version,
            want: min_version,
        }),
        None => Err(ReadError::NotFound(key.clone())),
    }
}
