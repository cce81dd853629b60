//! The prefetch budget: a token bucket that caps the extra load prefetching puts on the store.
//!
//! Tokens accrue in proportion to consumer reads (`per_read`: prefetching never adds more
//! store load than a share of what the consumers would cause with no cache at all) and,
//! optionally, at a fixed rate per second of clock time. Each prefetched entity costs one token.

use prescient_core::Timestamp;

/// Budget settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetConfig {
    /// Tokens earned per consumer read.
    pub per_read: f64,
    /// Tokens earned per second of clock time.
    pub per_second: f64,
    /// The most tokens that can be saved up. Readahead and successor chains come in bursts
    /// (a scan predicts many blocks at once), so the bucket lets a burst through that a steady
    /// rate would cut short (`docs/tuning.md` has the measurements behind the default). Over
    /// time, prefetching still adds at most `per_read` loads per read.
    pub burst: f64,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        BudgetConfig {
            per_read: 1.0,
            per_second: 0.0,
            burst: 4_096.0,
        }
    }
}

/// A token bucket driven by reads and an explicit clock.
#[derive(Debug, Clone)]
pub struct Budget {
    cfg: BudgetConfig,
    tokens: f64,
    last: Option<Timestamp>,
}

impl Budget {
    /// A full bucket.
    pub fn new(cfg: BudgetConfig) -> Self {
        Budget {
            cfg,
            tokens: cfg.burst,
            last: None,
        }
    }

    /// Earns the tokens of one consumer read.
    pub fn on_read(&mut self) {
        self.tokens = (self.tokens + self.cfg.per_read).min(self.cfg.burst);
    }

    fn refill(&mut self, now: Timestamp) {
        if self.cfg.per_second > 0.0
            && let Some(last) = self.last
        {
            let secs = now.secs_since(last).max(0.0);
            self.tokens = (self.tokens + secs * self.cfg.per_second).min(self.cfg.burst);
        }
        self.last = Some(now);
    }

    /// Spends one token if there is one.
    pub fn try_spend(&mut self, now: Timestamp) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Tokens available now.
    pub fn tokens(&self) -> f64 {
        self.tokens
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_earn_and_prefetches_spend() {
        let mut b = Budget::new(BudgetConfig {
            per_read: 0.5,
            per_second: 0.0,
            burst: 2.0,
        });
        let now = Timestamp::EPOCH;
        assert!(b.try_spend(now));
        assert!(b.try_spend(now));
        assert!(!b.try_spend(now));
        b.on_read();
        assert!(!b.try_spend(now));
        b.on_read();
        assert!(b.try_spend(now));
    }

    #[test]
    fn time_earns_at_the_rate() {
        let mut b = Budget::new(BudgetConfig {
            per_read: 0.0,
            per_second: 10.0,
            burst: 5.0,
        });
        let t0 = Timestamp::from_secs(100);
        for _ in 0..5 {
            assert!(b.try_spend(t0));
        }
        assert!(!b.try_spend(t0));
        assert!(b.try_spend(Timestamp::from_micros(t0.as_micros() + 100_000)));
        assert!(!b.try_spend(Timestamp::from_micros(t0.as_micros() + 100_000)));
    }
}
