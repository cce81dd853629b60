//! Test support for the adapters' integration tests, which talk to live services.
//!
//! The rule every such test follows: the service's address comes from an environment variable
//! (`PRESCIENT_TEST_REDIS`, `PRESCIENT_TEST_POSTGRES`, ...) or the local default. When the
//! service cannot be reached, the test fails under `CI=true` and otherwise prints
//! `SKIPPED: <why>` and passes ([`unavailable`], [`available`]). Names of streams, queues,
//! tables and key prefixes are unique per run ([`unique`]), so that runs never see each other's
//! data.
//!
//! [`cache_bench`] holds the measurements the cache adapters' benchmark examples share.
//!
//! This crate is a dev-dependency only; it depends on the core alone, so any adapter can use it
//! without depending on another.

pub mod cache_bench;

use std::fmt::Display;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Whether the tests run under CI (`CI=true`), where an unreachable service is a failure.
pub fn in_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// The address in the environment variable `var`, else `default`.
pub fn service(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_owned())
}

/// A name unique to this process and call: `ptest_{tag}_{pid}_{n}_{nanos}`. With a `tag` of
/// lowercase letters, digits and underscores it is a valid SQL table name, JetStream stream
/// name, queue name and key prefix.
pub fn unique(tag: &str) -> String {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let n = CALLS.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("ptest_{tag}_{}_{n}_{nanos}", std::process::id())
}

/// A needed service is unreachable (`why` says which and how): fails under CI, otherwise
/// prints `SKIPPED: {why}` so that the caller can return early.
///
/// # Panics
/// Under `CI=true`, always.
pub fn unavailable(why: impl Display) {
    if in_ci() {
        panic!("{why} (an unreachable service fails the tests under CI=true)");
    }
    println!("SKIPPED: {why}");
}

/// Whether `connected` succeeded; when it did not, [`unavailable`] says so for `what`.
///
/// # Panics
/// Under `CI=true`, when `connected` is an error.
pub fn available<T, E: Display>(what: &str, connected: &Result<T, E>) -> bool {
    match connected {
        Ok(_) => true,
        Err(e) => {
            unavailable(format!("{what} unreachable: {e}"));
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_differ_and_stay_identifiers() {
        let (a, b) = (unique("orders"), unique("orders"));
        assert_ne!(a, b);
        assert!(a.starts_with("ptest_orders_"));
        assert!(
            a.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{a}"
        );
    }

    #[test]
    fn service_falls_back_to_the_default() {
        assert_eq!(
            service("PRESCIENT_TESTKIT_SURELY_UNSET", "redis://x:1"),
            "redis://x:1"
        );
    }

    #[test]
    fn an_available_service_goes_on() {
        assert!(available::<_, String>("x", &Ok(())));
    }
}
