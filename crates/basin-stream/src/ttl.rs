//! State time-to-live for operators whose state is not bounded by windows:
//! groups of a `GROUP BY` without a window, top-N keys, and rows of joins
//! that are not windowed. An entry updated since the last sweep is stamped,
//! at the next sweep, with that sweep's watermark, and dropped once the
//! watermark is more than the TTL past its stamp (event time). Entries
//! restored from a checkpoint count from the first sweep after the
//! restart. Sweeps run every eighth of the TTL of event time, so an entry
//! lives between the TTL and the TTL plus an eighth.

/// Stamp of entries updated before any watermark (or restored).
pub const UNSTAMPED: i64 = i64::MIN;

/// When entries expire and when to look for them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ttl {
    pub ms: i64,
    next_sweep: i64,
}

impl Ttl {
    pub fn new(ms: i64) -> Ttl {
        Ttl {
            ms: ms.max(1),
            next_sweep: i64::MIN,
        }
    }

    /// Granularity of sweeps and of stamps that bucket entries.
    pub fn grain(&self) -> i64 {
        (self.ms / 8).max(1)
    }

    /// `watermark` rounded down to the grain (unstamped stays unstamped).
    pub fn coarse(&self, watermark: i64) -> i64 {
        if watermark == UNSTAMPED {
            return UNSTAMPED;
        }
        watermark - watermark.rem_euclid(self.grain())
    }

    /// At `watermark`: when a sweep is due, the cutoff (entries stamped
    /// before it expire). The end of input sweeps nothing.
    pub fn due(&mut self, watermark: i64) -> Option<i64> {
        if watermark == i64::MAX || watermark == UNSTAMPED || watermark < self.next_sweep {
            return None;
        }
        self.next_sweep = watermark.saturating_add(self.grain());
        Some(watermark.saturating_sub(self.ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweeps_every_eighth_and_cuts_at_the_ttl() {
        let mut ttl = Ttl::new(8_000);
        assert_eq!(ttl.due(UNSTAMPED), None);
        assert_eq!(ttl.due(10_000), Some(2_000));
        assert_eq!(ttl.due(10_500), None);
        assert_eq!(ttl.due(11_000), Some(3_000));
        assert_eq!(ttl.due(i64::MAX), None);
        assert_eq!(ttl.coarse(10_999), 10_000);
        assert_eq!(ttl.coarse(UNSTAMPED), UNSTAMPED);
    }
}
