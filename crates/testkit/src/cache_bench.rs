//! The measurements the cache adapters' `*_cache_bench` examples share: each one connects its
//! own [`Cache`] and runs these against it, printing one JSON object per measurement.

use std::time::{Duration, Instant};

use bytes::Bytes;
use prescient_core::{Cache, EntityKey, Entry, Version};

/// What a run works on: `keys` entities, each written with `data` and `ttl`.
#[derive(Debug, Clone)]
pub struct Workload {
    /// The entities.
    pub keys: Vec<EntityKey>,
    /// Each entry's value.
    pub data: Bytes,
    /// Each entry's time to live.
    pub ttl: Duration,
}

/// Reads the example's arguments `[address] [keys] [value-bytes]` (defaults: `default_url`,
/// 2000, 1024), prints them as the first JSON object and returns the address and the workload
/// (entries expire after 60 s).
pub fn workload(default_url: &str) -> (String, Workload) {
    let args: Vec<String> = std::env::args().collect();
    let url = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| default_url.to_owned());
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2000);
    let size: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(1024);
    println!(
        "{}",
        serde_json::json!({"url": url, "keys": n, "value_bytes": size})
    );
    let keys = (0..n)
        .map(|i| EntityKey::new("orders", format!("o-{i}")))
        .collect();
    let w = Workload {
        keys,
        data: Bytes::from(vec![b'x'; size]),
        ttl: Duration::from_secs(60),
    };
    (url, w)
}

/// Prints one measurement: calls, latency percentiles and operations per second.
pub fn report(name: &str, mut lat: Vec<Duration>, ops_per_call: usize, wall: Duration) {
    lat.sort();
    let q = |p: f64| {
        let us = lat
            .get(((lat.len() as f64 - 1.0) * p) as usize)
            .map_or(0.0, Duration::as_secs_f64)
            * 1e6;
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

/// Writes every key once, one after the other, at `version`.
///
/// # Panics
/// When a write fails: a measuring tool fails loudly.
pub async fn puts(name: &str, cache: &dyn Cache, w: &Workload, version: u64) {
    let mut lat = Vec::with_capacity(w.keys.len());
    let t = Instant::now();
    for k in &w.keys {
        let entry = Entry::new(Version(version), w.data.clone());
        if let Err(e) = timed(&mut lat, cache.put(k, entry, w.ttl)).await {
            panic!("{name}: put failed: {e}");
        }
    }
    report(name, lat, 1, t.elapsed());
}

/// Reads every key once, one after the other.
///
/// # Panics
/// When a read fails or misses.
pub async fn gets(name: &str, cache: &dyn Cache, w: &Workload) {
    let mut lat = Vec::with_capacity(w.keys.len());
    let t = Instant::now();
    for k in &w.keys {
        match timed(&mut lat, cache.get(k)).await {
            Ok(Some(_)) => {}
            other => panic!("{name}: expected a hit, got {other:?}"),
        }
    }
    report(name, lat, 1, t.elapsed());
}

/// Reads the keys 32 at a time.
///
/// # Panics
/// When a read fails or misses.
pub async fn get_many(name: &str, cache: &dyn Cache, w: &Workload) {
    let mut lat = Vec::new();
    let t = Instant::now();
    for chunk in w.keys.chunks(32) {
        match timed(&mut lat, cache.get_many(chunk)).await {
            Ok(got) if got.iter().all(Option::is_some) => {}
            other => panic!("{name}: expected hits, got {other:?}"),
        }
    }
    report(name, lat, 32, t.elapsed());
}

/// Writes every key once more (version 2), from 16 tasks at once.
///
/// # Panics
/// When a write fails.
pub async fn concurrent_puts<C: Cache + Clone + 'static>(name: &str, cache: &C, w: &Workload) {
    const TASKS: usize = 16;
    let t = Instant::now();
    let mut handles = Vec::new();
    for task in 0..TASKS {
        let (c, w) = (cache.clone(), w.clone());
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            for k in w.keys.iter().skip(task).step_by(TASKS) {
                let entry = Entry::new(Version(2), w.data.clone());
                if let Err(e) = timed(&mut lat, c.put(k, entry, w.ttl)).await {
                    panic!("put failed: {e}");
                }
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for h in handles {
        match h.await {
            Ok(l) => lat.extend(l),
            Err(e) => panic!("{name}: a writer failed: {e}"),
        }
    }
    report(name, lat, 1, t.elapsed());
}
