//! [`RedisCache`]: the [`Cache`] seam on Redis, with atomic never-older writes and an optional
//! near cache.
//!
//! Each entity is a hash `<prefix>:{<kind>:<id>}` with fields `v` (the version in decimal) and
//! `d` (the data bytes), expiring after the entry's time to live; its invalidation floor is a
//! string `<prefix>:{<kind>:<id>}:floor` holding a decimal version (see [`KeyLayout`] and
//! `docs/redis-layout.md`). Writes and invalidations are Lua scripts (run with `EVALSHA`), so
//! each is atomic: a put stores only when its version is at least the stored version and at least
//! the floor, and an invalidation raises the floor and deletes older data in one step. Because
//! the hash never holds a version below the floor, a reader needs only `HMGET key v d`.
//!
//! The floor lives for `floor_ttl` (default one day) after each invalidation, and never shorter
//! than any entry of the same entity: both scripts extend the floor's expiry to the entry's when
//! the entry would outlive it.
//!
//! # Near cache
//! With [`NearCacheOptions`] an in-process [moka](moka::future::Cache) cache keeps recently read
//! or written entries. It never serves a version that Redis no longer holds: every read of a
//! near-cached key still asks Redis for the stored version (`HGET key v`, a few bytes) in the same
//! pipeline as the other keys of the batch, and serves the local data only when the versions are
//! equal. Expired, invalidated or replaced entries are dropped from the near cache on that check.
//! The trade-off: a near hit still costs its share of one round trip, but not the transfer and
//! copy of the data. RESP3 client tracking would save the round trip, but it leaves a window
//! between a write and the processing of its invalidation push, and must be rebuilt after every
//! reconnect; the version check has no such window. Measured with the `redis_cache_bench` example
//! against a local Redis and 1 KiB values, near hits were no faster than plain reads (p50 86 µs
//! against 82 µs on a loaded 2-core machine): the round trip dominates, so the near cache only
//! pays off for large values or a slow link.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use prescient_core::{Cache, CacheError, EntityKey, Entry, PutOutcome, Version};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Script, Value};
use tracing::warn;

use crate::error::{RedisError, cache_err};
use crate::keys::KeyLayout;

/// Compares two decimal version strings without leading zeros (exact for all of `u64`,
/// unlike Lua's doubles).
const LUA_LT: &str = r"
local function lt(a, b)
  if #a ~= #b then return #a < #b end
  return a < b
end
";

/// KEYS[1] = data hash, KEYS[2] = floor; ARGV[1] = version, ARGV[2] = data, ARGV[3] = ttl (ms).
/// Returns {1, version} when stored, {0, winner} when a newer version or floor won.
const PUT_BODY: &str = r"
local nv = ARGV[1]
local ttl = tonumber(ARGV[3])
local winner = nil
local f = redis.call('GET', KEYS[2])
if f and lt(nv, f) then winner = f end
local cur = redis.call('HGET', KEYS[1], 'v')
if cur and lt(nv, cur) and ((not winner) or lt(winner, cur)) then winner = cur end
if winner then return {0, winner} end
redis.call('HSET', KEYS[1], 'v', nv, 'd', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if f then
  local fttl = redis.call('PTTL', KEYS[2])
  if fttl >= 0 and fttl < ttl then redis.call('PEXPIRE', KEYS[2], ARGV[3]) end
end
return {1, nv}
";

/// KEYS[1] = data hash, KEYS[2] = floor; ARGV[1] = min version, ARGV[2] = floor ttl (ms).
/// Returns the floor now in force.
const INVALIDATE_BODY: &str = r"
local nv = ARGV[1]
local ttl = tonumber(ARGV[2])
local f = redis.call('GET', KEYS[2])
if (not f) or lt(f, nv) then f = nv end
local dttl = redis.call('PTTL', KEYS[1])
if dttl > ttl then ttl = dttl end
local fttl = redis.call('PTTL', KEYS[2])
if fttl > ttl then ttl = fttl end
redis.call('SET', KEYS[2], f, 'PX', ttl)
local cur = redis.call('HGET', KEYS[1], 'v')
if cur and lt(cur, nv) then redis.call('DEL', KEYS[1]) end
return f
";

/// Options of the in-process near cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NearCacheOptions {
    /// The most entries the near cache holds.
    pub capacity: u64,
}

