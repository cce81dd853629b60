//! The serve configuration: `prescient.toml` plus `PRESCIENT_`-prefixed environment variables.
//!
//! The file picks the event `source`, the `cache`, the `store` and the `predictor`, each with its
//! options, and tunes `[prefetch]` and `[admin]`. Environment variables override the file, with
//! `__` separating nested keys: `PRESCIENT_CACHE__URL=redis://10.0.0.5:6379` sets `cache.url`.
//! These serde types live only here, at the edge: [`crate::build`] converts them into the
//! adapters' own option builders.
//!
//! # Examples
//!
//! ```
//! let cfg = prescient_server::Config::from_toml_str(r#"
//! [source]
//! type = "file"
//! path = "events.jsonl"
//! [cache]
//! type = "memory"
//! [store]
//! type = "postgres"
//! url = "postgres://postgres@127.0.0.1:5432/test"
//! "#).unwrap();
//! assert_eq!(cfg.admin.bind.port(), 9464);
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use prescient_core::Secret;
use serde::{Deserialize, Serialize};

pub use crate::models::ModelKind;

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file or an environment variable has a missing, unknown or ill-typed key. The message
    /// names the key and what was expected.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl From<figment::Error> for ConfigError {
    fn from(e: figment::Error) -> Self {
        let mut parts = Vec::new();
        for err in e {
            let key = if err.path.is_empty() {
                String::from("(top level)")
            } else {
                err.path.join(".")
            };
            let from = err
                .metadata
                .as_ref()
                .map(|m| format!(" (from {})", m.name))
                .unwrap_or_default();
            parts.push(format!("key `{key}`{from}: {}", err.kind));
        }
        ConfigError::Invalid(parts.join("; "))
    }
}

/// The whole configuration of `prescient serve`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where events come from.
    pub source: SourceConfig,
    /// Where prefetched entities go.
    pub cache: CacheConfig,
    /// Where entities are loaded from.
    pub store: StoreConfig,
    /// Which model predicts.
    #[serde(default)]
    pub predictor: PredictorConfig,
    /// The prefetch planner's knobs.
    #[serde(default)]
    pub prefetch: PrefetchConfig,
    /// The admin HTTP API.
    #[serde(default)]
    pub admin: AdminConfig,
    /// The serve loop's knobs.
    #[serde(default)]
    pub serve: ServeConfig,
}

/// The top-level sections; environment variables outside them are ignored.
const SECTIONS: [&str; 7] = [
    "source",
    "cache",
    "store",
    "predictor",
    "prefetch",
    "admin",
    "serve",
];

