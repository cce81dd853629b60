//! [`MemcachedCache`]: the [`Cache`] seam on memcached, with never-older writes through CAS.
//!
//! Every operation reads the item with its CAS token (`mg <key> v c t`, the meta protocol of
//! memcached 1.6) and writes it back only if nobody changed it in between (`ms <key> C<cas>`), or
//! adds it only if it is still absent (`ms <key> ME`); on a conflict it reads again. So a put and
//! an invalidation are atomic per key, like the Redis scripts, and the higher version wins
//! whatever the order in which concurrent writers land.
//!
//! memcached has one expiry per item and no atomic multi-key update, so the floor lives in the
//! same item as the entry (see [`crate::codec`]). A tombstone (floor only) lives `floor_ttl`
//! (default one day, capped at memcached's 30 days). When a newer entry is stored over a floor,
//! the floor lives exactly as long as that entry, which is what the [`Cache`] contract asks
//! (older writes are refused for at least as long as entries live).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_memcached::{Client, MetaProtocol, Status};
use async_trait::async_trait;
use prescient_core::{Cache, CacheError, EntityKey, Entry, PutOutcome, Version};
use tokio::sync::{Mutex, MutexGuard};
use tracing::warn;

use crate::codec::{Item, item_key, ttl_secs, valid_prefix};

/// Why the memcached cache could not be built.
#[derive(Debug, thiserror::Error)]
pub enum MemcachedError {
    /// The options are invalid.
    #[error("invalid memcached options: {0}")]
    Config(String),
    /// The server could not be reached.
    #[error("memcached unavailable: {0}")]
    Unavailable(String),
}

/// How to build a [`MemcachedCache`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemcachedCacheOptions {
    /// The server: `host:port` (read as `tcp://host:port`), `tcp://host:port` or `unix://path`.
    pub addr: String,
    /// The first part of every key (default `prescient`): printable ASCII without space, `%`,
    /// `#` or `:`.
    pub key_prefix: String,
    /// How many connections to keep (default 4).
    pub connections: usize,
    /// How long a tombstone (an invalidation floor without data) lives (default one day).
    pub floor_ttl: Duration,
    /// How long one operation, including a reconnect, may take (default 2 s).
    pub timeout: Duration,
    /// How many times a put or invalidation re-reads after losing a CAS race (default 64).
    pub max_cas_retries: usize,
}

impl MemcachedCacheOptions {
    /// Options for the server at `addr`, with the defaults for everything else.
    pub fn new(addr: impl Into<String>) -> Self {
        MemcachedCacheOptions {
            addr: addr.into(),
            key_prefix: "prescient".to_owned(),
            connections: 4,
            floor_ttl: Duration::from_secs(24 * 3600),
            timeout: Duration::from_secs(2),
            max_cas_retries: 64,
        }
    }

    /// Sets the key prefix.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// Sets the number of connections.
    pub fn connections(mut self, n: usize) -> Self {
        self.connections = n;
        self
    }

    /// Sets the tombstone time to live.
    pub fn floor_ttl(mut self, ttl: Duration) -> Self {
        self.floor_ttl = ttl;
        self
    }
}

/// A [`Cache`] on memcached. Cheap to clone; clones share the connections.
///
/// # Concurrent calls on the same key
/// Puts and invalidations are CAS loops: each writes only over the exact item it read, so of two
/// concurrent writers the higher version wins. Under heavy contention on one key a call gives up
/// after `max_cas_retries` lost races with [`CacheError::Backend`].
#[derive(Clone)]
pub struct MemcachedCache {
    inner: Arc<Inner>,
}

struct Inner {
    addr: String,
    prefix: String,
    pool: Vec<Mutex<Option<Client>>>,
    next: AtomicUsize,
    floor_ttl: Duration,
    timeout: Duration,
    max_cas_retries: usize,
}

impl fmt::Debug for MemcachedCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemcachedCache")
            .field("addr", &self.inner.addr)
            .field("prefix", &self.inner.prefix)
            .field("connections", &self.inner.pool.len())
            .finish_non_exhaustive()
    }
}

/// What one CAS attempt did.
enum Attempt<T> {
    Done(T),
    Retry,
}

/// async-memcached parses the address as a URL, so a bare `host:port` gets `tcp://`.
fn normalize_addr(addr: &str) -> String {
    if addr.contains("://") {
        addr.to_owned()
    } else {
        format!("tcp://{addr}")
    }
}

fn unavailable(e: impl fmt::Display) -> CacheError {
    CacheError::Unavailable(e.to_string())
}

