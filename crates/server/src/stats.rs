//! [`ServeStats`]: the serve loop's own counters and health, shared with the admin API.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use prescient_core::{Clock, SystemClock};

/// Counters of the serve loop (the prefetcher counts the rest).
#[derive(Debug, Default)]
pub struct ServeStats {
    /// Deliveries taken from the source.
    pub received: AtomicU64,
    /// Events processed and acked (or whose ack was attempted).
    pub processed: AtomicU64,
    /// Malformed messages dead-lettered.
    pub dead_letters: AtomicU64,
    /// Acks or dead-letterings that failed (the broker will redeliver).
    pub ack_errors: AtomicU64,
    /// Errors of the source's `next` (each followed by a backoff).
    pub source_errors: AtomicU64,
    /// Whether the source answered last time.
    pub source_up: AtomicBool,
    /// Deliveries dead-lettered because the broker delivered them too often without an ack
    /// (a message that crashed or wedged the process before).
    pub poison: AtomicU64,
    /// When the batch being processed started (wall clock, microseconds; 0: none is).
    pub batch_started_us: AtomicI64,
    /// The Prometheus recorder of this instance (latencies; the rest is copied in on scrape).
    pub metrics: crate::metrics::Metrics,
}

impl ServeStats {
    /// Marks the start (`true`) or end of a batch's processing.
    pub fn processing(&self, on: bool) {
        let t = if on {
            SystemClock.now().as_micros().max(1)
        } else {
            0
        };
        self.batch_started_us.store(t, Ordering::Relaxed);
    }

    /// How long the batch being processed has been at it, if one is.
    pub fn processing_for(&self) -> Option<std::time::Duration> {
        let t = self.batch_started_us.load(Ordering::Relaxed);
        (t != 0).then(|| {
            SystemClock
                .now()
                .since(prescient_core::Timestamp::from_micros(t))
        })
    }
}