impl Config {
    /// Loads `path` (TOML), then applies `PRESCIENT_*` environment overrides.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the key at fault, or the missing file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        if !path.exists() {
            return Err(ConfigError::Invalid(format!(
                "config file {} does not exist",
                path.display()
            )));
        }
        Self::extract(Figment::new().merge(Toml::file(path)))
    }

    /// Parses TOML text, then applies `PRESCIENT_*` environment overrides.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the key at fault.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        Self::extract(Figment::new().merge(Toml::string(text)))
    }

    /// Applies `PRESCIENT_*` environment overrides to a configuration built in code, as
    /// [`Config::load`] does to a file's, then checks it: a tool that builds its `serve` in code
    /// (`prescient bench live`) is tuned by the same variables as `serve`.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the key at fault.
    ///
    /// # Examples
    ///
    /// ```
    /// use prescient_server::config::{CacheConfig, Config, SourceConfig, StoreConfig};
    ///
    /// let cfg = Config {
    ///     source: SourceConfig::File { path: "events.jsonl".into(), format: None },
    ///     cache: CacheConfig::Memory { capacity: 1_000 },
    ///     store: StoreConfig::Sqlite { path: "store.db".into() },
    ///     predictor: Default::default(),
    ///     prefetch: Default::default(),
    ///     admin: Default::default(),
    ///     serve: Default::default(),
    /// }
    /// .with_env_overrides()
    /// .unwrap();
    /// assert_eq!(cfg.prefetch.threshold, 0.5);
    /// ```
    pub fn with_env_overrides(self) -> Result<Config, ConfigError> {
        Self::extract(Figment::from(Serialized::defaults(self)))
    }

    fn extract(fig: Figment) -> Result<Config, ConfigError> {
        let env = Env::prefixed("PRESCIENT_")
            .filter(|k| {
                let k = k.as_str().to_ascii_lowercase();
                let first = k.split("__").next().unwrap_or("");
                SECTIONS.contains(&first)
            })
            .split("__");
        let cfg: Config = fig.merge(env).extract()?;
        cfg.check()?;
        Ok(cfg)
    }

    /// Checks what the types alone cannot.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the keys at fault.
    pub fn check(&self) -> Result<(), ConfigError> {
        let p = &self.predictor;
        match (p.model, &p.neural) {
            (ModelKind::Neural | ModelKind::Ensemble, None) => {
                return Err(ConfigError::Invalid(
                    "key `predictor.neural`: model = \"neural\" and \"ensemble\" need the \
                     directory of a model written by `prescient train --model neural`"
                        .into(),
                ));
            }
            (kind, Some(_)) if !kind.is_neural() => {
                return Err(ConfigError::Invalid(
                    "key `predictor.neural`: only model = \"neural\" or \"ensemble\" uses a \
                     neural model"
                        .into(),
                ));
            }
            _ => {}
        }
        if let Some(token) = &self.admin.token
            && token.expose().trim().chars().count() < AdminConfig::MIN_TOKEN_CHARS
        {
            return Err(ConfigError::Invalid(format!(
                "key `admin.token`: a token needs at least {} characters (try `openssl rand \
                 -hex 32`)",
                AdminConfig::MIN_TOKEN_CHARS
            )));
        }
        if self.predictor.memory_mb == Some(0) {
            return Err(ConfigError::Invalid(
                "key `predictor.memory_mb`: must be at least 1 (MiB)".into(),
            ));
        }
        if self.admin.max_body_bytes == 0 {
            return Err(ConfigError::Invalid(
                "key `admin.max_body_bytes`: must be at least 1".into(),
            ));
        }
        if self.serve.clock == ServeClock::Event && self.serve.event_time != EventTime::Event {
            return Err(ConfigError::Invalid(
                "key `serve.clock`: \"event\" follows the events' own times and needs \
                 `serve.event_time = \"event\"`"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// The event source.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum SourceConfig {
    /// Replays a log file (JSON Lines, CSV, OCEL 2.0, ...) once, then stops.
    File {
        /// The log.
        path: PathBuf,
        /// Its format (default: from the file name).
        #[serde(default)]
        format: Option<String>,
    },
    /// A NATS JetStream durable pull consumer.
    Nats {
        /// Server URL.
        #[serde(default = "default_nats_url")]
        url: String,
        /// The JetStream stream (created if missing).
        #[serde(default = "default_nats_stream")]
        stream: String,
        /// The subjects the stream captures when created.
        #[serde(default = "default_nats_subjects")]
        subjects: Vec<String>,
        /// The durable consumer's name.
        #[serde(default = "default_durable")]
        durable: String,
        /// Where malformed messages go.
        #[serde(default = "default_nats_dead")]
        dead_letter_subject: String,
        /// Messages per pull.
        #[serde(default = "default_batch")]
        batch: usize,
        /// Seconds before an unacked message is redelivered.
        #[serde(default = "default_ack_wait")]
        ack_wait_secs: u64,
        /// The user, for a server that requires a user and password (a user and password in
        /// `url` work too).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user: Option<String>,
        /// The password of `user`; best set from the environment
        /// (`PRESCIENT_SOURCE__PASSWORD`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        password: Option<Secret>,
        /// An authentication token.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<Secret>,
        /// A credentials file (user JWT and NKey seed).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        creds_file: Option<PathBuf>,
        /// A CA certificate (PEM) to trust for the server.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tls_ca: Option<PathBuf>,
        /// A client certificate (PEM) for mutual TLS, with `tls_key`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tls_cert: Option<PathBuf>,
        /// The client certificate's key (PEM).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tls_key: Option<PathBuf>,
        /// Refuse to connect without TLS.
        #[serde(default)]
        tls_required: bool,
    },
    /// A Redis Streams consumer group.
    RedisStreams {
        /// Server URL.
        #[serde(default = "default_redis_url")]
        url: String,
        /// The stream key.
        #[serde(default = "default_redis_stream")]
        stream: String,
        /// The consumer group.
        #[serde(default = "default_durable")]
        group: String,
        /// This consumer's name in the group.
        #[serde(default = "default_durable")]
        consumer: String,
        /// Entries per read.
        #[serde(default = "default_batch")]
        batch: usize,
        /// Seconds after which another consumer's pending entries are claimed.
        #[serde(default = "default_claim_idle")]
        claim_min_idle_secs: u64,
    },
    /// A RabbitMQ queue with manual acks.
    Amqp {
        /// Broker URL.
        #[serde(default = "default_amqp_url")]
        url: String,
        /// The queue (dead letters go to `<queue>.dead`).
        #[serde(default = "default_amqp_queue")]
        queue: String,
        /// Unacked messages the broker sends ahead.
        #[serde(default = "default_amqp_prefetch")]
        prefetch: u16,
    },
}

impl SourceConfig {
    /// Messages per pull (NATS) or entries per read (Redis Streams) when the file does not say.
    pub const DEFAULT_BATCH: usize = 500;
    /// Seconds before NATS redelivers an unacked message when the file does not say.
    pub const DEFAULT_ACK_WAIT_SECS: u64 = 30;
}

/// The cache.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum CacheConfig {
    /// In-process (moka): one serve process and its in-process consumers only.
    Memory {
        /// The most entries.
        #[serde(default = "default_capacity")]
        capacity: u64,
    },
    /// Redis, shared with consumers in any language (see `docs/redis-layout.md`).
    Redis {
        /// Server URL.
        #[serde(default = "default_redis_url")]
        url: String,
        /// Prefix of every key.
        #[serde(default = "default_key_prefix")]
        key_prefix: String,
        /// Entries of an in-process near cache in front of Redis (0: none).
        #[serde(default)]
        near_cache: u64,
    },
    /// memcached, with CAS for never-older writes.
    Memcached {
        /// `host:port`.
        #[serde(default = "default_memcached_addr")]
        addr: String,
        /// Prefix of every key.
        #[serde(default = "default_key_prefix")]
        key_prefix: String,
        /// Connections in the pool.
        #[serde(default = "default_connections")]
        connections: usize,
    },
}

/// The store.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum StoreConfig {
    /// A SQLite file with the default `(kind, id, version, data)` table.
    Sqlite {
        /// The database file.
        path: PathBuf,
    },
    /// PostgreSQL.
    Postgres {
        /// libpq-style URL.
        #[serde(default = "default_pg_url")]
        url: String,
        /// Pool size.
        #[serde(default = "default_pool")]
        pool_size: usize,
        /// The default table for kinds without their own query (`""`: none).
        #[serde(default = "default_table")]
        table: String,
        /// Per-kind queries taking `$1 text[]` and returning `(id, version, data)`.
        #[serde(default)]
        queries: HashMap<String, String>,
        /// Create the default table if it is missing.
        #[serde(default = "yes")]
        ensure_schema: bool,
    },
}

impl StoreConfig {
    /// PostgreSQL connections in the pool when the file does not say.
    pub const DEFAULT_POOL_SIZE: usize = 8;
}

/// Which model predicts.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredictorConfig {
    /// `online` (the default model, learning as events arrive), `relational`, `simple` (the
    /// baseline), `neural` or `ensemble`.
    #[serde(default)]
    pub model: ModelKind,
    /// A snapshot of the online model to start from (written by `prescient train`).
    #[serde(default)]
    pub snapshot: Option<PathBuf>,
    /// The neural model's artifact directory (written by `prescient train --model neural`),
    /// for `model = "neural"` or `"ensemble"`. `POST /model` on the admin API swaps in another
    /// one while serving.
    #[serde(default)]
    pub neural: Option<PathBuf>,
    /// The memory, in MiB, that the online model may spend on the entities it tracks: it
    /// forgets the least recently seen past the number that fits (`docs/deployment.md` gives
    /// the cost of one). Without it, each part keeps at most a million entities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<usize>,
}

