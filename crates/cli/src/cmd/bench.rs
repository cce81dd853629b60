//! `prescient bench live`: the live benchmark through NATS, `serve`, Redis and PostgreSQL,
//! against plain cache-aside on the same Redis and PostgreSQL.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use indicatif::ProgressBar;
use prescient_core::{
    Cache, CacheError, Clock, EntityKey, Entry, Event, PutOutcome, SmolStr, Store, StoreError,
    SystemClock, Timestamp, Version,
};
use prescient_prefetch::{Prefetcher, ReadOutcome};
use prescient_server::{Config, Service};
use serde::Serialize;

use crate::log_args::LogArgs;

/// Benchmarks.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub which: Which,
}

/// The benchmarks.
#[derive(Debug, clap::Subcommand)]
pub enum Which {
    /// Publish a log to NATS as fast as possible while `serve` prefetches into Redis from
    /// PostgreSQL and a consumer reads each event's entities; then the same consumer with plain
    /// cache-aside on the same Redis and PostgreSQL.
    Live(LiveArgs),
}

/// Options of `bench live`.
#[derive(Debug, clap::Args)]
pub struct LiveArgs {
    #[command(flatten)]
    pub log: LogArgs,
    /// NATS server.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    pub nats: String,
    /// Redis server.
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    pub redis: String,
    /// PostgreSQL server.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    pub postgres: String,
    /// Bytes of each entity's data.
    #[arg(long, default_value_t = 256)]
    pub payload_bytes: usize,
    /// Use only the first N events (in time order: events are published by time).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Events whose entities the consumer reads at once (one read per event, up to this many).
    /// The consumer has one thread: reads in flight wait on each other, and the wait counts in
    /// their latency.
    #[arg(long, default_value_t = 4)]
    pub consumer_concurrency: usize,
    /// Which time `serve` gives the events: `event` trusts the log's times, `now` shifts the
    /// log so that its first event happens now (keeping the gaps between events) and trusts
    /// those, `arrival` stamps each event with its arrival (the `[serve] event_time` default).
    #[arg(long, value_enum, default_value_t = Times::Event)]
    pub times: Times,
    /// The clock `serve` plans with: `event` (the default with `--times event|now`) stands at the
    /// latest event time processed and moves with the events, so that the log's predictions are
    /// scheduled in the log's own time although it is published in seconds; `wall` is the system
    /// clock (the default, and the only choice, with `--times arrival`).
    #[arg(long, value_enum)]
    pub clock: Option<BenchClock>,
    /// The model `serve` hosts (`[predictor] model`): `online` (the default combined model, as in
    /// `replay`), `relational` (its relational part alone, cheaper per event) or `simple`.
    #[arg(long, default_value = "online", value_parser = ["online", "relational", "simple"])]
    pub model: String,
    /// Seconds without progress (no event processed by `serve`, none received by the consumer)
    /// after which the benchmark fails.
    #[arg(long, default_value_t = 30)]
    pub stall_secs: u64,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Event times in `bench live`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Times {
    /// The log's own times (`[serve] event_time = "event"`).
    Event,
    /// The log's times shifted so that the first event happens now, gaps kept.
    Now,
    /// Each event's arrival at `serve` (`[serve] event_time = "arrival"`).
    Arrival,
}

/// The clock of `serve` in `bench live`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchClock {
    /// Event time (`[serve] clock = "event"`).
    Event,
    /// Wall-clock time (`[serve] clock = "wall"`).
    Wall,
}

impl LiveArgs {
    fn clock(&self) -> BenchClock {
        self.clock.unwrap_or(if self.times == Times::Arrival {
            BenchClock::Wall
        } else {
            BenchClock::Event
        })
    }
}

