//! Prefetch loads: the batches the core says are due, loaded from the store in one round trip
//! each, written to the cache with the core's TTL, and every outcome reported back.

use std::sync::atomic::Ordering;

use prescient_core::{Entry, PutOutcome, SmolStr, StoreError};

use super::{Prefetcher, State, Waiter};
use crate::planner::{Batch, BatchItem, Failure};
use prescient_core::EntityKey;

impl Prefetcher {
    /// Issues the loads that are due now and waits for them to finish. [`Prefetcher::run`]
    /// spawns them instead; tests call this directly.
    pub async fn tick(&self) {
        let batches = self.poll_due();
        let loads: Vec<_> = batches
            .into_iter()
            .map(|b| {
                self.inner.loads_running.fetch_add(1, Ordering::AcqRel);
                self.run_load(b)
            })
            .collect();
        futures::future::join_all(loads).await;
    }

    /// Spawns the loads due now in the background (on the current runtime; outside one, the
    /// scheduler's next round issues them).
    pub(super) fn spawn_due(&self) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        for batch in self.poll_due() {
            // Counted as running from now, so that `drain` waits for it even before it starts.
            self.inner.loads_running.fetch_add(1, Ordering::AcqRel);
            let this = self.clone();
            handle.spawn(async move { this.run_load(batch).await });
        }
    }

    /// With a clock that follows the events, issues the loads due now, so that a load due at
    /// once is not left for a later event, by which time its window may have passed. (With a
    /// wall clock the scheduler issues them.)
    pub(super) fn issue_due(&self) {
        if self.inner.event_time.load(Ordering::Relaxed) {
            self.spawn_due();
        }
    }

    /// The batches due now.
    fn poll_due(&self) -> Vec<Batch<EntityKey>> {
        let now = self.inner.clock.now();
        self.state().core.poll(now)
    }

    /// Loads `batch`, counted in `loads_running` by the caller (and uncounted here when done).
    async fn run_load(&self, batch: Batch<EntityKey>) {
        if let Some(batch) = self.drop_cached(batch).await {
            self.load_from_store(batch).await;
        }
        if self.inner.loads_running.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.inner.idle.notify_waiters();
        }
        // A finished load frees a slot and may have earned its successors their turn.
        self.issue_due();
    }

    /// Asks the cache for the entities of `batch` just before loading them, and ends the
    /// prefetch of those another writer holds there already (a read filled them since they
    /// were planned, or another node sharing the cache did): the cache is the only witness of
    /// what others wrote, and a round trip to it costs less than store rows. A copy this node
    /// wrote itself and knows to expire before the expected read is loaded all the same.
    /// Returns what is left to load, if anything. When the cache fails, everything is loaded.
    async fn drop_cached(&self, mut batch: Batch<EntityKey>) -> Option<Batch<EntityKey>> {
        let keys: Vec<EntityKey> = batch.items.iter().map(|i| i.key.clone()).collect();
        let cached = tokio::time::timeout(
            self.inner.cfg.store_timeout,
            self.inner.cache.get_many(&keys),
        )
        .await;
        match cached {
            Ok(Ok(entries)) if entries.len() == keys.len() => {
                let mut left = Vec::with_capacity(batch.items.len());
                for (item, entry) in batch.items.drain(..).zip(entries) {
                    let ours_expiring = {
                        let s = self.state();
                        s.core.is_tracked(&item.key)
                            && !s.core.is_fresh(&item.key, item.expected_at)
                    };
                    match entry {
                        Some(entry) if !ours_expiring => self.finish_cached(&item, entry),
                        _ => left.push(item),
                    }
                }
                batch.items = left;
            }
            Ok(Ok(_)) => {}
            Ok(Err(error)) => {
                self.inner
                    .metrics
                    .cache_errors
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(message = "Cache check before a prefetch failed; loading.", %error);
            }
            Err(_) => {
                tracing::debug!(message = "Cache check before a prefetch timed out; loading.");
            }
        }
        (!batch.items.is_empty()).then_some(batch)
    }

    /// Ends the prefetch of `item`, which the cache held already: readers that joined it get
    /// the cached entry.
    fn finish_cached(&self, item: &BatchItem<EntityKey>, entry: Entry) {
        let waiters = {
            let mut s = self.state();
            s.core.on_prefetch_cached(item);
            take_waiters(&mut s, item)
        };
        for w in waiters {
            let _ = w.send(Ok(Some(entry.clone())));
        }
    }

    /// Loads `batch` from the store in one round trip and caches what it brings.
    async fn load_from_store(&self, batch: Batch<EntityKey>) {
        self.inner
            .metrics
            .store_loads
            .fetch_add(1, Ordering::Relaxed);
        let ids: Vec<SmolStr> = batch.items.iter().map(|i| i.key.id.clone()).collect();
        let result = tokio::time::timeout(
            self.inner.cfg.store_timeout,
            self.inner.store.load_batch(&batch.kind, &ids),
        )
        .await
        .unwrap_or_else(|_| Err(StoreError::Unavailable("timed out".into())));
        let result = match result {
            Ok(entries) if entries.len() != batch.items.len() => Err(StoreError::Query(format!(
                "store returned {} rows for {} ids",
                entries.len(),
                ids.len()
            ))),
            other => other,
        };
        match result {
            Ok(entries) => {
                // The cache writes of a batch go out together (a multiplexed cache client
                // pipelines them) rather than one round trip after another.
                futures::future::join_all(
                    batch
                        .items
                        .iter()
                        .zip(entries)
                        .map(|(item, entry)| self.finish_item(item, Ok(entry))),
                )
                .await;
            }
            Err(error) => {
                tracing::warn!(message = "Prefetch failed.", %error, kind = %batch.kind, entities = batch.items.len());
                for item in &batch.items {
                    self.finish_item(item, Err(error.clone())).await;
                }
            }
        }
    }

    /// Reports one loaded item to the core, writes it to the cache as the core says, and hands
    /// the outcome to the readers that joined it.
    async fn finish_item(
        &self,
        item: &BatchItem<EntityKey>,
        result: Result<Option<Entry>, StoreError>,
    ) {
        let now = self.inner.clock.now();
        let outcome = match result {
            Ok(Some(entry)) => {
                let fill = self.state().core.on_prefetch_loaded(now, item, Ok(true));
                if let Some(fill) = fill {
                    match self
                        .inner
                        .cache
                        .put(&item.key, entry.clone(), fill.ttl)
                        .await
                    {
                        Ok(PutOutcome::Stored) => {
                            let expires = now.plus(fill.ttl);
                            self.state().core.on_prefetch_filled(
                                now,
                                item,
                                fill,
                                entry.version,
                                expires,
                            );
                        }
                        Ok(PutOutcome::KeptNewer { .. }) => {}
                        Err(error) => {
                            self.inner
                                .metrics
                                .cache_errors
                                .fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(message = "Prefetch cache write failed.", %error, entity = %item.key);
                        }
                    }
                }
                Ok(Some(entry))
            }
            Ok(None) => {
                self.state().core.on_prefetch_loaded(now, item, Ok(false));
                Ok(None)
            }
            Err(error) => {
                let failure = if error.is_transient() {
                    Failure::Transient
                } else {
                    Failure::Permanent
                };
                self.state()
                    .core
                    .on_prefetch_loaded(now, item, Err(failure));
                Err(super::ReadError::Store(error))
            }
        };
        let waiters = take_waiters(&mut self.state(), item);
        for w in waiters {
            let _ = w.send(outcome.clone());
        }
    }
}

/// The readers waiting for the prefetch `item` (none if its load is no longer the one they
/// joined), taken from `s`.
fn take_waiters(s: &mut State, item: &BatchItem<EntityKey>) -> Vec<Waiter> {
    match s.waiters.get(&item.key) {
        Some((load, _)) if *load == item.load => {
            s.waiters.remove(&item.key).map_or_else(Vec::new, |w| w.1)
        }
        _ => Vec::new(),
    }
}
