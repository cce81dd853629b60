//! Measures `MemcachedCache` latency and throughput against a live memcached and prints one JSON object
//! per measurement.
//!
//! ```text
//! cargo run --release -p prescient-memcached --example memcached_cache_bench -- [127.0.0.1:11211] [keys] [value-bytes]
//! ```
//!
//! Keys use a fresh prefix and expire after 60 s.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a measuring tool: fail loudly

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use prescient_core::{Cache, EntityKey, Entry, Version};
use prescient_memcached::{MemcachedCache, MemcachedCacheOptions};

fn report(name: &str, mut lat: Vec<Duration>, ops_per_call: usize, wall: Duration) {
    lat.sort();
    let q = |p: f64| {
        let us = lat[((lat.len() as f64 - 1.0) * p) as usize].as_secs_f64() * 1e6;
        (us * 10.0).round() / 10.0
    };
    let ops = (lat.len() * ops_per_call) as f64 / wall.as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "bench": name, "calls": lat.len(), "ops_per_call": ops_per_call,
            "p50_us": q(0.5), "p99_us": q(0.99), "ops_per_s": ops.round(),
        })
    );
}

async fn timed<F: Future>(lat: &mut Vec<Duration>, f: F) -> F::Output {
    let t = Instant::now();
    let out = f.await;
    lat.push(t.elapsed());
    out
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:11211".to_owned());
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2000);
    let size: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(1024);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let prefix = format!("pbench-{nanos}");
    let ttl = Duration::from_secs(60);
    let plain = MemcachedCache::connect(MemcachedCacheOptions::new(&url).key_prefix(&prefix))
        .await
        .expect("connect");
    let keys: Vec<EntityKey> = (0..n)
        .map(|i| EntityKey::new("orders", format!("o-{i}")))
        .collect();
    let data = Bytes::from(vec![b'x'; size]);
    println!(
        "{}",
        serde_json::json!({"url": url, "keys": n, "value_bytes": size})
    );

    let mut lat = Vec::with_capacity(n);
    let t = Instant::now();
    for k in &keys {
        timed(
            &mut lat,
            plain.put(k, Entry::new(Version(1), data.clone()), ttl),
        )
        .await
        .unwrap();
    }
    report("put", lat, 1, t.elapsed());

    let mut lat = Vec::with_capacity(n);
    let t = Instant::now();
    for k in &keys {
        let e = timed(&mut lat, plain.get(k)).await.unwrap();
        assert!(e.is_some());
    }
    report("get", lat, 1, t.elapsed());

    for (name, cache) in [("get_many_32", &plain)] {
        let mut lat = Vec::new();
        let t = Instant::now();
        for chunk in keys.chunks(32) {
            let got = timed(&mut lat, cache.get_many(chunk)).await.unwrap();
            assert!(got.iter().all(Option::is_some));
        }
        report(name, lat, 32, t.elapsed());
    }

    let tasks = 16;
    let t = Instant::now();
    let mut handles = Vec::new();
    for w in 0..tasks {
        let c = plain.clone();
        let keys = keys.clone();
        let data = data.clone();
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            for k in keys.iter().skip(w).step_by(tasks) {
                timed(
                    &mut lat,
                    c.put(k, Entry::new(Version(2), data.clone()), ttl),
                )
                .await
                .unwrap();
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for h in handles {
        lat.extend(h.await.unwrap());
    }
    report("put_16_tasks", lat, 1, t.elapsed());
}
