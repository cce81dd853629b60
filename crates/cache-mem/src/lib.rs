//! The embedded in-process cache: [`MemCache`], a moka cache of versioned entries.
//!
//! Writes are atomic per key (`and_compute_with`): a write lands only if its version is at least
//! the held version and at least the floor set by the last invalidation. Each entry carries its
//! own time to live. An invalidation leaves a floor marker (no data) that lives `floor_ttl`, so a
//! slow prefetch of an old version cannot resurrect it.
//!
//! moka measures time with its own monotonic clock: this cache is for wall-clock deployments.
//! Replays use the virtual-time caches of `prescient-replay`.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use moka::Expiry;
use moka::future::Cache as Moka;
use moka::ops::compute::Op;
use prescient_core::{Cache, CacheError, EntityKey, Entry, PutOutcome, Version};

#[derive(Debug, Clone)]
struct Slot {
    /// `None` for a floor marker left by an invalidation.
    entry: Option<Entry>,
    floor: Version,
    ttl: Duration,
}

impl Slot {
    fn version(&self) -> Version {
        self.entry
            .as_ref()
            .map_or(self.floor, |e| e.version.max(self.floor))
    }
}

struct PerEntry;

impl Expiry<EntityKey, Slot> for PerEntry {
    fn expire_after_create(&self, _: &EntityKey, v: &Slot, _: Instant) -> Option<Duration> {
        Some(v.ttl)
    }
    fn expire_after_update(
        &self,
        _: &EntityKey,
        v: &Slot,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(v.ttl)
    }
}

/// A bounded in-process cache of versioned entries. Cheap to clone; clones share entries.
#[derive(Clone)]
pub struct MemCache {
    inner: Moka<EntityKey, Slot>,
    floor_ttl: Duration,
}

impl std::fmt::Debug for MemCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemCache")
            .field("entries", &self.inner.entry_count())
            .finish()
    }
}

impl MemCache {
    /// A cache of at most `capacity` entries (floor markers included). Floors live `floor_ttl`,
    /// which should be at least the longest entry TTL.
    pub fn new(capacity: u64, floor_ttl: Duration) -> Self {
        MemCache {
            inner: Moka::builder()
                .max_capacity(capacity.max(1))
                .expire_after(PerEntry)
                .build(),
            floor_ttl,
        }
    }

    /// Entries held (approximate, as moka counts).
    pub fn len(&self) -> u64 {
        self.inner.entry_count()
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl Cache for MemCache {
    async fn get(&self, key: &EntityKey) -> Result<Option<Entry>, CacheError> {
        Ok(self
            .inner
            .get(key)
            .await
            .and_then(|s| s.entry.filter(|e| e.version >= s.floor)))
    }

    async fn put(
        &self,
        key: &EntityKey,
        entry: Entry,
        ttl: Duration,
    ) -> Result<PutOutcome, CacheError> {
        let mut outcome = PutOutcome::Stored;
        let new_version = entry.version;
        self.inner
            .entry(key.clone())
            .and_compute_with(|held| {
                let op = match held.map(|e| e.into_value()) {
                    Some(s) if s.version() > new_version => {
                        outcome = PutOutcome::KeptNewer {
                            current: s.version(),
                        };
                        Op::Nop
                    }
                    Some(s) => Op::Put(Slot {
                        entry: Some(entry),
                        floor: s.floor,
                        ttl,
                    }),
                    None => Op::Put(Slot {
                        entry: Some(entry),
                        floor: Version::ZERO,
                        ttl,
                    }),
                };
                std::future::ready(op)
            })
            .await;
        Ok(outcome)
    }

    async fn invalidate(&self, key: &EntityKey, min_version: Version) -> Result<(), CacheError> {
        let floor_ttl = self.floor_ttl;
        self.inner
            .entry(key.clone())
            .and_compute_with(|held| {
                let op = match held.map(|e| e.into_value()) {
                    Some(s)
                        if s.floor >= min_version
                            && s.entry.as_ref().is_none_or(|e| e.version >= min_version) =>
                    {
                        Op::Nop
                    }
                    Some(s) => {
                        let entry = s.entry.filter(|e| e.version >= min_version);
                        let ttl = if entry.is_some() { s.ttl } else { floor_ttl };
                        Op::Put(Slot {
                            entry,
                            floor: s.floor.max(min_version),
                            ttl,
                        })
                    }
                    None => Op::Put(Slot {
                        entry: None,
                        floor: min_version,
                        ttl: floor_ttl,
                    }),
                };
                std::future::ready(op)
            })
            .await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn key(i: u32) -> EntityKey {
        EntityKey::new("orders", i.to_string())
    }

    #[tokio::test]
    async fn never_older_and_floors() {
        let c = MemCache::new(100, Duration::from_secs(60));
        let ttl = Duration::from_secs(60);
        assert_eq!(
            c.put(&key(1), Entry::new(Version(5), "v5"), ttl)
                .await
                .unwrap(),
            PutOutcome::Stored
        );
        assert_eq!(
            c.put(&key(1), Entry::new(Version(4), "v4"), ttl)
                .await
                .unwrap(),
            PutOutcome::KeptNewer {
                current: Version(5)
            }
        );
        assert_eq!(c.get(&key(1)).await.unwrap().unwrap().version, Version(5));
        c.invalidate(&key(1), Version(6)).await.unwrap();
        assert_eq!(c.get(&key(1)).await.unwrap(), None);
        // A slow prefetch that read version 5 cannot bring it back.
        assert!(matches!(
            c.put(&key(1), Entry::new(Version(5), "v5"), ttl)
                .await
                .unwrap(),
            PutOutcome::KeptNewer { .. }
        ));
        assert_eq!(
            c.put(&key(1), Entry::new(Version(6), "v6"), ttl)
                .await
                .unwrap(),
            PutOutcome::Stored
        );
        assert_eq!(c.get(&key(1)).await.unwrap().unwrap().data, "v6");
        // Invalidating an entity never seen still sets a floor.
        c.invalidate(&key(2), Version(3)).await.unwrap();
        assert!(matches!(
            c.put(&key(2), Entry::new(Version(2), "x"), ttl)
                .await
                .unwrap(),
            PutOutcome::KeptNewer { .. }
        ));
    }

    #[tokio::test]
    async fn entries_expire_after_their_own_ttl() {
        let c = MemCache::new(100, Duration::from_secs(60));
        c.put(
            &key(1),
            Entry::new(Version(1), "a"),
            Duration::from_millis(30),
        )
        .await
        .unwrap();
        c.put(
            &key(2),
            Entry::new(Version(1), "b"),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert_eq!(c.get(&key(1)).await.unwrap(), None);
        assert!(c.get(&key(2)).await.unwrap().is_some());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writers_leave_the_highest_version() {
        let c = Arc::new(MemCache::new(1000, Duration::from_secs(60)));
        let mut tasks = Vec::new();
        for w in 0..8u64 {
            let c = c.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..200u64 {
                    let v = (i * 7 + w * 13) % 97;
                    c.put(
                        &key((i % 5) as u32),
                        Entry::new(Version(v), v.to_string()),
                        Duration::from_secs(60),
                    )
                    .await
                    .unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        for k in 0..5u32 {
            let max = (0..8u64)
                .flat_map(|w| {
                    (0..200u64)
                        .filter(move |i| i % 5 == u64::from(k))
                        .map(move |i| (i * 7 + w * 13) % 97)
                })
                .max()
                .unwrap();
            assert_eq!(c.get(&key(k)).await.unwrap().unwrap().version, Version(max));
        }
    }
}
