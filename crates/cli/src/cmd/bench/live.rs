//! The run of `bench live`: seed PostgreSQL, start `serve` in-process on a fresh NATS stream,
//! publish the log while the consumer reads through the prefetcher, then publish it again while
//! the same consumer does plain cache-aside, and sum both sides up.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::ProgressBar;
use prescient_core::{Cache, Clock, Event, Store, SystemClock, Timestamp};
use prescient_server::{Config, Service};

use super::by_thread::{ByThread, consumer_runtime, on_consumer};
use super::consumer::{StartAt, consumer, join_consumer};
use super::reader::Reader;
use super::report::{LiveResult, PrefetchCounts, Recorder};
use super::serve_config::{RunNames, serve_config};
use super::{BenchClock, LiveArgs, Times};

/// Runs `bench live`.
pub(super) fn live(args: LiveArgs) -> anyhow::Result<()> {
    let log = args.log.load()?;
    // Streamed as it happened: in time order (`--limit` takes the first events in time).
    let mut events = crate::log_args::in_time_order(log.events);
    if let Some(n) = args.limit {
        events.truncate(n);
    }
    anyhow::ensure!(!events.is_empty(), "the log has no events");
    if args.times == Times::Now {
        let first = events
            .iter()
            .map(|e| e.time)
            .min()
            .unwrap_or(Timestamp::EPOCH);
        let shift = SystemClock.now().as_micros() - first.as_micros();
        for e in &mut events {
            e.time = Timestamp::from_micros(e.time.as_micros().saturating_add(shift));
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let consumer_rt = consumer_runtime()?;
    let result = rt.block_on(live_async(&args, events, consumer_rt.handle().clone()));
    consumer_rt.shutdown_background();
    // A failed run may leave tasks behind (a prediction on the blocking pool, loads): do not
    // wait for them for long.
    rt.shutdown_timeout(Duration::from_secs(5));
    let result = result?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        result.print_text();
    }
    Ok(())
}

/// Builds `serve` from `cfg` as `Service::build` does, except that the cache and the store have
/// a second set of connections, made on the consumer's runtime `crt`, for the consumer's reads
/// (see [`ByThread`]).
async fn build_service(cfg: Config, crt: &tokio::runtime::Handle) -> anyhow::Result<Service> {
    use prescient_server::build;
    let pcfg = build::prefetcher_config(&cfg.prefetch)?;
    let floor_ttl = pcfg.planner.max_ttl.max(pcfg.demand_ttl);
    let built = build::build_predictor(&cfg)?;
    let serve_cache = build::build_cache(&cfg.cache, floor_ttl).await?;
    let serve_store = build::build_store(&cfg.store).await?;
    let (cache_cfg, store_cfg) = (cfg.cache.clone(), cfg.store.clone());
    let (consumer_cache, consumer_store) = on_consumer(crt, async move {
        let cache = build::build_cache(&cache_cfg, floor_ttl).await?;
        let store = build::build_store(&store_cfg).await?;
        anyhow::Ok((cache, store))
    })
    .await??;
    let cache: Arc<dyn Cache> = Arc::new(ByThread {
        serve: serve_cache,
        consumer: consumer_cache,
    });
    let store: Arc<dyn Store> = Arc::new(ByThread {
        serve: serve_store,
        consumer: consumer_store,
    });
    let source = build::build_source(&cfg.source).await?;
    Ok(
        Service::from_parts(cfg, source, cache, store, built.predictor)?
            .with_model_slot(built.model_slot),
    )
}

async fn live_async(
    args: &LiveArgs,
    events: Vec<Event>,
    crt: tokio::runtime::Handle,
) -> anyhow::Result<LiveResult> {
    let n = events.len();
    let run_id = format!(
        "{}{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() % 1_000_000_000)
            .unwrap_or(0)
    );
    let names = RunNames::new(run_id);
    let table = &names.table;
    // 1. Seed PostgreSQL.
    let rows = crate::cmd::seed::rows_of(&events, args.payload_bytes);
    let pg_opts =
        prescient_postgres::PgStoreOptions::new(&args.postgres).with_table(Some(table.to_owned()));
    let pg = prescient_postgres::PgStore::connect(pg_opts.clone())
        .await
        .with_context(|| format!("cannot connect to {}", args.postgres))?;
    pg.ensure_schema().await?;
    for chunk in rows.chunks(5_000) {
        prescient_core::StoreWriter::upsert_batch(&pg, chunk).await?;
    }
    eprintln!("seeded {} entities into {table}", rows.len());
    drop(pg);

    // 2. The NATS stream of this run.
    let RunNames {
        run_id,
        stream,
        subject,
        ..
    } = &names;
    let sink = prescient_nats::NatsSink::connect(prescient_nats::NatsSinkOptions {
        url: args.nats.clone(),
        subject: subject.clone(),
        stream: Some(stream.clone()),
        ..Default::default()
    })
    .await
    .with_context(|| format!("cannot connect to {}", args.nats))?;

    // 3. serve, in-process: NATS source, Redis cache, PostgreSQL store, the `--model` predictor.
    let cfg = serve_config(args, &names)?;
    let svc = build_service(cfg, &crt).await?;
    let prefetcher = svc.prefetcher();
    let stats = svc.stats();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let serve = tokio::spawn(svc.run(async move {
        let _ = stop_rx.await;
    }));

    // 4. The consumer, then the publisher.
    let stall = Duration::from_secs(args.stall_secs.max(1));
    // A backstop: each wait below fails sooner when nothing moves for `stall`.
    let limit = Duration::from_secs(600);
    let rec_p = Arc::new(Recorder::default());
    let cons = consumer(
        &crt,
        args.nats.clone(),
        stream.clone(),
        format!("bench-prescient-{run_id}"),
        StartAt::Start,
        n,
        Reader::Prescient(prefetcher.clone()),
        rec_p.clone(),
        args.consumer_concurrency,
        stall,
    )
    .await?;
    let bar = ProgressBar::hidden();
    let start = Instant::now();
    let pub_took = crate::cmd::publish::publish_all(&sink, &events, None, &bar).await?;
    wait_processed(&stats, n, stall).await?;
    let serve_took = start.elapsed();
    let seen = join_consumer(cons, limit, "prescient").await?;
    let consumer_took = start.elapsed();
    let _ = stop_tx.send(());
    match tokio::time::timeout(limit, serve).await {
        Err(_) => anyhow::bail!("serve did not stop in {} s", limit.as_secs()),
        Ok(Err(e)) => anyhow::bail!("serve failed: {e}"),
        Ok(Ok(r)) => {
            r.context("serve")?;
        }
    }
    let snap = prefetcher.snapshot();
    let counter = |name: &str| {
        snap.counters
            .iter()
            .find(|(k, _)| *k == name)
            .map_or(0, |(_, v)| *v)
    };
    let prescient = rec_p.side(counter("store_loads"), consumer_took);
    let prefetch = PrefetchCounts {
        predictions: counter("predictions"),
        prefetches_issued: counter("prefetches_issued"),
        prefetches_skipped_cached: counter("prefetches_skipped_cached"),
        prefetches_used: counter("prefetches_used"),
        prefetches_wasted: counter("prefetches_wasted"),
        prefetch_failures: counter("prefetch_failures"),
        joined: counter("joined"),
        predict_micros: counter("predict_micros"),
        planner: prefetcher.planner_stats(),
    };
    eprintln!("prescient run done: consumer saw {seen} events");

    // 5. The same consumer with plain cache-aside on a fresh key prefix, over connections of
    //    its own runtime, reading the events published again from now on.
    let redis_opts = prescient_redis::RedisCacheOptions::new(args.redis.clone())
        .key_prefix(names.key_prefix("ca"));
    let (cache, store) = on_consumer(&crt, async move {
        let cache: Arc<dyn Cache> =
            Arc::new(prescient_redis::RedisCache::connect(redis_opts).await?);
        let store: Arc<dyn Store> = Arc::new(prescient_postgres::PgStore::connect(pg_opts).await?);
        anyhow::Ok((cache, store))
    })
    .await??;
    let loads = Arc::new(AtomicU64::new(0));
    let rec_c = Arc::new(Recorder::default());
    let cons = consumer(
        &crt,
        args.nats.clone(),
        stream.clone(),
        format!("bench-cache-aside-{run_id}"),
        StartAt::New,
        n,
        Reader::CacheAside {
            cache,
            store,
            loads: loads.clone(),
        },
        rec_c.clone(),
        args.consumer_concurrency,
        stall,
    )
    .await?;
    let start = Instant::now();
    crate::cmd::publish::publish_all(&sink, &events, None, &bar).await?;
    join_consumer(cons, limit, "cache-aside").await?;
    let cache_aside = rec_c.side(loads.load(Ordering::Relaxed), start.elapsed());
    // The run's streams and cache entries are of no further use.
    let js = async_nats::jetstream::new(sink.client().clone());
    for name in [stream.clone(), format!("{stream}_DEAD")] {
        if let Err(error) = js.delete_stream(&name).await {
            tracing::warn!(message = "Cannot delete the bench stream.", stream = %name, %error);
        }
    }
    for side in ["p", "ca"] {
        let prefix = names.key_prefix(side);
        let opts = prescient_redis::RedisCacheOptions::new(args.redis.clone()).key_prefix(&prefix);
        let cleared = match prescient_redis::RedisCache::connect(opts).await {
            Ok(c) => c.clear().await,
            Err(e) => Err(e),
        };
        if let Err(error) = cleared {
            tracing::warn!(message = "Cannot delete the bench's Redis keys.", %prefix, %error);
        }
    }
    Ok(LiveResult {
        events: n,
        times: match args.times {
            Times::Event => "event",
            Times::Now => "now",
            Times::Arrival => "arrival",
        },
        clock: match args.clock() {
            BenchClock::Event => "event",
            BenchClock::Wall => "wall",
        },
        model: args.model.clone(),
        events_per_sec: n as f64 / serve_took.as_secs_f64().max(1e-9),
        publish_events_per_sec: n as f64 / pub_took.as_secs_f64().max(1e-9),
        predict_us_per_event: prefetch.predict_micros as f64 / n.max(1) as f64,
        prescient,
        cache_aside,
        prefetch,
    })
}

/// Waits until `serve` has processed `n` events; fails when it processes none for `stall`.
async fn wait_processed(
    stats: &prescient_server::ServeStats,
    n: usize,
    stall: Duration,
) -> anyhow::Result<()> {
    let mut last = 0u64;
    let mut progress = Instant::now();
    loop {
        let done = stats.processed.load(Ordering::Relaxed);
        if done as usize >= n {
            return Ok(());
        }
        if done > last {
            last = done;
            progress = Instant::now();
        }
        anyhow::ensure!(
            progress.elapsed() < stall,
            "serve processed {done} of {n} events, then none for {} s ({} received, {} source errors)",
            stall.as_secs(),
            stats.received.load(Ordering::Relaxed),
            stats.source_errors.load(Ordering::Relaxed),
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test: an unwrap that fails is a failed test

    use super::*;

    #[tokio::test]
    async fn a_serve_that_stops_processing_fails_the_wait_with_its_counts() {
        let stats = prescient_server::ServeStats::default();
        stats.processed.store(3, Ordering::Relaxed);
        stats.received.store(5, Ordering::Relaxed);
        let e = wait_processed(&stats, 10, Duration::from_millis(50))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("processed 3 of 10 events, then none for"), "{e}");
        assert!(e.contains("5 received"), "{e}");
        stats.processed.store(10, Ordering::Relaxed);
        wait_processed(&stats, 10, Duration::from_millis(50))
            .await
            .unwrap();
    }
}
