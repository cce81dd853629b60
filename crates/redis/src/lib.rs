//! Redis adapters of Prescient.
//!
//! - [`RedisCache`]: the [`prescient_core::Cache`] seam on Redis hashes, with atomic
//!   never-older writes (Lua), invalidation floors, one-round-trip batch reads and an optional
//!   near cache that checks versions with Redis on every read.
//! - [`RedisStreamSource`] and [`RedisStreamSink`]: the [`prescient_core::EventSource`] and
//!   [`prescient_core::EventSink`] seams on Redis Streams, with consumer groups, at-least-once
//!   acknowledgement, reclaiming of pending entries and a dead-letter stream.
//!
//! The key layout is in [`KeyLayout`] and, for readers in other languages, in
//! `docs/redis-layout.md`.

pub mod cache;
pub mod error;
pub mod keys;
pub mod streams;

pub use cache::{NearCacheOptions, NearStats, RedisCache, RedisCacheOptions};
pub use error::RedisError;
pub use keys::KeyLayout;
pub use streams::{
    EVENT_FIELD, RedisStreamSink, RedisStreamSinkOptions, RedisStreamSource,
    RedisStreamSourceOptions,
};
