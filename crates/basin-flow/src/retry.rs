//! Retry backoff: the delay before attempt `n + 1`, exponential with full
//! jitter and a cap (as Airflow's `retry_exponential_backoff`).

use std::time::Duration;

use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};

/// How a failed task is retried.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts after the first.
    pub retries: u32,
    pub delay: Duration,
    /// Double the delay with each attempt (with jitter), up to `max_delay`.
    pub exponential: bool,
    pub max_delay: Duration,
}

impl RetryPolicy {
    /// The wait after failed attempt `attempt` (1-based); `jitter` in
    /// [0, 1) picks a point in the upper half of the exponential window,
    /// so retries of many tasks spread out but never come sooner than half
    /// the nominal delay.
    pub fn delay_after(&self, attempt: u32, jitter: f64) -> Duration {
        if !self.exponential {
            return self.delay.min(self.max_delay);
        }
        let factor = 2f64.powi(attempt.saturating_sub(1).min(62) as i32);
        let nominal = self.delay.as_secs_f64() * factor;
        let capped = nominal.min(self.max_delay.as_secs_f64());
        Duration::from_secs_f64(capped * (0.5 + 0.5 * jitter.clamp(0.0, 1.0)))
    }

    /// [`Self::delay_after`] with a random jitter.
    pub fn random_delay_after(&self, attempt: u32) -> Duration {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let jitter: f64 = ChaCha8Rng::seed_from_u64(seed ^ u64::from(attempt)).random();
        self.delay_after(attempt, jitter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let p = RetryPolicy {
            retries: 5,
            delay: Duration::from_secs(10),
            exponential: true,
            max_delay: Duration::from_secs(60),
        };
        assert_eq!(p.delay_after(1, 1.0), Duration::from_secs(10));
        assert_eq!(p.delay_after(2, 1.0), Duration::from_secs(20));
        assert_eq!(p.delay_after(3, 1.0), Duration::from_secs(40));
        assert_eq!(p.delay_after(4, 1.0), Duration::from_secs(60), "capped");
        assert_eq!(
            p.delay_after(3, 0.0),
            Duration::from_secs(20),
            "jitter halves at most"
        );
        let fixed = RetryPolicy {
            exponential: false,
            ..p
        };
        assert_eq!(fixed.delay_after(4, 0.3), Duration::from_secs(10));
        for _ in 0..100 {
            let d = p.random_delay_after(2);
            assert!(
                d >= Duration::from_secs(10) && d <= Duration::from_secs(20),
                "{d:?}"
            );
        }
    }
}