/// How to build a [`RedisCache`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisCacheOptions {
    /// The server, e.g. `redis://127.0.0.1:6379` (see the `redis` crate for the URL forms).
    pub url: String,
    /// The first part of every key (default `prescient`); must not contain `{` or `}`.
    pub key_prefix: String,
    /// The optional in-process near cache (default none).
    pub near_cache: Option<NearCacheOptions>,
    /// How long an invalidation floor lives at least (default one day).
    pub floor_ttl: Duration,
    /// How long one command may take before it fails (default 2 s).
    pub response_timeout: Duration,
    /// How long one connection attempt may take (default 1 s).
    pub connection_timeout: Duration,
}

impl RedisCacheOptions {
    /// Options for the server at `url`, with the defaults for everything else.
    pub fn new(url: impl Into<String>) -> Self {
        RedisCacheOptions {
            url: url.into(),
            key_prefix: "prescient".to_owned(),
            near_cache: None,
            floor_ttl: Duration::from_secs(24 * 3600),
            response_timeout: Duration::from_secs(2),
            connection_timeout: Duration::from_secs(1),
        }
    }

    /// Sets the key prefix.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// Enables the near cache with room for `capacity` entries.
    pub fn near_cache(mut self, capacity: u64) -> Self {
        self.near_cache = Some(NearCacheOptions { capacity });
        self
    }

    /// Sets the floor's time to live.
    pub fn floor_ttl(mut self, ttl: Duration) -> Self {
        self.floor_ttl = ttl;
        self
    }

    /// Sets the command timeout.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Sets the connection timeout.
    pub fn connection_timeout(mut self, timeout: Duration) -> Self {
        self.connection_timeout = timeout;
        self
    }
}

/// Counters of the near cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NearStats {
    /// Reads answered with near-cached data after Redis confirmed the version.
    pub hits: u64,
    /// Near-cached entries found stale (replaced, expired or invalidated in Redis) and dropped.
    pub stale: u64,
}

#[derive(Default)]
struct NearCounters {
    hits: AtomicU64,
    stale: AtomicU64,
}

/// A [`Cache`] on Redis. Cheap to clone; clones share the connection and the near cache.
///
/// # Concurrent calls on the same key
/// `put` and `invalidate` are single Lua scripts, so they are atomic in Redis with respect to
/// each other and to other processes running the same scripts: of two concurrent writers the
/// higher version wins whatever the order in which they land.
#[derive(Clone)]
pub struct RedisCache {
    conn: ConnectionManager,
    layout: KeyLayout,
    near: Option<moka::future::Cache<EntityKey, Entry>>,
    counters: Arc<NearCounters>,
    floor_ttl_ms: u64,
    put_script: Arc<Script>,
    invalidate_script: Arc<Script>,
}

impl fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisCache")
            .field("prefix", &self.layout.prefix())
            .field("near_cache", &self.near.as_ref().map(|n| n.entry_count()))
            .field("floor_ttl_ms", &self.floor_ttl_ms)
            .finish_non_exhaustive()
    }
}

/// A connection manager that reconnects on its own, failing fast while the server is down.
pub(crate) async fn connection_manager(
    url: &str,
    response_timeout: Duration,
    connection_timeout: Duration,
) -> Result<ConnectionManager, RedisError> {
    let client = redis::Client::open(url).map_err(|e| {
        RedisError::Config(format!("url {:?}: {e}", prescient_core::redact_url(url)))
    })?;
    let config = ConnectionManagerConfig::new()
        .set_response_timeout(Some(response_timeout))
        .set_connection_timeout(Some(connection_timeout))
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(500));
    Ok(ConnectionManager::new_with_config(client, config).await?)
}

/// Longest time to live sent to Redis: 100 years (Lua keeps integers below 2^53 exact).
const MAX_TTL_MS: u64 = 100 * 365 * 24 * 3600 * 1000;

/// A duration in whole milliseconds, at least 1 and at most [`MAX_TTL_MS`].
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis())
        .unwrap_or(u64::MAX)
        .clamp(1, MAX_TTL_MS)
}

fn parse_version(s: &str) -> Option<Version> {
    s.parse::<u64>().ok().map(Version)
}

impl RedisCache {
    /// Connects to Redis.
    ///
    /// # Errors
    /// [`RedisError::Config`] for a bad URL or key prefix, [`RedisError::Unavailable`] when the
    /// server cannot be reached.
    ///
    /// # Cancel safety
    /// Cancel safe: nothing is written.
    pub async fn connect(opts: RedisCacheOptions) -> Result<Self, RedisError> {
        let layout = KeyLayout::new(opts.key_prefix.clone())?;
        let conn =
            connection_manager(&opts.url, opts.response_timeout, opts.connection_timeout).await?;
        let near = opts.near_cache.map(|n| {
            moka::future::Cache::builder()
                .max_capacity(n.capacity)
                .build()
        });
        Ok(RedisCache {
            conn,
            layout,
            near,
            counters: Arc::new(NearCounters::default()),
            floor_ttl_ms: millis(opts.floor_ttl),
            put_script: Arc::new(Script::new(&format!("{LUA_LT}{PUT_BODY}"))),
            invalidate_script: Arc::new(Script::new(&format!("{LUA_LT}{INVALIDATE_BODY}"))),
        })
    }