/// The prefetch planner's knobs (see `prescient_prefetch::PlannerConfig`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrefetchConfig {
    /// The least confidence worth a prefetch.
    pub threshold: f32,
    /// Milliseconds before the expected read that a prefetch is loaded.
    pub lead_ms: u64,
    /// Shortest TTL of a prefetched entry, in milliseconds.
    pub min_ttl_ms: u64,
    /// Longest TTL of a prefetched entry (the data-age limit), in milliseconds.
    pub max_ttl_ms: u64,
    /// TTL of entries filled by consumer misses, in milliseconds.
    pub demand_ttl_ms: u64,
    /// Budget: prefetch loads earned per consumer read.
    pub budget_per_read: f64,
    /// Budget: prefetch loads earned per second.
    pub budget_per_second: f64,
    /// Budget: the most prefetch loads that can be saved up.
    pub budget_burst: f64,
    /// The most entities in one store batch.
    pub batch_size: usize,
    /// The most prefetched entities in flight at once.
    pub concurrency: usize,
    /// Attempts per failed load, the first included.
    pub retry_attempts: u32,
    /// Delay before the first retry, in milliseconds.
    pub retry_base_ms: u64,
    /// Consecutive predictor failures that open the breaker.
    pub breaker_failures: u32,
    /// Seconds the breaker stays open.
    pub breaker_open_secs: u64,
    /// Milliseconds the predictor may take per event.
    pub predict_timeout_ms: u64,
    /// Milliseconds a store load may take.
    pub store_timeout_ms: u64,
    /// Milliseconds without an event after which the predictor is asked what comes due
    /// (refreshes due before the next event), and again every as long; unset: `max_ttl_ms`,
    /// the data-age limit; 0: only at events.
    pub tick_ms: Option<u64>,
}

