//! Helpers shared by the integration tests: where Redis is, and unique names per run.

#![allow(dead_code)] // each test binary uses a different subset

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The URL of the test Redis (`PRESCIENT_TEST_REDIS`, default `redis://127.0.0.1:6379`), or
/// `None` after printing `SKIPPED` when it is unreachable. Under `CI=true` unreachable fails.
pub async fn redis_url(test: &str) -> Option<String> {
    let url = std::env::var("PRESCIENT_TEST_REDIS")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let reachable = async {
        let client = redis::Client::open(url.as_str()).ok()?;
        let mut con = client.get_multiplexed_async_connection().await.ok()?;
        let pong: String = redis::cmd("PING").query_async(&mut con).await.ok()?;
        Some(pong)
    };
    match tokio::time::timeout(Duration::from_secs(3), reachable).await {
        Ok(Some(_)) => Some(url),
        _ => {
            let why = format!("{test}: redis at {url} is unreachable");
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{why}");
            }
            println!("SKIPPED: {why}");
            None
        }
    }
}

/// A name unique to this process and call, for key prefixes and stream names.
pub fn unique(tag: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("ptest-{tag}-{}-{nanos}", std::process::id())
}

/// A plain connection, as a consumer in another language would use.
pub async fn plain(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}
