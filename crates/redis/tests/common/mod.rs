//! Helpers shared by the integration tests: where Redis is, and unique names per run.

#![allow(dead_code)] // each test binary uses a different subset

use std::time::Duration;

pub use prescient_testkit::unique;

/// The URL of the test Redis (`PRESCIENT_TEST_REDIS`, default `redis://127.0.0.1:6379`), or
/// `None` after printing `SKIPPED` when it is unreachable. Under `CI=true` unreachable fails.
pub async fn redis_url(test: &str) -> Option<String> {
    let url = prescient_testkit::service("PRESCIENT_TEST_REDIS", "redis://127.0.0.1:6379");
    let reachable = async {
        let client = redis::Client::open(url.as_str()).ok()?;
        let mut con = client.get_multiplexed_async_connection().await.ok()?;
        let pong: String = redis::cmd("PING").query_async(&mut con).await.ok()?;
        Some(pong)
    };
    match tokio::time::timeout(Duration::from_secs(3), reachable).await {
        Ok(Some(_)) => Some(url),
        _ => {
            prescient_testkit::unavailable(format!("{test}: redis at {url} is unreachable"));
            None
        }
    }
}

/// A plain connection, as a consumer in another language would use.
pub async fn plain(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}
