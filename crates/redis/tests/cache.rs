//! `RedisCache` against a live Redis: round trip, expiry, never-older writes under concurrency,
//! invalidation floors, the near cache and the documented layout.

#![allow(clippy::unwrap_used)] // test helpers fail loudly on setup errors

mod common;

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use prescient_core::{Cache, EntityKey, Entry, PutOutcome, Version};
use prescient_redis::{RedisCache, RedisCacheOptions};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const TTL: Duration = Duration::from_secs(60);

async fn cache(url: &str, prefix: &str) -> RedisCache {
    RedisCache::connect(RedisCacheOptions::new(url).key_prefix(prefix))
        .await
        .unwrap()
}

fn entry(v: u64) -> Entry {
    Entry::new(Version(v), Bytes::from(format!("data of v{v}")))
}

#[tokio::test]
async fn round_trip_and_get_many_order() {
    let Some(url) = common::redis_url("round_trip").await else {
        return;
    };
    let c = cache(&url, &common::unique("rt")).await;
    let a = EntityKey::new("orders", "o-1");
    let b = EntityKey::new("orders", "o-2");
    let missing = EntityKey::new("orders", "nope");
    let odd = EntityKey::new("we:ird", "x{1}%");

    assert_eq!(c.get(&a).await.unwrap(), None);
    assert_eq!(c.put(&a, entry(3), TTL).await.unwrap(), PutOutcome::Stored);
    assert_eq!(c.put(&b, entry(9), TTL).await.unwrap(), PutOutcome::Stored);
    assert_eq!(
        c.put(&odd, entry(1), TTL).await.unwrap(),
        PutOutcome::Stored
    );
    assert_eq!(c.get(&a).await.unwrap(), Some(entry(3)));

    let got = c
        .get_many(&[b.clone(), missing.clone(), a.clone(), odd.clone(), missing])
        .await
        .unwrap();
    assert_eq!(
        got,
        vec![Some(entry(9)), None, Some(entry(3)), Some(entry(1)), None]
    );
    assert_eq!(c.get_many(&[]).await.unwrap(), Vec::<Option<Entry>>::new());

    // Equal version is stored again; older is refused with the winner.
    assert_eq!(c.put(&a, entry(3), TTL).await.unwrap(), PutOutcome::Stored);
    assert_eq!(
        c.put(&a, entry(2), TTL).await.unwrap(),
        PutOutcome::KeptNewer {
            current: Version(3)
        }
    );
    assert_eq!(c.get(&a).await.unwrap(), Some(entry(3)));
    // Full u64 range round-trips exactly (Lua numbers are doubles; versions are compared as text).
    let big = EntityKey::new("orders", "big");
    let v_max = Entry::new(Version(u64::MAX), "max");
    let v_below = Entry::new(Version(u64::MAX - 1), "below");
    assert_eq!(
        c.put(&big, v_max.clone(), TTL).await.unwrap(),
        PutOutcome::Stored
    );
    assert_eq!(
        c.put(&big, v_below, TTL).await.unwrap(),
        PutOutcome::KeptNewer {
            current: Version(u64::MAX)
        }
    );
    assert_eq!(c.get(&big).await.unwrap(), Some(v_max));
}