impl Default for PrefetchConfig {
    fn default() -> Self {
        PrefetchConfig {
            threshold: 0.5,
            lead_ms: 20,
            min_ttl_ms: 1_000,
            max_ttl_ms: 3_600_000,
            demand_ttl_ms: 3_600_000,
            budget_per_read: 1.0,
            budget_per_second: 0.0,
            budget_burst: 4_096.0,
            batch_size: 64,
            concurrency: 512,
            retry_attempts: 3,
            retry_base_ms: 20,
            breaker_failures: 5,
            breaker_open_secs: 10,
            predict_timeout_ms: 50,
            store_timeout_ms: 2_000,
            tick_ms: None,
        }
    }
}

/// The admin HTTP API.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Where it listens; keep it on loopback unless a proxy guards it.
    pub bind: SocketAddr,
    /// Whether to serve it at all.
    pub enabled: bool,
    /// A bearer token every request but `/healthz` and `/readyz` must carry
    /// (`Authorization: Bearer TOKEN`). Without one, a bind off loopback refuses `POST /model`.
    /// Set it from the environment (`PRESCIENT_ADMIN__TOKEN`) rather than in a file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
    /// The largest request body accepted, in bytes.
    pub max_body_bytes: usize,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 9464)),
            enabled: true,
            token: None,
            max_body_bytes: 64 * 1024,
        }
    }
}

