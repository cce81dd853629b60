//! Invalidations that are not lost: sent at once for a batch, retried until they hold.
//!
//! An event that wrote an entity is acked only once the cache holds the new floor for it: a
//! cache that was unreachable, or restarted with an old copy restored from disk, would
//! otherwise keep serving the old version to readers that go to it directly. A transient
//! failure (the cache unreachable) is retried with backoff for as long as it takes, holding the
//! batch; any other failure is retried a few times, then the events that wrote the entity are
//! reported for the dead letters with the reason. Until an invalidation holds, this node's
//! reads of the entity do not trust a cached copy older than the new version.

use std::sync::atomic::Ordering;

use prescient_core::{CacheError, EntityKey, Event, Version};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use rustc_hash::FxHashMap;

use super::Prefetcher;

/// One entity's invalidation for a batch: its highest version, and the events that wrote it.
struct Floor {
    key: EntityKey,
    version: Version,
    events: Vec<usize>,
}

impl Prefetcher {
    /// Sends the invalidations of `events`, retrying as the module docs say. Returns the
    /// events whose invalidations could not be made to hold, with the reason.
    pub(super) async fn invalidate_written(&self, events: &[Event]) -> Vec<(usize, String)> {
        let floors = floors_of(events);
        if floors.is_empty() {
            return Vec::new();
        }
        {
            let mut s = self.state();
            for f in &floors {
                s.core.invalidate(&f.key, f.version);
                let v = s.floors.entry(f.key.clone()).or_insert(f.version);
                *v = (*v).max(f.version);
            }
        }
        let retry = self.inner.cfg.invalidate_retry;
        let mut rng = SmallRng::seed_from_u64(self.inner.clock.now().as_micros() as u64);
        let m = &self.inner.metrics;
        let mut pending: Vec<usize> = (0..floors.len()).collect();
        let mut failed: Vec<(usize, String)> = Vec::new();
        let mut attempt = 0u32;
        while !pending.is_empty() {
            let cache = &self.inner.cache;
            let results = futures::future::join_all(
                pending
                    .iter()
                    .map(|&i| cache.invalidate(&floors[i].key, floors[i].version)),
            )
            .await;
            attempt += 1;
            let mut again = Vec::new();
            for (&i, r) in pending.iter().zip(results) {
                match r {
                    Ok(()) => self.floor_held(&floors[i]),
                    Err(error) => {
                        m.cache_errors.fetch_add(1, Ordering::Relaxed);
                        let transient = matches!(error, CacheError::Unavailable(_));
                        if attempt == 1 {
                            tracing::warn!(message = "Invalidation failed; retrying until it holds.", %error, entity = %floors[i].key);
                        }
                        if transient || attempt < retry.max_attempts {
                            again.push(i);
                        } else {
                            failed.push((i, error.to_string()));
                        }
                    }
                }
            }
            if again.is_empty() {
                break;
            }
            m.invalidation_retries
                .fetch_add(again.len() as u64, Ordering::Relaxed);
            tokio::time::sleep(retry.delay(attempt, &mut rng)).await;
            pending = again;
        }
        let mut out: Vec<(usize, String)> = Vec::new();
        for (i, reason) in failed {
            tracing::error!(message = "Invalidation failed for good; dead-lettering its events.", reason = %reason, entity = %floors[i].key);
            for &e in &floors[i].events {
                out.push((
                    e,
                    format!("invalidation of {} failed: {reason}", floors[i].key),
                ));
            }
        }
        out.sort_by_key(|(e, _)| *e);
        out.dedup_by_key(|(e, _)| *e);
        m.invalidations_failed
            .fetch_add(out.len() as u64, Ordering::Relaxed);
        out
    }

    /// The invalidation `f` holds: reads may trust the cache for its entity again (unless a
    /// later invalidation of a newer version is still pending).
    fn floor_held(&self, f: &Floor) {
        let mut s = self.state();
        if s.floors.get(&f.key).is_some_and(|v| *v <= f.version) {
            s.floors.remove(&f.key);
        }
    }
}

/// For each entity the events write, its highest version and the events that wrote it, in the
/// order of first mention.
fn floors_of(events: &[Event]) -> Vec<Floor> {
    let mut floors: Vec<Floor> = Vec::new();
    let mut index: FxHashMap<EntityKey, usize> = FxHashMap::default();
    for (e, event) in events.iter().enumerate() {
        for mu in &event.mutations {
            let key = mu.key();
            match index.get(&key) {
                Some(&i) => {
                    let f = &mut floors[i];
                    f.version = f.version.max(mu.version);
                    if f.events.last() != Some(&e) {
                        f.events.push(e);
                    }
                }
                None => {
                    index.insert(key.clone(), floors.len());
                    floors.push(Floor {
                        key,
                        version: mu.version,
                        events: vec![e],
                    });
                }
            }
        }
    }
    floors
}
