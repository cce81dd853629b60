//! The serve loop: consume the event source, prefetch, acknowledge.
//!
//! Deliveries are taken in batches of those already at hand (up to `[serve] batch`). For each
//! delivery: a malformed payload is dead-lettered with its reason (counted, logged, never
//! blocking the stream); the events of a batch go through [`Prefetcher::on_events`] in delivery
//! order and each is acked after it returns. Delivery is at least once and processing is idempotent (invalidations carry
//! versions; prefetches are deduplicated), so a redelivered event is harmless.
//!
//! When the source fails, the loop retries with exponential backoff until it answers again.
//! While one batch is processed, the deliveries of the next are taken. On shutdown it stops
//! taking events, finishes the batch being processed (the deliveries taken for the next one
//! are left unacked, for the broker to redeliver), stops the prefetch scheduler and waits for
//! loads in flight.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::FutureExt;
use prescient_core::{
    Ack, Cache, Clock, Delivery, Event, EventClock, EventSource, Predictor, Store, SystemClock,
};
use prescient_neural::ModelSlot;
use prescient_prefetch::Prefetcher;
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::build;
use crate::config::{Config, EventTime, ServeClock};
use crate::error::ServerError;
pub use crate::stats::ServeStats;

/// What a finished serve run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeReport {
    /// Events processed.
    pub processed: u64,
    /// Malformed messages dead-lettered.
    pub dead_letters: u64,
    /// Whether the source ended by itself (a file) rather than being stopped.
    pub source_ended: bool,
}

/// Called with each processed event, before its ack (tests count processed ids with it).
pub type ProcessedHook = Arc<dyn Fn(&Event) + Send + Sync>;

/// A configured, connected serve process, ready to [`Service::run`].
pub struct Service {
    cfg: Config,
    source: Box<dyn EventSource>,
    cache: Arc<dyn Cache>,
    store: Arc<dyn Store>,
    prefetcher: Prefetcher,
    stats: Arc<ServeStats>,
    listener: Option<TcpListener>,
    hook: Option<ProcessedHook>,
    model_slot: Option<ModelSlot>,
}

impl fmt::Debug for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Service")
            .field("source", &self.source)
            .field("cache", &self.cache)
            .field("store", &self.store)
            .field("hook", &self.hook.is_some())
            .finish()
    }
}

impl Service {
    /// Builds every adapter `cfg` names and binds the admin API (if enabled).
    ///
    /// # Errors
    /// [`ServerError`] naming the part that failed: configuration, source, cache, store, admin.
    pub async fn build(cfg: Config) -> Result<Service, ServerError> {
        let pcfg = build::prefetcher_config(&cfg.prefetch)?;
        let built = build::build_predictor(&cfg)?;
        let floor_ttl = pcfg.planner.max_ttl.max(pcfg.demand_ttl);
        let cache = build::build_cache(&cfg.cache, floor_ttl).await?;
        let store = build::build_store(&cfg.store).await?;
        let source = build::build_source(&cfg.source).await?;
        let mut svc = Service::from_parts(cfg, source, cache, store, built.predictor)?;
        svc.model_slot = built.model_slot;
        svc.bind_admin().await?;
        Ok(svc)
    }

    /// A service over adapters built elsewhere (tests, the live benchmark). The admin API is not
    /// bound; call [`Service::bind_admin`].
    ///
    /// # Errors
    /// [`ServerError::Config`] for an invalid `[prefetch]` section.
    pub fn from_parts(
        cfg: Config,
        source: Box<dyn EventSource>,
        cache: Arc<dyn Cache>,
        store: Arc<dyn Store>,
        predictor: Arc<dyn Predictor>,
    ) -> Result<Service, ServerError> {
        let pcfg = build::prefetcher_config(&cfg.prefetch)?;
        cfg.check()?;
        let clock: Arc<dyn Clock> = match cfg.serve.clock {
            ServeClock::Wall => Arc::new(SystemClock),
            ServeClock::Event => Arc::new(EventClock::default()),
        };
        let prefetcher = Prefetcher::new(pcfg, clock, predictor, cache.clone(), store.clone());
        let stats = Arc::new(ServeStats::default());
        stats.source_up.store(true, Ordering::Relaxed);
        Ok(Service {
            cfg,
            source,
            cache,
            store,
            prefetcher,
            stats,
            listener: None,
            hook: None,
            model_slot: None,
        })
    }

