//! A circuit breaker around the predictor.
//!
//! After `failure_threshold` consecutive errors or timeouts the breaker opens: prediction is
//! switched off and the system serves as a plain read-through cache. After `open_for` it lets
//! one probe through (half-open); a success closes it, a failure opens it again.

use std::time::Duration;

use prescient_core::Timestamp;

/// Breaker settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker.
    pub failure_threshold: u32,
    /// How long the breaker stays open before a probe.
    pub open_for: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_threshold: 5,
            open_for: Duration::from_secs(10),
        }
    }
}

/// The breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Predictions flow.
    Closed,
    /// Prediction is off until the given time.
    Open,
    /// One probe is allowed through.
    HalfOpen,
}

impl BreakerState {
    /// 0 closed, 1 half-open, 2 open: for a metrics gauge.
    pub fn as_gauge(self) -> u8 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::HalfOpen => 1,
            BreakerState::Open => 2,
        }
    }
}

/// A circuit breaker driven by an explicit clock.
#[derive(Debug, Clone)]
pub struct Breaker {
    cfg: BreakerConfig,
    consecutive_failures: u32,
    open_until: Option<Timestamp>,
    probing: bool,
    /// How many times it opened.
    pub opened: u64,
    /// Requests refused while open.
    pub refused: u64,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(cfg: BreakerConfig) -> Self {
        Breaker {
            cfg,
            consecutive_failures: 0,
            open_until: None,
            probing: false,
            opened: 0,
            refused: 0,
        }
    }

    /// The state at `now`.
    pub fn state(&self, now: Timestamp) -> BreakerState {
        match self.open_until {
            None => BreakerState::Closed,
            Some(t) if now < t => BreakerState::Open,
            Some(_) => BreakerState::HalfOpen,
        }
    }

    /// Whether a request may go to the predictor at `now`. In half-open state only one probe
    /// is let through until its outcome is recorded.
    pub fn allow(&mut self, now: Timestamp) -> bool {
        match self.state(now) {
            BreakerState::Closed => true,
            BreakerState::Open => {
                self.refused += 1;
                false
            }
            BreakerState::HalfOpen => {
                if self.probing {
                    self.refused += 1;
                    false
                } else {
                    self.probing = true;
                    true
                }
            }
        }
    }

    /// Records the outcome of a request that [`Breaker::allow`] let through.
    pub fn record(&mut self, now: Timestamp, ok: bool) {
        self.probing = false;
        if ok {
            self.consecutive_failures = 0;
            if self.open_until.take().is_some() {
                tracing::info!(message = "Predictor recovered; prediction switched back on.");
            }
            return;
        }
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        let was_half_open = self.open_until.is_some();
        if was_half_open || self.consecutive_failures >= self.cfg.failure_threshold {
            if !was_half_open {
                self.opened += 1;
                tracing::warn!(
                    message =
                        "Predictor failing; prediction switched off, serving as a plain cache.",
                    failures = self.consecutive_failures
                );
            }
            self.open_until = Some(now.plus(self.cfg.open_for));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: i64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    #[test]
    fn opens_after_threshold_probes_and_recovers() {
        let mut b = Breaker::new(BreakerConfig {
            failure_threshold: 3,
            open_for: Duration::from_millis(100),
        });
        for i in 0..2 {
            assert!(b.allow(t(i)));
            b.record(t(i), false);
        }
        assert_eq!(b.state(t(2)), BreakerState::Closed);
        assert!(b.allow(t(2)));
        b.record(t(2), false);
        assert_eq!(b.state(t(3)), BreakerState::Open);
        assert!(!b.allow(t(50)));
        // Half-open: one probe only.
        assert!(b.allow(t(102)));
        assert!(!b.allow(t(103)));
        b.record(t(104), false);
        assert_eq!(b.state(t(105)), BreakerState::Open);
        assert!(b.allow(t(205)));
        b.record(t(206), true);
        assert_eq!(b.state(t(207)), BreakerState::Closed);
        assert_eq!(b.opened, 1);
        assert!(b.refused >= 2);
    }

    #[test]
    fn a_success_resets_the_count() {
        let mut b = Breaker::new(BreakerConfig {
            failure_threshold: 2,
            open_for: Duration::from_secs(1),
        });
        b.record(t(0), false);
        b.record(t(1), true);
        b.record(t(2), false);
        assert_eq!(b.state(t(3)), BreakerState::Closed);
    }
}