impl MemcachedCache {
    /// Connects (one connection now, the others on first use).
    ///
    /// # Errors
    /// [`MemcachedError::Config`] for a bad prefix or zero connections,
    /// [`MemcachedError::Unavailable`] when the server cannot be reached.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn connect(opts: MemcachedCacheOptions) -> Result<Self, MemcachedError> {
        if !valid_prefix(&opts.key_prefix) {
            return Err(MemcachedError::Config(format!(
                "key prefix {:?} must be printable ASCII without space, '%', '#' or ':', at most 184 bytes",
                opts.key_prefix
            )));
        }
        if opts.connections == 0 {
            return Err(MemcachedError::Config(
                "connections must be at least 1".to_owned(),
            ));
        }
        let addr = normalize_addr(&opts.addr);
        let first = tokio::time::timeout(opts.timeout, Client::new(&addr))
            .await
            .map_err(|_| {
                MemcachedError::Unavailable(format!("connecting to {} timed out", opts.addr))
            })?
            .map_err(|e| MemcachedError::Unavailable(format!("{}: {e}", opts.addr)))?;
        let mut pool = Vec::with_capacity(opts.connections);
        pool.push(Mutex::new(Some(first)));
        pool.extend((1..opts.connections).map(|_| Mutex::new(None)));
        Ok(MemcachedCache {
            inner: Arc::new(Inner {
                addr,
                prefix: opts.key_prefix,
                pool,
                next: AtomicUsize::new(0),
                floor_ttl: opts.floor_ttl,
                timeout: opts.timeout,
                max_cas_retries: opts.max_cas_retries.max(1),
            }),
        })
    }

    /// The memcached key of an entity.
    pub fn item_key(&self, key: &EntityKey) -> String {
        item_key(&self.inner.prefix, key)
    }

    /// A connected client from the pool, reconnecting if its connection broke.
    async fn client(&self) -> Result<MutexGuard<'_, Option<Client>>, CacheError> {
        let i = self.inner.next.fetch_add(1, Ordering::Relaxed) % self.inner.pool.len();
        let mut guard = self.inner.pool[i].lock().await;
        if guard.as_ref().is_none_or(Client::is_closed) {
            let c = Client::new(&self.inner.addr).await.map_err(unavailable)?;
            *guard = Some(c);
        }
        Ok(guard)
    }

    /// Runs `op` on a pooled client under the timeout; a broken connection is dropped so the
    /// next call reconnects.
    async fn with_timeout<T>(
        &self,
        op: impl Future<Output = Result<T, CacheError>>,
    ) -> Result<T, CacheError> {
        match tokio::time::timeout(self.inner.timeout, op).await {
            Ok(r) => r,
            Err(_) => Err(CacheError::Unavailable(format!(
                "memcached at {} did not answer within {:?}",
                self.inner.addr, self.inner.timeout
            ))),
        }
    }

    async fn read(
        client: &mut Option<Client>,
        key: &str,
    ) -> Result<Option<(Item, u64, i64)>, CacheError> {
        let c = client
            .as_mut()
            .ok_or_else(|| CacheError::Unavailable("no connection".to_owned()))?;
        let v = match c.meta_get(key, false, None, Some(&["v", "c", "t"])).await {
            Ok(v) => v,
            Err(e) => {
                *client = None;
                return Err(unavailable(e));
            }
        };
        let Some(v) = v else {
            return Ok(None);
        };
        let data = v.data.unwrap_or_default();
        let item = Item::decode(&data).ok_or_else(|| CacheError::Malformed {
            key: key.to_owned(),
            reason: format!("value of {} bytes is shorter than its header", data.len()),
        })?;
        let cas = v.cas.ok_or_else(|| CacheError::Malformed {
            key: key.to_owned(),
            reason: "no CAS token in the reply".to_owned(),
        })?;
        Ok(Some((item, cas, v.ttl_remaining.unwrap_or(-1))))
    }

    /// Writes `item` over the read with token `cas`, or adds it when `cas` is `None`.
    /// `Ok(false)` when somebody else wrote first.
    async fn write(
        client: &mut Option<Client>,
        key: &str,
        item: &Item,
        cas: Option<u64>,
        ttl_secs: u64,
    ) -> Result<bool, CacheError> {
        let c = client
            .as_mut()
            .ok_or_else(|| CacheError::Unavailable("no connection".to_owned()))?;
        let mode = match cas {
            Some(cas) => format!("C{cas}"),
            None => "ME".to_owned(),
        };
        let ttl = format!("T{ttl_secs}");
        let value = item.encode();
        match c
            .meta_set(key, value.as_slice(), false, None, Some(&[&mode, &ttl]))
            .await
        {
            Ok(_) => Ok(true),
            Err(async_memcached::Error::Protocol(
                Status::Exists | Status::NotFound | Status::NotStored,
            )) => Ok(false),
            Err(e) => {
                *client = None;
                Err(unavailable(e))
            }
        }
    }

    async fn put_once(
        &self,
        key: &str,
        entry: &Entry,
        ttl: u64,
    ) -> Result<Attempt<PutOutcome>, CacheError> {
        let mut client = self.client().await?;
        let (floor, cas) = match Self::read(&mut client, key).await? {
            None => (Version::ZERO, None),
            Some((item, cas, _)) => {
                let mut winner = None;
                if entry.version < item.floor {
                    winner = Some(item.floor);
                }
                if item.is_live() && entry.version < item.version {
                    winner = Some(winner.map_or(item.version, |w| w.max(item.version)));
                }
                if let Some(current) = winner {
                    return Ok(Attempt::Done(PutOutcome::KeptNewer { current }));
                }
                (item.floor, Some(cas))
            }
        };
        let item = Item::live(entry, floor);
        Ok(if Self::write(&mut client, key, &item, cas, ttl).await? {
            Attempt::Done(PutOutcome::Stored)
        } else {
            Attempt::Retry
        })
    }

    async fn invalidate_once(
        &self,
        key: &str,
        min_version: Version,
    ) -> Result<Attempt<()>, CacheError> {
        let mut client = self.client().await?;
        let floor_ttl = ttl_secs(self.inner.floor_ttl);
        let written = match Self::read(&mut client, key).await? {
            None if min_version == Version::ZERO => return Ok(Attempt::Done(())),
            None => {
                Self::write(
                    &mut client,
                    key,
                    &Item::tombstone(min_version),
                    None,
                    floor_ttl,
                )
                .await?
            }
            Some((item, cas, remaining)) => {
                let floor = item.floor.max(min_version);
                if item.is_live() && item.version >= min_version {
                    if floor == item.floor {
                        return Ok(Attempt::Done(()));
                    }
                    // Keep the entry and its expiry; only the floor rises.
                    let ttl = u64::try_from(remaining).map_or(0, |r| r.max(1));
                    let kept = Item {
                        floor,
                        ..item.clone()
                    };
                    Self::write(&mut client, key, &kept, Some(cas), ttl).await?
                } else {
                    let ttl = u64::try_from(remaining).map_or(floor_ttl, |r| r.max(floor_ttl));
                    Self::write(&mut client, key, &Item::tombstone(floor), Some(cas), ttl).await?
                }
            }
        };
        Ok(if written {
            Attempt::Done(())
        } else {
            Attempt::Retry
        })
    }

    fn contention(&self, key: &str) -> CacheError {
        warn!(
            message = "Gave up after losing CAS races.",
            key,
            retries = self.inner.max_cas_retries
        );
        CacheError::Backend(format!(
            "{key}: lost {} CAS races in a row",
            self.inner.max_cas_retries
        ))
    }
}