    /// Binds the admin API's listener (if `[admin] enabled`), and returns its address.
    ///
    /// # Errors
    /// [`ServerError::Admin`] when the address cannot be bound.
    pub async fn bind_admin(&mut self) -> Result<Option<SocketAddr>, ServerError> {
        if !self.cfg.admin.enabled {
            return Ok(None);
        }
        let addr = self.cfg.admin.bind;
        let err = |error: std::io::Error| ServerError::Admin {
            addr: addr.to_string(),
            error,
        };
        let listener = TcpListener::bind(addr).await.map_err(err)?;
        let local = listener.local_addr().map_err(err)?;
        if !local.ip().is_loopback() && self.cfg.admin.token.is_none() {
            warn!(
                message = "The admin API is bound off loopback without a token: anyone who can \
                           reach it can read any entity through /get. Set [admin] token \
                           (POST /model is refused until then).",
                bind = %local,
            );
        }
        self.listener = Some(listener);
        Ok(Some(local))
    }

    /// The admin API's bound address, if bound.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Calls `hook` with each processed event, before its ack.
    pub fn with_hook(mut self, hook: ProcessedHook) -> Self {
        self.hook = Some(hook);
        self
    }

    /// Serves the neural model from `slot` (the one the predictor follows): the admin API's
    /// `POST /model` then swaps models into it.
    pub fn with_model_slot(mut self, slot: Option<ModelSlot>) -> Self {
        self.model_slot = slot;
        self
    }

    /// Where the neural model is served from, if the predictor has one.
    pub fn model_slot(&self) -> Option<ModelSlot> {
        self.model_slot.clone()
    }

    /// The prefetcher: its consumer API ([`Prefetcher::get`]) serves in-process consumers.
    pub fn prefetcher(&self) -> Prefetcher {
        self.prefetcher.clone()
    }

    /// The serve loop's counters.
    pub fn stats(&self) -> Arc<ServeStats> {
        self.stats.clone()
    }