/// One side of the comparison.
///
/// The consumer reads all the entities of an event together, in one call (one pipelined cache
/// round trip, then the store for the misses): a *read* below is one such call, timed from
/// the call to its answer.
#[derive(Debug, Serialize)]
pub struct Side {
    /// Entities served from the cache / entities read.
    pub hit_ratio: f64,
    /// Store round trips.
    pub store_loads: u64,
    /// Entities read.
    pub entity_reads: u64,
    /// Reads (calls) made: one per event.
    pub reads: u64,
    /// Median read latency.
    pub read_p50_ms: f64,
    /// 99th percentile read latency.
    pub read_p99_ms: f64,
    /// Median latency of reads whose entities were all in the cache.
    pub hit_p50_ms: f64,
    /// 99th percentile latency of reads whose entities were all in the cache.
    pub hit_p99_ms: f64,
    /// Reads whose entities were all in the cache.
    pub hit_reads: u64,
    /// Events per second the consumer read, from the first publish until its last read: whether
    /// it kept up with the stream at its `--consumer-concurrency`.
    pub consumer_events_per_sec: f64,
}

/// What the prefetcher did during the prescient run.
#[derive(Debug, Serialize)]
pub struct PrefetchCounts {
    /// Entities predicted.
    pub predictions: u64,
    /// Prefetch loads issued (entities).
    pub prefetches_issued: u64,
    /// Prefetches not loaded: just before the load, Redis held the entity already.
    pub prefetches_skipped_cached: u64,
    /// Prefetched entries read before they were replaced or expired.
    pub prefetches_used: u64,
    /// Prefetched entries dropped unread.
    pub prefetches_wasted: u64,
    /// Prefetch loads that failed.
    pub prefetch_failures: u64,
    /// Reads that joined a load in flight (a prefetch or another read's miss) instead of
    /// hitting the cache: they count as misses in `hit_ratio`.
    pub joined: u64,
    /// Wall time of the prediction step, in microseconds (see `predict_us_per_event`).
    pub predict_micros: u64,
    /// What the planner did with the predictions.
    pub planner: prescient_prefetch::PlannerStats,
}

/// The result.
#[derive(Debug, Serialize)]
pub struct LiveResult {
    /// Events in the run.
    pub events: usize,
    /// Which event times `serve` used: `event`, `now` or `arrival` (`--times`).
    pub times: &'static str,
    /// Which clock `serve` planned with: `event` or `wall` (`--clock`).
    pub clock: &'static str,
    /// The model `serve` hosted (`--model`).
    pub model: String,
    /// Events per second from the first publish until `serve` processed the last event.
    pub events_per_sec: f64,
    /// Events per second the publisher achieved (flush included).
    pub publish_events_per_sec: f64,
    /// Microseconds `serve` spent in the prediction step per event (the model, then offering
    /// its predictions to the planner; `prefetch.predict_micros` over the events). The model
    /// runs on one thread, so `events_per_sec` cannot exceed a million over this.
    pub predict_us_per_event: f64,
    /// Prescient's side.
    pub prescient: Side,
    /// Cache-aside's side.
    pub cache_aside: Side,
    /// The prefetcher's counters in the prescient run.
    pub prefetch: PrefetchCounts,
}

/// One read: its latency, the entities read and how many came from the cache.
#[derive(Debug, Clone, Copy)]
struct Sample {
    ms: f64,
    keys: u32,
    hits: u32,
}

#[derive(Debug, Default)]
struct Recorder {
    samples: Mutex<Vec<Sample>>,
}

impl Recorder {
    fn record(&self, s: Sample) {
        if let Ok(mut v) = self.samples.lock() {
            v.push(s);
        }
    }

    fn side(&self, store_loads: u64, took: Duration) -> Side {
        let samples = self.samples.lock().map(|l| l.clone()).unwrap_or_default();
        let mut all: Vec<f64> = samples.iter().map(|s| s.ms).collect();
        let mut hits: Vec<f64> = samples
            .iter()
            .filter(|s| s.hits == s.keys)
            .map(|s| s.ms)
            .collect();
        all.sort_by(f64::total_cmp);
        hits.sort_by(f64::total_cmp);
        let q = |v: &[f64], p: f64| {
            if v.is_empty() {
                0.0
            } else {
                v[((v.len() as f64 - 1.0) * p).round() as usize]
            }
        };
        let keys: u64 = samples.iter().map(|s| u64::from(s.keys)).sum();
        let hit_keys: u64 = samples.iter().map(|s| u64::from(s.hits)).sum();
        Side {
            hit_ratio: if keys == 0 {
                0.0
            } else {
                hit_keys as f64 / keys as f64
            },
            store_loads,
            entity_reads: keys,
            reads: all.len() as u64,
            read_p50_ms: q(&all, 0.5),
            read_p99_ms: q(&all, 0.99),
            hit_p50_ms: q(&hits, 0.5),
            hit_p99_ms: q(&hits, 0.99),
            hit_reads: hits.len() as u64,
            consumer_events_per_sec: samples.len() as f64 / took.as_secs_f64().max(1e-9),
        }
    }
}