impl AdminConfig {
    /// The shortest token accepted.
    pub const MIN_TOKEN_CHARS: usize = 16;
}

/// How event times are read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventTime {
    /// Stamp each event with its arrival time (wall clock): right for replays of old logs and
    /// for producers whose clocks drift.
    #[default]
    Arrival,
    /// Trust the event's own `time` (producers stamp events with the current time).
    Event,
}

/// The clock the prefetcher plans with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServeClock {
    /// Wall-clock time: loads are scheduled against the system time (production).
    #[default]
    Wall,
    /// Event time: the clock stands at the latest event time processed and moves only with the
    /// events (`prescient_core::EventClock`), as replay's virtual time does. For feeding a
    /// recorded log faster than it happened (the live benchmark); needs `event_time = "event"`.
    Event,
}

/// The serve loop's knobs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    /// Which time the predictor sees.
    pub event_time: EventTime,
    /// Which clock the prefetcher plans with.
    pub clock: ServeClock,
    /// Longest backoff between reconnection attempts, in milliseconds.
    pub max_backoff_ms: u64,
    /// Seconds to wait for in-flight loads at shutdown.
    pub shutdown_grace_secs: u64,
    /// The most deliveries processed together: after waiting for one, the loop takes up to this
    /// many that are already at hand, sends their invalidations at once, predicts them in order
    /// and acks them (1: one event at a time).
    pub batch: usize,
    /// A delivery the broker has made this many times without an ack is dead-lettered
    /// instead of processed: a message that crashed or wedged the process before would
    /// otherwise be redelivered forever. 0 turns this off.
    pub max_deliveries: u32,
    /// `/readyz` answers not ready while one batch has been processing for longer than this
    /// many seconds (the cache unreachable, say, holding invalidations).
    pub stall_secs: u64,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            event_time: EventTime::Arrival,
            clock: ServeClock::Wall,
            max_backoff_ms: 5_000,
            shutdown_grace_secs: 10,
            batch: 256,
            max_deliveries: 5,
            stall_secs: 30,
        }
    }
}

impl ServeConfig {
    /// The longest backoff.
    pub fn max_backoff(&self) -> Duration {
        Duration::from_millis(self.max_backoff_ms.max(1))
    }
}

fn yes() -> bool {
    true
}
fn default_nats_url() -> String {
    "nats://127.0.0.1:4222".into()
}
fn default_nats_stream() -> String {
    "PRESCIENT_EVENTS".into()
}
fn default_nats_subjects() -> Vec<String> {
    vec!["prescient.events.>".into()]
}
fn default_durable() -> String {
    "prescient".into()
}
fn default_nats_dead() -> String {
    "prescient.dead".into()
}
fn default_batch() -> usize {
    SourceConfig::DEFAULT_BATCH
}
fn default_ack_wait() -> u64 {
    SourceConfig::DEFAULT_ACK_WAIT_SECS
}
fn default_redis_url() -> String {
    "redis://127.0.0.1:6379".into()
}
fn default_redis_stream() -> String {
    "prescient:events".into()
}
fn default_claim_idle() -> u64 {
    60
}
fn default_amqp_url() -> String {
    "amqp://guest:guest@127.0.0.1:5672/%2f".into()
}
fn default_amqp_queue() -> String {
    "prescient.events".into()
}
fn default_amqp_prefetch() -> u16 {
    500
}
fn default_capacity() -> u64 {
    1_000_000
}
fn default_key_prefix() -> String {
    "prescient".into()
}
fn default_memcached_addr() -> String {
    "127.0.0.1:11211".into()
}
fn default_connections() -> usize {
    4
}
fn default_pg_url() -> String {
    "postgres://postgres@127.0.0.1:5432/test".into()
}
fn default_pool() -> usize {
    StoreConfig::DEFAULT_POOL_SIZE
}
fn default_table() -> String {
    "prescient_entities".into()
}