    /// The key layout, to compute the Redis keys of entities.
    pub fn layout(&self) -> &KeyLayout {
        &self.layout
    }

    /// Deletes every key under this cache's prefix (entries and invalidation floors): `SCAN`
    /// for `<prefix>:{*` a batch at a time, `UNLINK` each batch. For a process that owns its
    /// prefix (a benchmark run, a test) and should leave nothing behind; returns how many keys
    /// were deleted. Clears the near cache too. On a cluster it sees one node's keys only.
    ///
    /// # Errors
    /// [`RedisError`] when Redis fails; keys deleted before the failure stay deleted.
    pub async fn clear(&self) -> Result<u64, RedisError> {
        let mut pattern = String::with_capacity(self.layout.prefix().len() + 3);
        for c in self.layout.prefix().chars() {
            // `SCAN MATCH` is a glob: its special characters in the prefix match themselves.
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push_str(":{*");
        let mut conn = self.conn.clone();
        let mut cursor: u64 = 0;
        let mut deleted = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await?;
            if !keys.is_empty() {
                let n: u64 = redis::cmd("UNLINK")
                    .arg(&keys)
                    .query_async(&mut conn)
                    .await?;
                deleted += n;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        if let Some(near) = &self.near {
            near.invalidate_all();
        }
        Ok(deleted)
    }

    /// The near cache's counters (zero without a near cache).
    pub fn near_stats(&self) -> NearStats {
        NearStats {
            hits: self.counters.hits.load(Ordering::Relaxed),
            stale: self.counters.stale.load(Ordering::Relaxed),
        }
    }

    /// Decodes the reply of `HMGET key v d`; a half-written or foreign value is a miss.
    fn decode_full(&self, key: &EntityKey, value: Value) -> Option<Entry> {
        let (v, d): (Option<String>, Option<Vec<u8>>) = match redis::from_redis_value(value) {
            Ok(x) => x,
            Err(error) => {
                warn!(message = "Unreadable cache entry; treated as a miss.", %error, entity = %key);
                return None;
            }
        };
        match (v.as_deref().map(parse_version), d) {
            (None, _) => None,
            (Some(Some(version)), Some(data)) => Some(Entry::new(version, Bytes::from(data))),
            (Some(_), _) => {
                warn!(message = "Malformed cache entry; treated as a miss.", entity = %key);
                None
            }
        }
    }

    async fn fetch_full(&self, keys: &[&EntityKey]) -> Result<Vec<Option<Entry>>, CacheError> {
        let mut pipe = redis::pipe();
        for k in keys {
            pipe.cmd("HMGET")
                .arg(self.layout.data_key(k))
                .arg("v")
                .arg("d");
        }
        let mut conn = self.conn.clone();
        let values: Vec<Value> = pipe.query_async(&mut conn).await.map_err(cache_err)?;
        if values.len() != keys.len() {
            return Err(CacheError::Backend(format!(
                "pipeline returned {} replies for {} keys",
                values.len(),
                keys.len()
            )));
        }
        let mut out = Vec::with_capacity(keys.len());
        for (k, v) in keys.iter().zip(values) {
            let e = self.decode_full(k, v);
            if let (Some(near), Some(e)) = (&self.near, &e) {
                near.insert((*k).clone(), e.clone()).await;
            }
            out.push(e);
        }
        Ok(out)
    }
}

#[async_trait]
impl Cache for RedisCache {
    async fn get(&self, key: &EntityKey) -> Result<Option<Entry>, CacheError> {
        let mut v = self.get_many(std::slice::from_ref(key)).await?;
        Ok(v.pop().flatten())
    }

    /// One round trip for the whole batch (two if a near-cached entry turns out replaced).
    async fn get_many(&self, keys: &[EntityKey]) -> Result<Vec<Option<Entry>>, CacheError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let Some(near) = &self.near else {
            let refs: Vec<&EntityKey> = keys.iter().collect();
            return self.fetch_full(&refs).await;
        };
        let mut local = Vec::with_capacity(keys.len());
        let mut pipe = redis::pipe();
        for k in keys {
            let hit = near.get(k).await;
            let dk = self.layout.data_key(k);
            if hit.is_some() {
                pipe.cmd("HGET").arg(dk).arg("v");
            } else {
                pipe.cmd("HMGET").arg(dk).arg("v").arg("d");
            }
            local.push(hit);
        }
        let mut conn = self.conn.clone();
        let values: Vec<Value> = pipe.query_async(&mut conn).await.map_err(cache_err)?;
        if values.len() != keys.len() {
            return Err(CacheError::Backend(format!(
                "pipeline returned {} replies for {} keys",
                values.len(),
                keys.len()
            )));
        }
        let mut out: Vec<Option<Entry>> = Vec::with_capacity(keys.len());
        let mut refetch: Vec<usize> = Vec::new();
        for (i, ((k, hit), value)) in keys.iter().zip(local).zip(values).enumerate() {
            match hit {
                None => {
                    let e = self.decode_full(k, value);
                    if let Some(e) = &e {
                        near.insert(k.clone(), e.clone()).await;
                    }
                    out.push(e);
                }
                Some(e) => {
                    let stored: Option<String> = redis::from_redis_value(value).unwrap_or(None);
                    match stored.as_deref().and_then(parse_version) {
                        Some(v) if v == e.version => {
                            self.counters.hits.fetch_add(1, Ordering::Relaxed);
                            out.push(Some(e));
                        }
                        Some(_) => {
                            self.counters.stale.fetch_add(1, Ordering::Relaxed);
                            near.invalidate(k).await;
                            refetch.push(i);
                            out.push(None);
                        }
                        None => {
                            self.counters.stale.fetch_add(1, Ordering::Relaxed);
                            near.invalidate(k).await;
                            out.push(None);
                        }
                    }
                }
            }
        }
        if !refetch.is_empty() {
            let refs: Vec<&EntityKey> = refetch.iter().map(|&i| &keys[i]).collect();
            let fresh = self.fetch_full(&refs).await?;
            for (i, e) in refetch.into_iter().zip(fresh) {
                out[i] = e;
            }
        }
        Ok(out)
    }

    async fn put(
        &self,
        key: &EntityKey,
        entry: Entry,
        ttl: Duration,
    ) -> Result<PutOutcome, CacheError> {
        let mut conn = self.conn.clone();
        let (stored, version): (i64, String) = self
            .put_script
            .key(self.layout.data_key(key))
            .key(self.layout.floor_key(key))
            .arg(entry.version.0.to_string())
            .arg(entry.data.as_ref())
            .arg(millis(ttl))
            .invoke_async(&mut conn)
            .await
            .map_err(cache_err)?;
        if stored == 1 {
            if let Some(near) = &self.near {
                near.insert(key.clone(), entry).await;
            }
            return Ok(PutOutcome::Stored);
        }
        let current = parse_version(&version).ok_or_else(|| CacheError::Malformed {
            key: key.to_string(),
            reason: format!("stored version {version:?} is not a decimal u64"),
        })?;
        if let Some(near) = &self.near
            && near.get(key).await.is_some_and(|e| e.version < current)
        {
            near.invalidate(key).await;
        }
        Ok(PutOutcome::KeptNewer { current })
    }

    async fn invalidate(&self, key: &EntityKey, min_version: Version) -> Result<(), CacheError> {
        let mut conn = self.conn.clone();
        let _floor: String = self
            .invalidate_script
            .key(self.layout.data_key(key))
            .key(self.layout.floor_key(key))
            .arg(min_version.0.to_string())
            .arg(self.floor_ttl_ms)
            .invoke_async(&mut conn)
            .await
            .map_err(cache_err)?;
        if let Some(near) = &self.near
            && near.get(key).await.is_some_and(|e| e.version < min_version)
        {
            near.invalidate(key).await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_rounds_up_to_one_and_saturates() {
        assert_eq!(millis(Duration::ZERO), 1);
        assert_eq!(millis(Duration::from_micros(1500)), 1);
        assert_eq!(millis(Duration::from_secs(2)), 2000);
        assert_eq!(millis(Duration::MAX), MAX_TTL_MS);
    }

    #[test]
    fn versions_parse_as_decimal_u64() {
        assert_eq!(parse_version("0"), Some(Version(0)));
        assert_eq!(
            parse_version("18446744073709551615"),
            Some(Version(u64::MAX))
        );
        assert_eq!(parse_version("x"), None);
        assert_eq!(parse_version("-1"), None);
    }
}