/// How the consumer reads an event's entities.
#[derive(Debug, Clone)]
enum Reader {
    /// Through the prefetcher's consumer API.
    Prescient(Prefetcher),
    /// Plain cache-aside: the cache, then the store for the misses (one batch per kind), filling
    /// the cache.
    CacheAside {
        cache: Arc<dyn Cache>,
        store: Arc<dyn Store>,
        loads: Arc<AtomicU64>,
    },
}

impl Reader {
    /// Reads `keys`; returns how many were cache hits.
    async fn read(&self, keys: &[EntityKey]) -> u32 {
        match self {
            Reader::Prescient(p) => p
                .get_many(keys, Version::ZERO)
                .await
                .iter()
                .filter(|r| matches!(r, Ok((_, ReadOutcome::Hit))))
                .count() as u32,
            Reader::CacheAside {
                cache,
                store,
                loads,
            } => {
                let cached = cache
                    .get_many(keys)
                    .await
                    .unwrap_or_else(|_| vec![None; keys.len()]);
                let missed: Vec<&EntityKey> = keys
                    .iter()
                    .zip(&cached)
                    .filter(|(_, e)| e.is_none())
                    .map(|(k, _)| k)
                    .collect();
                let hits = (keys.len() - missed.len()) as u32;
                // Like the consumer API, load the misses with one store batch per kind.
                let mut kinds: Vec<Vec<&EntityKey>> = Vec::new();
                for key in missed {
                    match kinds.iter_mut().find(|g| g[0].kind == key.kind) {
                        Some(g) => g.push(key),
                        None => kinds.push(vec![key]),
                    }
                }
                futures::future::join_all(kinds.into_iter().map(|group| async move {
                    loads.fetch_add(1, Ordering::Relaxed);
                    let ids: Vec<SmolStr> = group.iter().map(|k| k.id.clone()).collect();
                    let Ok(entries) = store.load_batch(&group[0].kind, &ids).await else {
                        return;
                    };
                    futures::future::join_all(group.into_iter().zip(entries).filter_map(
                        |(key, e)| {
                            e.map(|e| async move {
                                let _ = cache.put(key, e, Duration::from_secs(3600)).await;
                            })
                        },
                    ))
                    .await;
                }))
                .await;
                hits
            }
        }
    }
}

thread_local! {
    /// Whether this thread belongs to the consumer's runtime.
    static ON_CONSUMER: Cell<bool> = const { Cell::new(false) };
}

/// The consumer's own tokio runtime: one worker thread, apart from `serve`'s runtime, as a
/// consumer process of its own would be. Its threads are marked so that [`ByThread`] gives them
/// their own connections.
fn consumer_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("bench-consumer")
        .on_thread_start(|| ON_CONSUMER.with(|c| c.set(true)))
        .enable_all()
        .build()
}

/// A cache or store with two sets of connections: one for the threads of the consumer's runtime,
/// one for the others (`serve`). The consumer reads through `serve`'s [`Prefetcher`], as an
/// in-process consumer does, but over connections that its own runtime drives, so that `serve`'s
/// CPU work does not sit between a read and its answer.
#[derive(Debug)]
struct ByThread<T: ?Sized> {
    serve: Arc<T>,
    consumer: Arc<T>,
}

impl<T: ?Sized> ByThread<T> {
    fn pick(&self) -> &T {
        if ON_CONSUMER.with(Cell::get) {
            &self.consumer
        } else {
            &self.serve
        }
    }
}

/// A boxed future, as `#[async_trait]` methods return them.
type Fut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

