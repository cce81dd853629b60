//! Measures `RedisCache` latency and throughput against a live Redis and prints one JSON object
//! per measurement.
//!
//! ```text
//! cargo run --release -p prescient-redis --example redis_cache_bench -- [redis://127.0.0.1:6379] [keys] [value-bytes]
//! ```
//!
//! Keys use a fresh prefix and expire after 60 s.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a measuring tool: fail loudly

use prescient_redis::{RedisCache, RedisCacheOptions};
use prescient_testkit::cache_bench::{concurrent_puts, get_many, gets, puts, workload};

#[tokio::main]
async fn main() {
    let (url, w) = workload("redis://127.0.0.1:6379");
    let prefix = prescient_testkit::unique("pbench");
    let plain = RedisCache::connect(RedisCacheOptions::new(&url).key_prefix(&prefix))
        .await
        .expect("connect");
    let near = RedisCache::connect(
        RedisCacheOptions::new(&url)
            .key_prefix(&prefix)
            .near_cache(w.keys.len() as u64),
    )
    .await
    .expect("connect");

    puts("put", &plain, &w, 1).await;
    gets("get", &plain, &w).await;
    // The first pass fills the near cache; the second is measured.
    for k in &w.keys {
        prescient_core::Cache::get(&near, k).await.unwrap();
    }
    gets("get_near_hit", &near, &w).await;
    get_many("get_many_32", &plain, &w).await;
    get_many("get_many_32_near", &near, &w).await;
    concurrent_puts("put_16_tasks", &plain, &w).await;
}
