//! `prescient serve`: a long-running process that consumes an event stream from a broker,
//! prefetches the entities the next events will read into a shared cache, and answers an admin
//! HTTP API.
//!
//! - [`config`]: `prescient.toml` and `PRESCIENT_*` environment overrides (figment).
//! - [`build`]: turns the configuration into adapters (NATS, Redis Streams, RabbitMQ, files;
//!   memory, Redis, memcached; SQLite, PostgreSQL) and a predictor.
//! - [`serve`]: the loop: decode, dead-letter malformed messages, `on_event`, ack; reconnection
//!   with backoff; graceful shutdown.
//! - [`admin`]: `/healthz`, `/readyz`, `/metrics`, `/predict`, `/get`, `/model`.
//! - [`metrics`]: the Prometheus recorder of one instance.
//!
//! **Architecture Invariant:** the configuration's serde types live in this crate only; the
//! adapter crates take their own option structs and never depend on this crate or on each other.

pub mod admin;
pub mod build;
pub mod config;
pub mod error;
pub mod metrics;
pub mod models;
pub mod serve;
pub mod stats;

pub use config::{Config, ConfigError};
pub use error::ServerError;
pub use serve::{ServeReport, Service, shutdown_signal};
pub use stats::ServeStats;