#[async_trait]
impl Cache for MemcachedCache {
    async fn get(&self, key: &EntityKey) -> Result<Option<Entry>, CacheError> {
        let k = self.item_key(key);
        self.with_timeout(async {
            let mut client = self.client().await?;
            Ok(Self::read(&mut client, &k)
                .await?
                .and_then(|(item, _, _)| item.entry()))
        })
        .await
    }

    /// One round trip (quiet `mg` per key, then `mn`).
    async fn get_many(&self, keys: &[EntityKey]) -> Result<Vec<Option<Entry>>, CacheError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let item_keys: Vec<String> = keys.iter().map(|k| self.item_key(k)).collect();
        self.with_timeout(async {
            let mut client = self.client().await?;
            let c = client
                .as_mut()
                .ok_or_else(|| CacheError::Unavailable("no connection".to_owned()))?;
            let hits = match c.meta_get_multi(&item_keys, Some(&["v"])).await {
                Ok(h) => h,
                Err(e) => {
                    *client = None;
                    return Err(unavailable(e));
                }
            };
            let mut found: std::collections::HashMap<Vec<u8>, Option<Entry>> =
                std::collections::HashMap::with_capacity(hits.len());
            for h in hits {
                let (Some(k), Some(data)) = (h.key, h.data) else {
                    continue;
                };
                let entry = match Item::decode(&data) {
                    Some(item) => item.entry(),
                    None => {
                        warn!(message = "Malformed cache item; treated as a miss.", key = %String::from_utf8_lossy(&k));
                        None
                    }
                };
                found.insert(k, entry);
            }
            Ok(item_keys
                .iter()
                .map(|k| found.get(k.as_bytes()).cloned().flatten())
                .collect())
        })
        .await
    }

    async fn put(
        &self,
        key: &EntityKey,
        entry: Entry,
        ttl: Duration,
    ) -> Result<PutOutcome, CacheError> {
        let k = self.item_key(key);
        let ttl = ttl_secs(ttl);
        for _ in 0..self.inner.max_cas_retries {
            if let Attempt::Done(out) = self.with_timeout(self.put_once(&k, &entry, ttl)).await? {
                return Ok(out);
            }
        }
        Err(self.contention(&k))
    }

    async fn invalidate(&self, key: &EntityKey, min_version: Version) -> Result<(), CacheError> {
        let k = self.item_key(key);
        for _ in 0..self.inner.max_cas_retries {
            if let Attempt::Done(()) = self
                .with_timeout(self.invalidate_once(&k, min_version))
                .await?
            {
                return Ok(());
            }
        }
        Err(self.contention(&k))
    }
}
