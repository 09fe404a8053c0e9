//! [`NexmarkConfig`]: seed, base time, event rate and filler length, and the
//! pure function from an event number to its time and its [`Event`].

use super::events;
use super::ids::kind_of;
use super::model::{Event, EventKind};
use super::rng::EventRng;
use crate::error::{GenError, Result};

/// Events per second of event time when not configured.
pub const DEFAULT_EVENT_RATE: u64 = 10_000;
/// 2026-01-01T00:00:00Z in microseconds: the default base time.
pub const DEFAULT_BASE_TIME_MICROS: i64 = 1_767_225_600_000_000;
/// Letters of `extra` in every event when not configured.
pub const DEFAULT_EXTRA_LEN: usize = 4;
/// The longest `extra` accepted.
pub const MAX_EXTRA_LEN: usize = 1 << 20;
/// 0000-01-01T00:00:00Z .. 9999-12-31T23:59:59.999999Z: times with four-digit years.
const TIME_RANGE: std::ops::RangeInclusive<i64> = -62_167_219_200_000_000..=253_402_300_799_999_999;

/// Everything the events depend on, besides their numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NexmarkConfig {
    /// Seed of the per-event random streams.
    pub seed: u64,
    /// Time of event 0, microseconds since the Unix epoch (UTC).
    pub base_time_micros: i64,
    /// Events per second of event time: event `n` is at
    /// `base_time_micros + n * 1_000_000 / event_rate`.
    pub event_rate: u64,
    /// Letters in each event's `extra` field.
    pub extra_len: usize,
}

impl Default for NexmarkConfig {
    fn default() -> NexmarkConfig {
        NexmarkConfig::new(0)
    }
}

impl NexmarkConfig {
    /// The defaults (2026-01-01, 10 000 events/s, 4-letter extra) with `seed`.
    pub fn new(seed: u64) -> NexmarkConfig {
        NexmarkConfig {
            seed,
            base_time_micros: DEFAULT_BASE_TIME_MICROS,
            event_rate: DEFAULT_EVENT_RATE,
            extra_len: DEFAULT_EXTRA_LEN,
        }
    }

    /// Check that events `first..first + count` can be generated: a positive
    /// rate, a sane `extra`, no overflow, times with four-digit years.
    pub fn check(&self, first: u64, count: u64) -> Result<()> {
        let bad = |msg: String| Err(GenError::Config(msg));
        if self.event_rate == 0 {
            return bad("the event rate must be at least 1 event per second".into());
        }
        if self.extra_len > MAX_EXTRA_LEN {
            return bad(format!("extra must be at most {MAX_EXTRA_LEN} bytes"));
        }
        let Some(end) = first.checked_add(count) else {
            return bad(format!("event numbers overflow: {first} + {count}"));
        };
        let last = self.exact_time(end.saturating_sub(1));
        for t in [i128::from(self.base_time_micros), last] {
            if !TIME_RANGE.contains(&i64::try_from(t).unwrap_or(i64::MAX)) {
                return bad("event times must fall in years 0000..=9999".into());
            }
        }
        Ok(())
    }

    /// The time of event `n`, microseconds (saturating far outside [`check`](Self::check)).
    pub fn event_time(&self, n: u64) -> i64 {
        let t = self.exact_time(n);
        i64::try_from(t).unwrap_or(if t < 0 { i64::MIN } else { i64::MAX })
    }

    fn exact_time(&self, n: u64) -> i128 {
        let rate = i128::from(self.event_rate.max(1));
        i128::from(self.base_time_micros) + i128::from(n) * 1_000_000 / rate
    }

    /// Event number `n`: depends only on this configuration and `n`.
    pub fn event(&self, n: u64) -> Event {
        let t = self.event_time(n);
        let rng = &mut EventRng::for_event(self.seed, n);
        match kind_of(n) {
            EventKind::Person => Event::Person(events::person(self, n, t, rng)),
            EventKind::Auction => Event::Auction(events::auction(self, n, t, rng)),
            EventKind::Bid => Event::Bid(events::bid(self, n, t, rng)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_follow_the_formula() {
        let mut config = NexmarkConfig::new(1);
        config.event_rate = 3;
        assert_eq!(config.event_time(0), DEFAULT_BASE_TIME_MICROS);
        assert_eq!(config.event_time(1), DEFAULT_BASE_TIME_MICROS + 333_333);
        assert_eq!(config.event_time(3), DEFAULT_BASE_TIME_MICROS + 1_000_000);
    }

    #[test]
    fn bad_settings_are_refused() {
        let config = NexmarkConfig::new(1);
        assert!(config.check(0, 1_000_000_000).is_ok());
        assert!(config.check(u64::MAX, 2).is_err());
        let zero_rate = NexmarkConfig {
            event_rate: 0,
            ..config.clone()
        };
        assert!(zero_rate.check(0, 1).is_err());
        let slow = NexmarkConfig {
            event_rate: 1,
            ..config.clone()
        };
        assert!(slow.check(0, u64::MAX / 2).is_err(), "past year 9999");
    }
}