#[tokio::test]
async fn entries_expire_after_their_ttl_in_milliseconds() {
    let Some(url) = common::redis_url("ttl").await else {
        return;
    };
    let prefix = common::unique("ttl");
    let c = cache(&url, &prefix).await;
    let k = EntityKey::new("orders", "short");
    c.put(&k, entry(1), Duration::from_millis(150))
        .await
        .unwrap();
    let mut con = common::plain(&url).await;
    let pttl: i64 = redis::cmd("PTTL")
        .arg(c.layout().data_key(&k))
        .query_async(&mut con)
        .await
        .unwrap();
    assert!((1..=150).contains(&pttl), "pttl {pttl}");
    assert_eq!(c.get(&k).await.unwrap(), Some(entry(1)));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(c.get(&k).await.unwrap(), None);
    // Expired data does not block older versions: only invalidation floors do.
    assert_eq!(c.put(&k, entry(0), TTL).await.unwrap(), PutOutcome::Stored);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_leave_the_highest_version() {
    let Some(url) = common::redis_url("concurrent").await else {
        return;
    };
    let prefix = common::unique("conc");
    let keys: Vec<EntityKey> = (0..8)
        .map(|i| EntityKey::new("orders", format!("o-{i}")))
        .collect();
    let mut tasks = Vec::new();
    for t in 0..16u64 {
        // Several instances (as several processes would), each shared by a few tasks.
        let c = cache(&url, &prefix).await;
        let keys = keys.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = SmallRng::seed_from_u64(t);
            let mut max: HashMap<EntityKey, u64> = HashMap::new();
            for _ in 0..150 {
                let k = &keys[rng.random_range(0..keys.len())];
                let v = rng.random_range(1..10_000u64);
                let out = c.put(k, entry(v), TTL).await.unwrap();
                if let PutOutcome::KeptNewer { current } = out {
                    assert!(current.0 > v, "refused {v} for {current}");
                }
                let m = max.entry(k.clone()).or_default();
                *m = (*m).max(v);
            }
            max
        }));
    }
    let mut max: HashMap<EntityKey, u64> = HashMap::new();
    for t in tasks {
        for (k, v) in t.await.unwrap() {
            let m = max.entry(k).or_default();
            *m = (*m).max(v);
        }
    }
    let c = cache(&url, &prefix).await;
    let got = c.get_many(&keys).await.unwrap();
    for (k, e) in keys.iter().zip(got) {
        assert_eq!(e, Some(entry(max[k])), "key {k}");
    }
}

#[tokio::test]
async fn invalidate_raises_a_floor_that_refuses_late_older_writes() {
    let Some(url) = common::redis_url("invalidate").await else {
        return;
    };
    let prefix = common::unique("inv");
    let c = cache(&url, &prefix).await;
    let k = EntityKey::new("orders", "o-1");
    c.put(&k, entry(5), TTL).await.unwrap();
    c.invalidate(&k, Version(7)).await.unwrap();
    assert_eq!(c.get(&k).await.unwrap(), None);
    // The slow prefetch that read version 6 arrives late.
    assert_eq!(
        c.put(&k, entry(6), TTL).await.unwrap(),
        PutOutcome::KeptNewer {
            current: Version(7)
        }
    );
    assert_eq!(c.get(&k).await.unwrap(), None);
    assert_eq!(c.put(&k, entry(7), TTL).await.unwrap(), PutOutcome::Stored);
    assert_eq!(c.get(&k).await.unwrap(), Some(entry(7)));
    // A lower invalidation keeps newer data and never lowers the floor.
    c.invalidate(&k, Version(3)).await.unwrap();
    assert_eq!(c.get(&k).await.unwrap(), Some(entry(7)));
    let mut con = common::plain(&url).await;
    let floor: String = redis::cmd("GET")
        .arg(c.layout().floor_key(&k))
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(floor, "7");

    // The floor outlives the entries: a short floor TTL is extended to a longer entry's.
    let short = RedisCache::connect(
        RedisCacheOptions::new(&url)
            .key_prefix(&prefix)
            .floor_ttl(Duration::from_millis(100)),
    )
    .await
    .unwrap();
    let k2 = EntityKey::new("orders", "o-2");
    short.invalidate(&k2, Version(2)).await.unwrap();
    short.put(&k2, entry(2), TTL).await.unwrap();
    let fttl: i64 = redis::cmd("PTTL")
        .arg(c.layout().floor_key(&k2))
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(fttl > 50_000, "floor pttl {fttl} shorter than the entry's");
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(
        short.put(&k2, entry(1), TTL).await.unwrap(),
        PutOutcome::KeptNewer {
            current: Version(2)
        }
    );
}