    /// Runs until `shutdown` resolves (or a file source ends), then shuts down gracefully.
    ///
    /// # Errors
    /// None at present once built; the `Result` leaves room for fatal source errors.
    ///
    /// # Cancel safety
    /// Resolve `shutdown` instead of dropping this future: dropping it may leave the delivery in
    /// hand unacked (it is then redelivered).
    pub async fn run(
        mut self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<ServeReport, ServerError> {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let admin = self.listener.take().map(|listener| {
            let state = crate::admin::AdminState {
                prefetcher: self.prefetcher.clone(),
                stats: self.stats.clone(),
                cache: self.cache.clone(),
                store: self.store.clone(),
                model_slot: self.model_slot.clone(),
                stall: Duration::from_secs(self.cfg.serve.stall_secs.max(1)),
                guard: crate::admin::Guard::new(
                    &self.cfg.admin,
                    listener.local_addr().unwrap_or(self.cfg.admin.bind),
                ),
            };
            let mut rx = stop_rx.clone();
            tokio::spawn(async move {
                let app = crate::admin::router(state);
                let r = axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = rx.wait_for(|s| *s).await;
                    })
                    .await;
                if let Err(error) = r {
                    warn!(message = "Admin API stopped.", %error);
                }
            })
        });
        let runner = {
            let p = self.prefetcher.clone();
            let mut rx = stop_rx.clone();
            tokio::spawn(async move {
                p.run(async move {
                    let _ = rx.wait_for(|s| *s).await;
                })
                .await;
            })
        };
        info!(message = "Serving.", source = ?self.source);
        let source_ended = self.consume(shutdown).await;
        info!(
            message = "Stopping: draining prefetch loads.",
            processed = self.stats.processed.load(Ordering::Relaxed)
        );
        let _ = stop_tx.send(true);
        let grace = Duration::from_secs(self.cfg.serve.shutdown_grace_secs);
        if tokio::time::timeout(grace, runner).await.is_err() {
            warn!(message = "Prefetch loads still running after the grace period; leaving them.");
        }
        if let Some(admin) = admin {
            let _ = tokio::time::timeout(Duration::from_secs(2), admin).await;
        }
        let report = ServeReport {
            processed: self.stats.processed.load(Ordering::Relaxed),
            dead_letters: self.stats.dead_letters.load(Ordering::Relaxed),
            source_ended,
        };
        info!(
            message = "Stopped.",
            processed = report.processed,
            dead_letters = report.dead_letters
        );
        Ok(report)
    }

    /// Takes deliveries until shutdown or the end of the source; returns whether the source
    /// ended.
    ///
    /// Deliveries are taken in batches: after waiting for one, the loop also takes those that
    /// are already at hand (up to `[serve] batch`) without waiting, and processes them together
    /// (see [`Batches::process`]). Batches are processed one after the other, in order; while
    /// one is processed, the loop goes on taking the deliveries of the next, so that taking
    /// them (the broker's client, parsing) overlaps the prediction step instead of waiting
    /// for it.
    ///
    /// On shutdown the batch being processed is finished (its events acked); the deliveries
    /// taken for the next one are dropped unacked, and the broker redelivers them.
    async fn consume(&mut self, shutdown: impl Future<Output = ()>) -> bool {
        tokio::pin!(shutdown);
        let base = Duration::from_millis(50);
        let max = self.cfg.serve.max_backoff();
        let max_batch = self.cfg.serve.batch.max(1);
        let grace = Duration::from_secs(self.cfg.serve.shutdown_grace_secs);
        // After a source error, a retried `next` that waits this long without failing has
        // reconnected (the sources fail a pull after missed heartbeats): a quiet stream is up.
        let up_after = Duration::from_secs(2);
        let batches = Batches {
            prefetcher: self.prefetcher.clone(),
            stats: self.stats.clone(),
            hook: self.hook.clone(),
            event_time: self.cfg.serve.event_time,
            max_deliveries: self.cfg.serve.max_deliveries,
        };
        let mut backoff = base;
        let mut batch: Vec<Delivery> = Vec::with_capacity(max_batch);
        let mut processing: Option<futures::future::BoxFuture<'static, ()>> = None;
        loop {
            // Start the next batch as soon as the previous one is done.
            if processing.is_none() && !batch.is_empty() {
                let taken = std::mem::replace(&mut batch, Vec::with_capacity(max_batch));
                let b = batches.clone();
                processing = Some(Box::pin(async move { b.process(taken).await }));
            }
            let next = tokio::select! {
                biased;
                _ = &mut shutdown => {
                    if let Some(p) = processing.take()
                        && tokio::time::timeout(grace, p).await.is_err()
                    {
                        // Its events stay unacked: the broker redelivers them.
                        warn!(message = "The batch in progress did not finish within the grace period; leaving it unacked.");
                    }
                    return false;
                }
                _ = async {
                    match processing.as_mut() {
                        Some(p) => p.await,
                        None => std::future::pending().await,
                    }
                }, if processing.is_some() => {
                    processing = None;
                    continue;
                }
                n = self.source.next(), if batch.len() < max_batch => n,
                _ = tokio::time::sleep(up_after), if !self.stats.source_up.load(Ordering::Relaxed) => {
                    info!(message = "Event source is back.");
                    self.stats.source_up.store(true, Ordering::Relaxed);
                    continue;
                }
            };
            let mut failure = None;
            let mut ended = false;
            match next {
                Ok(Some(d)) => {
                    if !self.stats.source_up.swap(true, Ordering::Relaxed) {
                        info!(message = "Event source is back.");
                    }
                    backoff = base;
                    batch.push(d);
                    // Take what is already at hand, without waiting (`next` is cancel safe).
                    while batch.len() < max_batch {
                        match self.source.next().now_or_never() {
                            Some(Ok(Some(d))) => batch.push(d),
                            Some(Ok(None)) => {
                                ended = true;
                                break;
                            }
                            Some(Err(error)) => {
                                failure = Some(error);
                                break;
                            }
                            None => break,
                        }
                    }
                }
                Ok(None) => ended = true,
                Err(error) => failure = Some(error),
            }
            if ended || failure.is_some() {
                // Finish what was taken before ending or backing off.
                if let Some(p) = processing.take() {
                    p.await;
                }
                if !batch.is_empty() {
                    batches.process(std::mem::take(&mut batch)).await;
                }
            }
            if ended {
                return true;
            }
            if let Some(error) = failure {
                self.stats.source_errors.fetch_add(1, Ordering::Relaxed);
                self.stats.source_up.store(false, Ordering::Relaxed);
                warn!(message = "Event source failed; retrying.", %error, backoff_ms = backoff.as_millis() as u64);
                tokio::select! {
                    biased;
                    _ = &mut shutdown => return false,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(max);
            }
        }
    }
}

