//! Measures `MemcachedCache` latency and throughput against a live memcached and prints one JSON object
//! per measurement.
//!
//! ```text
//! cargo run --release -p prescient-memcached --example memcached_cache_bench -- [127.0.0.1:11211] [keys] [value-bytes]
//! ```
//!
//! Keys use a fresh prefix and expire after 60 s.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a measuring tool: fail loudly

use prescient_memcached::{MemcachedCache, MemcachedCacheOptions};
use prescient_testkit::cache_bench::{concurrent_puts, get_many, gets, puts, workload};

#[tokio::main]
async fn main() {
    let (url, w) = workload("127.0.0.1:11211");
    let prefix = prescient_testkit::unique("pbench");
    let plain = MemcachedCache::connect(MemcachedCacheOptions::new(&url).key_prefix(&prefix))
        .await
        .expect("connect");

    puts("put", &plain, &w, 1).await;
    gets("get", &plain, &w).await;
    get_many("get_many_32", &plain, &w).await;
    concurrent_puts("put_16_tasks", &plain, &w).await;
}