#[tokio::test]
async fn near_cache_is_not_stale_after_another_instance_writes() {
    let Some(url) = common::redis_url("near").await else {
        return;
    };
    let prefix = common::unique("near");
    let near = RedisCache::connect(
        RedisCacheOptions::new(&url)
            .key_prefix(&prefix)
            .near_cache(100),
    )
    .await
    .unwrap();
    let other = cache(&url, &prefix).await;
    let k = EntityKey::new("orders", "o-1");
    let k2 = EntityKey::new("orders", "o-2");

    near.put(&k, entry(1), TTL).await.unwrap();
    assert_eq!(near.get(&k).await.unwrap(), Some(entry(1)));
    assert_eq!(near.get(&k).await.unwrap(), Some(entry(1)));
    assert_eq!(
        near.near_stats().hits,
        2,
        "reads were not served by the near cache"
    );

    // Invalidation through another instance: the near copy must not be served.
    other.invalidate(&k, Version(2)).await.unwrap();
    assert_eq!(near.get(&k).await.unwrap(), None);
    assert_eq!(near.near_stats().stale, 1);

    // A newer version written elsewhere replaces the near copy on the next read.
    near.put(&k2, entry(1), TTL).await.unwrap();
    other.put(&k2, entry(4), TTL).await.unwrap();
    other.put(&k, entry(3), TTL).await.unwrap();
    assert_eq!(
        near.get_many(&[k2.clone(), k.clone()]).await.unwrap(),
        vec![Some(entry(4)), Some(entry(3))]
    );

    // Deleted behind our back with a plain client: a miss, not the near copy.
    let mut con = common::plain(&url).await;
    let _: i64 = redis::cmd("DEL")
        .arg(near.layout().data_key(&k2))
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(near.get(&k2).await.unwrap(), None);
    assert_eq!(near.get(&k).await.unwrap(), Some(entry(3)));
}

#[tokio::test]
async fn layout_is_readable_with_a_plain_client() {
    let Some(url) = common::redis_url("layout").await else {
        return;
    };
    let prefix = common::unique("layout");
    let c = cache(&url, &prefix).await;
    let k = EntityKey::new("orders", "o-1");
    c.put(&k, Entry::new(Version(42), &b"\x00\xffbin"[..]), TTL)
        .await
        .unwrap();
    let mut con = common::plain(&url).await;
    let (v, d): (String, Vec<u8>) = redis::cmd("HMGET")
        .arg(format!("{prefix}:{{orders:o-1}}"))
        .arg("v")
        .arg("d")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(v, "42");
    assert_eq!(d, b"\x00\xffbin");
}

#[tokio::test]
async fn clear_deletes_its_own_prefix_and_nothing_else() {
    let Some(url) = common::redis_url("clear").await else {
        return;
    };
    // A prefix with glob characters, next to one it would match if they were not escaped.
    let base = common::unique("clr");
    let mine = cache(&url, &format!("{base}*")).await;
    let other = cache(&url, &format!("{base}x")).await;
    let keys: Vec<EntityKey> = (0..2500)
        .map(|i| EntityKey::new("orders", format!("o-{i}")))
        .collect();
    for k in &keys {
        mine.put(k, entry(1), TTL).await.unwrap();
    }
    mine.invalidate(&keys[0], Version(2)).await.unwrap();
    other.put(&keys[1], entry(1), TTL).await.unwrap();
    // 2,499 entries (the invalidated one is gone) and its floor.
    assert_eq!(mine.clear().await.unwrap(), 2500);
    assert_eq!(mine.get(&keys[1]).await.unwrap(), None);
    assert_eq!(other.get(&keys[1]).await.unwrap(), Some(entry(1)));
    // The floor went too: an old version may be written again.
    assert_eq!(
        mine.put(&keys[0], entry(1), TTL).await.unwrap(),
        PutOutcome::Stored
    );
    assert_eq!(mine.clear().await.unwrap(), 1);
    assert_eq!(other.clear().await.unwrap(), 1);
}