// Written out as `#[async_trait]` expands them: each call is passed on as it is.
impl Cache for ByThread<dyn Cache> {
    fn get<'s, 'k, 'f>(&'s self, key: &'k EntityKey) -> Fut<'f, Result<Option<Entry>, CacheError>>
    where
        's: 'f,
        'k: 'f,
        Self: 'f,
    {
        self.pick().get(key)
    }
    fn get_many<'s, 'k, 'f>(
        &'s self,
        keys: &'k [EntityKey],
    ) -> Fut<'f, Result<Vec<Option<Entry>>, CacheError>>
    where
        's: 'f,
        'k: 'f,
        Self: 'f,
    {
        self.pick().get_many(keys)
    }
    fn put<'s, 'k, 'f>(
        &'s self,
        key: &'k EntityKey,
        entry: Entry,
        ttl: Duration,
    ) -> Fut<'f, Result<PutOutcome, CacheError>>
    where
        's: 'f,
        'k: 'f,
        Self: 'f,
    {
        self.pick().put(key, entry, ttl)
    }
    fn invalidate<'s, 'k, 'f>(
        &'s self,
        key: &'k EntityKey,
        min_version: Version,
    ) -> Fut<'f, Result<(), CacheError>>
    where
        's: 'f,
        'k: 'f,
        Self: 'f,
    {
        self.pick().invalidate(key, min_version)
    }
}

impl Store for ByThread<dyn Store> {
    fn load_batch<'s, 'k, 'i, 'f>(
        &'s self,
        kind: &'k str,
        ids: &'i [SmolStr],
    ) -> Fut<'f, Result<Vec<Option<Entry>>, StoreError>>
    where
        's: 'f,
        'k: 'f,
        'i: 'f,
        Self: 'f,
    {
        self.pick().load_batch(kind, ids)
    }
    fn load<'s, 'k, 'f>(&'s self, key: &'k EntityKey) -> Fut<'f, Result<Option<Entry>, StoreError>>
    where
        's: 'f,
        'k: 'f,
        Self: 'f,
    {
        self.pick().load(key)
    }
}

/// Runs `fut` on the consumer's runtime and waits for it.
async fn on_consumer<T: Send + 'static>(
    consumer: &tokio::runtime::Handle,
    fut: impl Future<Output = T> + Send + 'static,
) -> anyhow::Result<T> {
    consumer
        .spawn(fut)
        .await
        .map_err(|e| anyhow::anyhow!("consumer task failed: {e}"))
}

/// Where the consumer starts in the stream.
#[derive(Debug, Clone, Copy)]
enum StartAt {
    /// At the first message.
    Start,
    /// After the last message stored when the consumer is created.
    New,
}

