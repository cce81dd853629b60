//! memcached adapter of Prescient: [`MemcachedCache`], the [`prescient_core::Cache`] seam on
//! memcached 1.6 or later (meta protocol), with never-older writes through compare-and-swap.
//!
//! # Layout
//! An entity `kind`/`id` is one item at `<prefix>:<kind>:<id>` (escaped, or hashed when longer
//! than 250 bytes; see [`codec`]) whose value is:
//!
//! | bytes | contents |
//! |---|---|
//! | 0..8 | the version, big-endian `u64` |
//! | 8..16 | the invalidation floor, big-endian `u64` (0 if never invalidated) |
//! | 16.. | the entity's data |
//!
//! The item holds an entry only when `version >= floor`; otherwise it is a tombstone that keeps
//! the floor after an invalidation removed older data. A reader in another language does `get`,
//! checks the length (at least 16) and the two numbers, and uses bytes 16.. as the data.
//!
//! Times to live are whole seconds, rounded up, between 1 s and 30 days (memcached reads larger
//! numbers as Unix times).

pub mod cache;
pub mod codec;

pub use cache::{MemcachedCache, MemcachedCacheOptions, MemcachedError};