/// What processing a batch needs, apart from the source: the loop takes the next batch while
/// one is processed.
#[derive(Clone)]
struct Batches {
    prefetcher: Prefetcher,
    stats: Arc<ServeStats>,
    hook: Option<ProcessedHook>,
    event_time: EventTime,
    max_deliveries: u32,
}

impl Batches {
    /// Processes a batch of deliveries: dead-letters the malformed ones and those delivered
    /// too often, runs the events through [`Prefetcher::on_events`] in delivery order, then
    /// acks each event, or dead-letters it with the reason when its invalidation could not be
    /// made to hold. Every ack is sent after its event's invalidations hold and its prefetches
    /// are scheduled, so delivery stays at least once.
    async fn process(&self, batch: Vec<Delivery>) {
        self.stats
            .received
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        self.stats.processing(true);
        let mut events = Vec::with_capacity(batch.len());
        let mut acks = Vec::with_capacity(batch.len());
        for delivery in batch {
            if self.max_deliveries > 0 && delivery.attempt > self.max_deliveries {
                let reason = format!(
                    "delivered {} times without being acked (more than [serve] max_deliveries = \
                     {}): it may have crashed or wedged the process before",
                    delivery.attempt, self.max_deliveries
                );
                self.stats.poison.fetch_add(1, Ordering::Relaxed);
                self.dead_letter(delivery.ack, &reason).await;
                continue;
            }
            match delivery.payload {
                Err(bad) => {
                    warn!(message = "Malformed message dead-lettered.", error = %bad.error, bytes = bad.raw.len(), attempt = delivery.attempt);
                    self.dead_letter(delivery.ack, &bad.error).await;
                }
                Ok(mut event) => {
                    if self.event_time == EventTime::Arrival {
                        event.time = SystemClock.now();
                    }
                    events.push(event);
                    acks.push(delivery.ack);
                }
            }
        }
        if events.is_empty() {
            self.stats.processing(false);
            return;
        }
        let started = std::time::Instant::now();
        let done = self.prefetcher.on_events(&events).await;
        if let Some(hook) = &self.hook {
            for event in &events {
                hook(event);
            }
        }
        let mut failed = done.failed.into_iter().peekable();
        let mut to_ack = Vec::with_capacity(acks.len());
        for (i, ack) in acks.into_iter().enumerate() {
            match failed.next_if(|(f, _)| *f == i) {
                Some((_, reason)) => {
                    warn!(message = "Event dead-lettered: its invalidation did not hold.", %reason, event = %events[i].id);
                    self.dead_letter(ack, &reason).await;
                }
                None => to_ack.push((i, ack)),
            }
        }
        let acked = to_ack.len() as u64;
        let results = futures::future::join_all(
            to_ack
                .into_iter()
                .map(|(i, a)| async move { (i, a.ack().await) }),
        )
        .await;
        for (i, result) in results {
            if let Err(error) = result {
                self.stats.ack_errors.fetch_add(1, Ordering::Relaxed);
                warn!(message = "Ack failed; the broker will redeliver.", %error, event = %events[i].id);
            }
        }
        self.stats.processed.fetch_add(acked, Ordering::Relaxed);
        self.stats.metrics.record_batch(started.elapsed());
        self.stats.processing(false);
    }

    /// Dead-letters one delivery with `reason` (counted; a failure is left to the broker to
    /// redeliver).
    async fn dead_letter(&self, ack: Ack, reason: &str) {
        self.stats.dead_letters.fetch_add(1, Ordering::Relaxed);
        if let Err(error) = ack.dead_letter(reason).await {
            self.stats.ack_errors.fetch_add(1, Ordering::Relaxed);
            warn!(message = "Dead-lettering failed; the broker will redeliver.", %error);
        }
    }
}

/// Resolves on SIGINT (Ctrl-C) or, on Unix, SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => info!(message = "SIGINT received."),
        _ = term => info!(message = "SIGTERM received."),
    }
}
