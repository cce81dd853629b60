//! Builds the adapters that a [`Config`] names: the event source, the cache, the store and the
//! predictor, and the [`PrefetcherConfig`] from `[prefetch]`.
//!
//! Each adapter's own options builder is filled from the serde config here; the adapter crates
//! know nothing about the configuration file.

use std::sync::Arc;
use std::time::Duration;

use prescient_core::{Cache, EventSource, Local, Predictor, Store};
use prescient_io::FileSource;
use prescient_neural::ModelSlot;
use prescient_prefetch::{
    BreakerConfig, BudgetConfig, Offloaded, PlannerConfig, PrefetcherConfig, RetryConfig,
};

use crate::config::{CacheConfig, Config, PrefetchConfig, SourceConfig, StoreConfig};
use crate::error::ServerError;
use crate::models::{ModelSpec, build_model};

/// Connects the event source that `cfg` names.
///
/// # Errors
/// [`ServerError::Source`] when the broker cannot be reached or the file cannot be read.
pub async fn build_source(cfg: &SourceConfig) -> Result<Box<dyn EventSource>, ServerError> {
    Ok(match cfg {
        SourceConfig::File { path, format } => {
            let format = match format {
                Some(f) => Some(
                    f.parse::<prescient_io::Format>()
                        .map_err(|e| ServerError::Config(format!("source.format: {e}")))?,
                ),
                None => None,
            };
            let opts = prescient_io::ImportOptions {
                format,
                ..Default::default()
            };
            let path = path.clone();
            let log = tokio::task::spawn_blocking(move || {
                prescient_io::read_log(&path, &opts, &mut |_, _| {})
            })
            .await
            .map_err(ServerError::source)?
            .map_err(ServerError::source)?;
            Box::new(FileSource::new(log.events))
        }
        SourceConfig::Nats {
            url,
            stream,
            subjects,
            durable,
            dead_letter_subject,
            batch,
            ack_wait_secs,
            user,
            password,
            token,
            creds_file,
            tls_ca,
            tls_cert,
            tls_key,
            tls_required,
        } => {
            let opts = prescient_nats::NatsSourceOptions {
                url: url.clone(),
                auth: prescient_nats::NatsAuth {
                    user: user.clone(),
                    password: password.clone(),
                    token: token.clone(),
                    creds_file: creds_file.clone(),
                    tls_ca: tls_ca.clone(),
                    tls_cert: tls_cert.clone(),
                    tls_key: tls_key.clone(),
                    tls_required: *tls_required,
                },
                stream: stream.clone(),
                subjects: subjects.clone(),
                durable: durable.clone(),
                dead_letter_subject: dead_letter_subject.clone(),
                batch: *batch,
                ack_wait: Duration::from_secs((*ack_wait_secs).max(1)),
                ..Default::default()
            };
            Box::new(
                prescient_nats::NatsSource::connect(opts)
                    .await
                    .map_err(ServerError::source)?,
            )
        }
        SourceConfig::RedisStreams {
            url,
            stream,
            group,
            consumer,
            batch,
            claim_min_idle_secs,
        } => {
            let opts = prescient_redis::RedisStreamSourceOptions::new(
                url.clone(),
                stream.clone(),
                group.clone(),
                consumer.clone(),
            )
            .batch(*batch)
            .claim_min_idle(Duration::from_secs(*claim_min_idle_secs));
            Box::new(
                prescient_redis::RedisStreamSource::connect(opts)
                    .await
                    .map_err(ServerError::source)?,
            )
        }
        SourceConfig::Amqp {
            url,
            queue,
            prefetch,
        } => {
            let opts = prescient_amqp::AmqpSourceOptions {
                url: url.clone(),
                queue: queue.clone(),
                prefetch: *prefetch,
                ..Default::default()
            };
            Box::new(
                prescient_amqp::AmqpSource::connect(opts)
                    .await
                    .map_err(ServerError::source)?,
            )
        }
    })
}

/// Connects the cache that `cfg` names. `floor_ttl` should be at least the longest entry TTL.
///
/// # Errors
/// [`ServerError::Cache`] when the cache cannot be reached.
pub async fn build_cache(
    cfg: &CacheConfig,
    floor_ttl: Duration,
) -> Result<Arc<dyn Cache>, ServerError> {
    Ok(match cfg {
        CacheConfig::Memory { capacity } => {
            Arc::new(prescient_cache_mem::MemCache::new(*capacity, floor_ttl))
        }
        CacheConfig::Redis {
            url,
            key_prefix,
            near_cache,
        } => {
            let mut opts = prescient_redis::RedisCacheOptions::new(url.clone())
                .key_prefix(key_prefix.clone())
                .floor_ttl(floor_ttl);
            if *near_cache > 0 {
                opts = opts.near_cache(*near_cache);
            }
            Arc::new(
                prescient_redis::RedisCache::connect(opts)
                    .await
                    .map_err(ServerError::cache)?,
            )
        }
        CacheConfig::Memcached {
            addr,
            key_prefix,
            connections,
        } => {
            let opts = prescient_memcached::MemcachedCacheOptions::new(addr.clone())
                .key_prefix(key_prefix.clone())
                .connections(*connections)
                .floor_ttl(floor_ttl);
            Arc::new(
                prescient_memcached::MemcachedCache::connect(opts)
                    .await
                    .map_err(ServerError::cache)?,
            )
        }
    })
}