/// On the consumer's runtime: connects to NATS (its own connection), creates a JetStream pull
/// consumer `name` on `stream` and reads each event's entities, `concurrency` events at a time,
/// until `n` events were received. Returns once the consumer exists; the task fails with a clear
/// error when nothing arrives for `stall`.
///
/// A pull consumer is reliable where a plain subscription is not: the server keeps what the
/// consumer has not pulled yet, so a consumer that falls behind catches up instead of losing
/// messages (a slow plain subscriber's messages are dropped, and the bench would wait for them
/// forever). It needs no acks (`AckPolicy::None`): a bench run that fails is run again.
#[allow(clippy::too_many_arguments)]
async fn consumer(
    rt: &tokio::runtime::Handle,
    nats: String,
    stream: String,
    name: String,
    from: StartAt,
    n: usize,
    reader: Reader,
    rec: Arc<Recorder>,
    concurrency: usize,
    stall: Duration,
) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<usize>>> {
    use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
    let pulled = on_consumer(rt, async move {
        let client = async_nats::connect(&nats)
            .await
            .map_err(|e| anyhow::anyhow!("consumer: cannot connect to {nats}: {e}"))?;
        let js = async_nats::jetstream::new(client.clone());
        let stream = js
            .get_stream(&stream)
            .await
            .map_err(|e| anyhow::anyhow!("consumer: no stream {stream}: {e}"))?;
        let consumer: PullConsumer = stream
            .create_consumer(pull::Config {
                name: Some(name.clone()),
                deliver_policy: match from {
                    StartAt::Start => DeliverPolicy::All,
                    StartAt::New => DeliverPolicy::New,
                },
                ack_policy: AckPolicy::None,
                inactive_threshold: Duration::from_secs(60),
                ..Default::default()
            })
            .await
            .map_err(|e| anyhow::anyhow!("consumer: creating pull consumer {name}: {e}"))?;
        let messages = consumer
            .stream()
            .max_messages_per_batch(1_000)
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await
            .map_err(|e| anyhow::anyhow!("consumer: starting to pull: {e}"))?;
        anyhow::Ok((client, messages))
    })
    .await??;
    Ok(rt.spawn(async move {
        let (_client, mut messages) = pulled;
        let concurrency = concurrency.max(1);
        let mut reads = futures::stream::FuturesUnordered::new();
        let mut seen = 0usize;
        while seen < n || !reads.is_empty() {
            tokio::select! {
                biased;
                Some(()) = reads.next(), if !reads.is_empty() => {}
                next = tokio::time::timeout(stall, messages.next()),
                    if seen < n && reads.len() < concurrency =>
                {
                    let msg = match next {
                        Err(_) => anyhow::bail!(
                            "the consumer received {seen} of {n} events, then nothing for {} s",
                            stall.as_secs()
                        ),
                        Ok(None) => anyhow::bail!(
                            "the consumer's pull ended after {seen} of {n} events"
                        ),
                        Ok(Some(Err(e))) => anyhow::bail!(
                            "the consumer's pull failed after {seen} of {n} events: {e}"
                        ),
                        Ok(Some(Ok(msg))) => msg,
                    };
                    seen += 1;
                    let Ok(event) = serde_json::from_slice::<Event>(&msg.payload) else {
                        continue;
                    };
                    let keys = event.distinct_keys();
                    if keys.is_empty() {
                        continue;
                    }
                    let reader = reader.clone();
                    let rec = rec.clone();
                    reads.push(async move {
                        let t = Instant::now();
                        let hits = reader.read(&keys).await;
                        rec.record(Sample {
                            ms: t.elapsed().as_secs_f64() * 1e3,
                            keys: keys.len() as u32,
                            hits,
                        });
                    });
                }
            }
        }
        anyhow::Ok(seen)
    }))
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

/// Waits for a consumer task; fails if it fails, panics, or outlives `limit`.
async fn join_consumer(
    task: tokio::task::JoinHandle<anyhow::Result<usize>>,
    limit: Duration,
    which: &str,
) -> anyhow::Result<usize> {
    match tokio::time::timeout(limit, task).await {
        Err(_) => anyhow::bail!(
            "the {which} consumer did not finish in {} s",
            limit.as_secs()
        ),
        Ok(Err(e)) => anyhow::bail!("the {which} consumer task failed: {e}"),
        Ok(Ok(r)) => r.with_context(|| format!("the {which} consumer")),
    }
}

/// Runs `bench`.
pub fn run(args: Args) -> anyhow::Result<()> {
    match args.which {
        Which::Live(a) => live(a),
    }
}

fn live(args: LiveArgs) -> anyhow::Result<()> {
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
        println!(
            "{} events ({} times, {} clock, {} model): {:.0} events/s through NATS, serve and Redis (publisher {:.0}/s)",
            result.events,
            result.times,
            result.clock,
            result.model,
            result.events_per_sec,
            result.publish_events_per_sec
        );
        let p = &result.prefetch;
        println!(
            "     predict: {:.1} µs per event in serve's prediction step (the model and the planner)",
            result.predict_us_per_event
        );
        println!(
            "    prefetch: {} predictions, {} prefetches issued ({} more found in Redis), {} used, {} wasted, {} failed; {} reads joined a load in flight",
            p.predictions,
            p.prefetches_issued,
            p.prefetches_skipped_cached,
            p.prefetches_used,
            p.prefetches_wasted,
            p.prefetch_failures,
            p.joined
        );
        for (name, s) in [
            ("prescient", &result.prescient),
            ("cache-aside", &result.cache_aside),
        ] {
            println!(
                "{name:>12}: hit ratio {:.3}, store loads {}, reads {} ({} entities, {:.0} events/s), read p50 {:.3} ms, p99 {:.3} ms, all-hit reads {} with p99 {:.3} ms",
                s.hit_ratio,
                s.store_loads,
                s.reads,
                s.entity_reads,
                s.consumer_events_per_sec,
                s.read_p50_ms,
                s.read_p99_ms,
                s.hit_reads,
                s.hit_p99_ms
            );
        }
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
    let table = "prescient_bench_entities";
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

    // 2. NATS names of this run.
    let stream = format!("PRESCIENT_BENCH_{run_id}");
    let subject = format!("prescient.bench.{run_id}");
    let sink = prescient_nats::NatsSink::connect(prescient_nats::NatsSinkOptions {
        url: args.nats.clone(),
        subject: subject.clone(),
        stream: Some(stream.clone()),
        ..Default::default()
    })
    .await
    .with_context(|| format!("cannot connect to {}", args.nats))?;

    // 3. serve, in-process: NATS source, Redis cache, PostgreSQL store, online predictor.
    let cfg_text = format!(
        r#"
[source]
type = "nats"
url = "{nats}"
stream = "{stream}"
subjects = ["{subject}"]
durable = "bench"
dead_letter_subject = "prescient.benchdead.{run_id}"
[cache]
type = "redis"
url = "{redis}"
key_prefix = "prescient-bench-{run_id}-p"
[store]
type = "postgres"
url = "{pgurl}"
table = "{table}"
[predictor]
model = "{model}"
[admin]
enabled = false
[serve]
event_time = "{event_time}"
clock = "{clock}"
"#,
        event_time = if args.times == Times::Arrival {
            "arrival"
        } else {
            "event"
        },
        clock = match args.clock() {
            BenchClock::Event => "event",
            BenchClock::Wall => "wall",
        },
        model = args.model,
        nats = args.nats,
        redis = args.redis,
        pgurl = args.postgres,
    );
    let cfg = Config::from_toml_str(&cfg_text)?;
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
        .key_prefix(format!("prescient-bench-{run_id}-ca"));
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
        let prefix = format!("prescient-bench-{run_id}-{side}");
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test: an unwrap that fails is a failed test

    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        live: LiveArgs,
    }

    fn args(extra: &[&str]) -> LiveArgs {
        let mut argv = vec!["bench", "--log", "x.jsonl"];
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv).unwrap().live
    }

    #[test]
    fn the_clock_follows_the_events_unless_they_are_stamped_on_arrival() {
        assert_eq!(args(&[]).clock(), BenchClock::Event);
        assert_eq!(args(&["--times", "now"]).clock(), BenchClock::Event);
        assert_eq!(args(&["--times", "arrival"]).clock(), BenchClock::Wall);
        assert_eq!(args(&["--clock", "wall"]).clock(), BenchClock::Wall);
        assert_eq!(args(&[]).stall_secs, 30);
        assert_eq!(args(&[]).model, "online");
        assert!(Cli::try_parse_from(["bench", "--log", "x", "--model", "neural"]).is_err());
    }

    #[test]
    fn hit_latencies_count_only_the_reads_that_all_hit() {
        let rec = Recorder::default();
        for i in 0..100 {
            rec.record(Sample {
                ms: f64::from(i),
                keys: 2,
                hits: if i < 50 { 2 } else { 1 },
            });
        }
        let side = rec.side(7, Duration::from_secs(2));
        assert_eq!(side.reads, 100);
        assert_eq!(side.hit_reads, 50);
        assert_eq!(side.store_loads, 7);
        assert!((side.hit_ratio - 0.75).abs() < 1e-9, "{}", side.hit_ratio);
        assert_eq!(side.hit_p99_ms, 49.0);
        assert_eq!(side.read_p99_ms, 98.0);
        assert_eq!(side.read_p50_ms, 50.0);
        assert!((side.consumer_events_per_sec - 50.0).abs() < 1e-9);
    }

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

    #[tokio::test]
    async fn a_consumer_that_outlives_its_limit_fails_the_bench() {
        let task = tokio::spawn(async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            anyhow::Ok(1)
        });
        let e = join_consumer(task, Duration::from_millis(20), "cache-aside")
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("cache-aside consumer did not finish"), "{e}");
    }
}
