//! Retry policy for failed prefetch loads: bounded attempts, exponential backoff, jitter.

use std::time::Duration;

use rand::Rng;

/// Retry settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryConfig {
    /// Attempts in all, the first included. 1 means no retry.
    pub max_attempts: u32,
    /// The delay before the first retry.
    pub base: Duration,
    /// The longest delay.
    pub max: Duration,
    /// Jitter as a fraction of the delay (0.5: the delay is drawn from [0.5 d, 1.5 d]).
    pub jitter: f64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: 3,
            base: Duration::from_millis(20),
            max: Duration::from_secs(2),
            jitter: 0.5,
        }
    }
}

impl RetryConfig {
    /// The delay before retry number `attempt` (1 for the first retry), jittered with `rng`.
    pub fn delay(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        let exp = attempt.saturating_sub(1).min(30);
        let d = self.base.saturating_mul(1u32 << exp).min(self.max);
        let j = self.jitter.clamp(0.0, 1.0);
        if j == 0.0 {
            return d;
        }
        let factor = 1.0 + rng.random_range(-j..=j);
        d.mul_f64(factor.max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    #[test]
    fn backoff_grows_and_is_capped() {
        let cfg = RetryConfig {
            max_attempts: 10,
            base: Duration::from_millis(10),
            max: Duration::from_millis(100),
            jitter: 0.0,
        };
        let mut rng = SmallRng::seed_from_u64(1);
        let d: Vec<_> = (1..=6)
            .map(|a| cfg.delay(a, &mut rng).as_millis())
            .collect();
        assert_eq!(d, vec![10, 20, 40, 80, 100, 100]);
    }

    #[test]
    fn jitter_stays_in_bounds() {
        let cfg = RetryConfig {
            jitter: 0.5,
            ..RetryConfig::default()
        };
        let mut rng = SmallRng::seed_from_u64(7);
        for a in 1..5 {
            let base = cfg.base.saturating_mul(1 << (a - 1)).min(cfg.max);
            let d = cfg.delay(a, &mut rng);
            assert!(
                d >= base.mul_f64(0.5) && d <= base.mul_f64(1.5),
                "{d:?} vs {base:?}"
            );
        }
    }
}