/// Opens the store that `cfg` names.
///
/// # Errors
/// [`ServerError::Store`] when the store cannot be reached or a configured query is wrong.
pub async fn build_store(cfg: &StoreConfig) -> Result<Arc<dyn Store>, ServerError> {
    Ok(match cfg {
        StoreConfig::Sqlite { path } => {
            Arc::new(prescient_sqlite::SqliteStore::open(path).map_err(ServerError::store)?)
        }
        StoreConfig::Postgres {
            url,
            pool_size,
            table,
            queries,
            ensure_schema,
        } => {
            let mut opts = prescient_postgres::PgStoreOptions::new(url.clone())
                .with_table((!table.is_empty()).then(|| table.clone()));
            opts.pool_size = *pool_size;
            for (kind, sql) in queries {
                opts = opts.with_query(kind.clone(), sql.clone());
            }
            let store = prescient_postgres::PgStore::connect(opts)
                .await
                .map_err(ServerError::store)?;
            if *ensure_schema {
                store.ensure_schema().await.map_err(ServerError::store)?;
            }
            store.check_queries().await.map_err(ServerError::store)?;
            Arc::new(store)
        }
    })
}

/// The predictor `[predictor]` names, and the slot of its neural model if it has one.
#[derive(Debug, Clone)]
pub struct BuiltPredictor {
    /// The predictor.
    pub predictor: Arc<dyn Predictor>,
    /// Where the neural model is served from (`model = "neural"` or `"ensemble"`): swapping
    /// a model into it changes the predictions from the next event on.
    pub model_slot: Option<ModelSlot>,
}

/// Builds the predictor that `[predictor]` names ([`crate::models::build_model`]), run on a
/// thread of its own ([`Offloaded`]) so that the prediction deadline can give up on it.
///
/// # Errors
/// [`ServerError::Config`] when the snapshot or the neural model cannot be read or does not fit
/// the model.
pub fn build_predictor(cfg: &Config) -> Result<BuiltPredictor, ServerError> {
    let p = &cfg.predictor;
    let spec = ModelSpec {
        kind: p.model,
        snapshot: p.snapshot.clone(),
        neural: p.neural.clone(),
        // The data-age limit: the longest a prefetched copy may be kept (what times refreshes).
        max_age: Some(Duration::from_millis(cfg.prefetch.max_ttl_ms.max(1))),
        memory_mb: p.memory_mb,
        ..ModelSpec::default()
    };
    let built = build_model(&spec).map_err(|e| ServerError::Config(format!("[predictor]: {e}")))?;
    let local: Arc<dyn Predictor> = Arc::new(Local::new(built.model));
    let predictor = Offloaded::new(local).map_err(|e| {
        ServerError::Config(format!("[predictor]: cannot start the model's thread: {e}"))
    })?;
    Ok(BuiltPredictor {
        predictor: Arc::new(predictor),
        model_slot: built.slot,
    })
}

/// The prefetcher's settings from `[prefetch]`.
///
/// # Errors
/// [`ServerError::Config`] naming the key of an out-of-range value.
pub fn prefetcher_config(p: &PrefetchConfig) -> Result<PrefetcherConfig, ServerError> {
    if !(0.0..=1.0).contains(&p.threshold) {
        return Err(ServerError::Config(format!(
            "prefetch.threshold: expected a probability in [0, 1], found {}",
            p.threshold
        )));
    }
    if p.min_ttl_ms > p.max_ttl_ms {
        return Err(ServerError::Config(format!(
            "prefetch.min_ttl_ms ({}) must not exceed prefetch.max_ttl_ms ({})",
            p.min_ttl_ms, p.max_ttl_ms
        )));
    }
    if p.batch_size == 0 || p.concurrency == 0 {
        return Err(ServerError::Config(
            "prefetch.batch_size and prefetch.concurrency: expected at least 1".into(),
        ));
    }
    let ms = Duration::from_millis;
    for (key, v) in [
        ("budget_per_read", p.budget_per_read),
        ("budget_per_second", p.budget_per_second),
        ("budget_burst", p.budget_burst),
    ] {
        if !(v >= 0.0 && v.is_finite()) {
            return Err(ServerError::Config(format!(
                "prefetch.{key}: expected a finite number >= 0, found {v}"
            )));
        }
    }
    let budget = BudgetConfig {
        per_read: p.budget_per_read,
        per_second: p.budget_per_second,
        burst: p.budget_burst,
    };
    let planner = PlannerConfig {
        threshold: p.threshold,
        lead: ms(p.lead_ms),
        batch_size: p.batch_size,
        max_in_flight: p.concurrency,
        min_ttl: ms(p.min_ttl_ms),
        max_ttl: ms(p.max_ttl_ms),
        budget,
        retry: RetryConfig {
            max_attempts: p.retry_attempts.max(1),
            base: ms(p.retry_base_ms),
            ..RetryConfig::default()
        },
        ..PlannerConfig::default()
    };
    Ok(PrefetcherConfig {
        planner,
        breaker: BreakerConfig {
            failure_threshold: p.breaker_failures.max(1),
            open_for: Duration::from_secs(p.breaker_open_secs),
        },
        predict_timeout: ms(p.predict_timeout_ms.max(1)),
        store_timeout: ms(p.store_timeout_ms.max(1)),
        demand_ttl: ms(p.demand_ttl_ms.max(1)),
        tick: Some(ms(p.tick_ms.unwrap_or(p.max_ttl_ms))).filter(|d| !d.is_zero()),
        ..PrefetcherConfig::default()
    })
}
