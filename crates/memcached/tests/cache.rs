//! `MemcachedCache` against a live memcached: round trip, never-older writes under concurrent
//! writers, invalidation floors, expiry and the documented value layout.

#![allow(clippy::unwrap_used)] // test helpers fail loudly on setup errors

use std::collections::HashMap;
use std::time::Duration;

use async_memcached::{AsciiProtocol, Client};
use bytes::Bytes;
use prescient_core::{Cache, EntityKey, Entry, PutOutcome, Version};
use prescient_memcached::{MemcachedCache, MemcachedCacheOptions};
use prescient_testkit::{service, unavailable, unique};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const TTL: Duration = Duration::from_secs(60);

/// The test server (`PRESCIENT_TEST_MEMCACHED`, default `127.0.0.1:11211`), or `None` after
/// printing `SKIPPED` when unreachable. Under `CI=true` unreachable fails.
async fn addr(test: &str) -> Option<String> {
    let addr = service("PRESCIENT_TEST_MEMCACHED", "127.0.0.1:11211");
    let reachable = async {
        let mut c = Client::new(dsn(&addr)).await.ok()?;
        c.version().await.ok()
    };
    match tokio::time::timeout(Duration::from_secs(3), reachable).await {
        Ok(Some(_)) => Some(addr),
        _ => {
            unavailable(format!("{test}: memcached at {addr} is unreachable"));
            None
        }
    }
}

/// async-memcached wants `tcp://` in front of a bare `host:port`.
fn dsn(addr: &str) -> String {
    if addr.contains("://") {
        addr.to_owned()
    } else {
        format!("tcp://{addr}")
    }
}

async fn cache(addr: &str, prefix: &str) -> MemcachedCache {
    MemcachedCache::connect(MemcachedCacheOptions::new(addr).key_prefix(prefix))
        .await
        .unwrap()
}

fn entry(v: u64) -> Entry {
    Entry::new(Version(v), Bytes::from(format!("data of v{v}")))
}

#[tokio::test]
async fn round_trip_and_get_many_order() {
    let Some(addr) = addr("round_trip").await else {
        return;
    };
    let c = cache(&addr, &unique("rt")).await;
    let a = EntityKey::new("orders", "o-1");
    let b = EntityKey::new("orders", "o 2\n");
    let long = EntityKey::new("orders", "x".repeat(400));
    let missing = EntityKey::new("orders", "nope");

    assert_eq!(c.get(&a).await.unwrap(), None);
    assert_eq!(c.put(&a, entry(3), TTL).await.unwrap(), PutOutcome::Stored);
    assert_eq!(c.put(&b, entry(9), TTL).await.unwrap(), PutOutcome::Stored);
    assert_eq!(
        c.put(&long, entry(1), TTL).await.unwrap(),
        PutOutcome::Stored
    );
    assert_eq!(c.get(&a).await.unwrap(), Some(entry(3)));
    assert_eq!(
        c.get_many(&[b.clone(), missing.clone(), a.clone(), long.clone(), missing])
            .await
            .unwrap(),
        vec![Some(entry(9)), None, Some(entry(3)), Some(entry(1)), None]
    );
    assert_eq!(c.put(&a, entry(3), TTL).await.unwrap(), PutOutcome::Stored);
    assert_eq!(
        c.put(&a, entry(2), TTL).await.unwrap(),
        PutOutcome::KeptNewer {
            current: Version(3)
        }
    );
    assert_eq!(c.get(&a).await.unwrap(), Some(entry(3)));
}

#[tokio::test]
async fn value_layout_is_version_floor_data() {
    let Some(addr) = addr("layout").await else {
        return;
    };
    let prefix = unique("layout");
    let c = cache(&addr, &prefix).await;
    let k = EntityKey::new("orders", "o-1");
    c.put(&k, Entry::new(Version(42), "payload"), TTL)
        .await
        .unwrap();
    c.invalidate(&k, Version(40)).await.unwrap();
    let mut plain = Client::new(dsn(&addr)).await.unwrap();
    let v = plain
        .get(format!("{prefix}:orders:o-1"))
        .await
        .unwrap()
        .unwrap();
    let data = v.data.unwrap();
    assert_eq!(&data[..8], &42u64.to_be_bytes());
    assert_eq!(&data[8..16], &40u64.to_be_bytes());
    assert_eq!(&data[16..], b"payload");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_leave_the_highest_version() {
    let Some(addr) = addr("concurrent").await else {
        return;
    };
    let prefix = unique("conc");
    let keys: Vec<EntityKey> = (0..4)
        .map(|i| EntityKey::new("orders", format!("o-{i}")))
        .collect();
    let mut tasks = Vec::new();
    for t in 0..12u64 {
        let c = cache(&addr, &prefix).await;
        let keys = keys.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = SmallRng::seed_from_u64(t);
            let mut max: HashMap<EntityKey, u64> = HashMap::new();
            for i in 0..150 {
                let k = &keys[rng.random_range(0..keys.len())];
                let v = rng.random_range(1..10_000u64);
                if i % 10 == 0 {
                    // Invalidations interleave; they never remove the max below.
                    c.invalidate(k, Version(v)).await.unwrap();
                }
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
    let c = cache(&addr, &prefix).await;
    let got = c.get_many(&keys).await.unwrap();
    for (k, e) in keys.iter().zip(got) {
        assert_eq!(e, Some(entry(max[k])), "key {k}");
    }
}

#[tokio::test]
async fn invalidate_raises_a_floor_that_refuses_late_older_writes() {
    let Some(addr) = addr("invalidate").await else {
        return;
    };
    let c = cache(&addr, &unique("inv")).await;
    let k = EntityKey::new("orders", "o-1");
    c.put(&k, entry(5), TTL).await.unwrap();
    c.invalidate(&k, Version(7)).await.unwrap();
    assert_eq!(c.get(&k).await.unwrap(), None);
    assert_eq!(
        c.put(&k, entry(6), TTL).await.unwrap(),
        PutOutcome::KeptNewer {
            current: Version(7)
        }
    );
    assert_eq!(c.get(&k).await.unwrap(), None);
    assert_eq!(c.put(&k, entry(7), TTL).await.unwrap(), PutOutcome::Stored);
    assert_eq!(c.get(&k).await.unwrap(), Some(entry(7)));
    // A lower invalidation keeps newer data; the floor does not go down.
    c.invalidate(&k, Version(3)).await.unwrap();
    assert_eq!(c.get(&k).await.unwrap(), Some(entry(7)));
    c.invalidate(&k, Version(9)).await.unwrap();
    assert_eq!(
        c.put(&k, entry(8), TTL).await.unwrap(),
        PutOutcome::KeptNewer {
            current: Version(9)
        }
    );
    // Invalidating a key never cached leaves a floor too.
    let fresh = EntityKey::new("orders", "never");
    c.invalidate(&fresh, Version(4)).await.unwrap();
    assert_eq!(c.get(&fresh).await.unwrap(), None);
    assert_eq!(
        c.put(&fresh, entry(3), TTL).await.unwrap(),
        PutOutcome::KeptNewer {
            current: Version(4)
        }
    );
    assert_eq!(
        c.put(&fresh, entry(4), TTL).await.unwrap(),
        PutOutcome::Stored
    );
}

#[tokio::test]
async fn entries_expire_after_their_ttl() {
    let Some(addr) = addr("ttl").await else {
        return;
    };
    let c = cache(&addr, &unique("ttl")).await;
    let k = EntityKey::new("orders", "short");
    // 1 ms rounds up to memcached's 1 s.
    c.put(&k, entry(1), Duration::from_millis(1)).await.unwrap();
    assert_eq!(c.get(&k).await.unwrap(), Some(entry(1)));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(c.get(&k).await.unwrap(), None);
}
