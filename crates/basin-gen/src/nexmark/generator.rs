//! [`Generator`]: an iterator over a contiguous or strided run of event
//! numbers, so N workers can split the id space (a range each, or every
//! N-th event) and together produce exactly the events of one generator.

use super::config::NexmarkConfig;
use super::ids::kind_of;
use super::model::{Event, EventKind};
use crate::error::{GenError, Result};

/// Events `first, first + stride, ...`, `count` of them.
#[derive(Debug, Clone)]
pub struct Generator {
    config: NexmarkConfig,
    next: u64,
    stride: u64,
    remaining: u64,
}

impl Generator {
    /// Events `first_event..first_event + count`.
    pub fn new(config: NexmarkConfig, first_event: u64, count: u64) -> Result<Generator> {
        Generator::strided(config, first_event, 1, count)
    }

    /// `count` events numbered `first_event + i * stride`: worker `k` of `n`
    /// takes `strided(config, k, n, ...)`.
    pub fn strided(
        config: NexmarkConfig,
        first_event: u64,
        stride: u64,
        count: u64,
    ) -> Result<Generator> {
        if stride == 0 {
            return Err(GenError::Config("the stride must be at least 1".into()));
        }
        let span = count
            .saturating_sub(1)
            .checked_mul(stride)
            .and_then(|s| s.checked_add(u64::from(count > 0)))
            .ok_or_else(|| GenError::Config("event numbers overflow".into()))?;
        config.check(first_event, span)?;
        Ok(Generator {
            config,
            next: first_event,
            stride,
            remaining: count,
        })
    }

    /// The configuration the events come from.
    pub fn config(&self) -> &NexmarkConfig {
        &self.config
    }

    /// The number of the next event, if any is left.
    pub fn peek_number(&self) -> Option<u64> {
        (self.remaining > 0).then_some(self.next)
    }

    /// The kind of the next event, if any is left (without drawing it).
    pub fn peek_kind(&self) -> Option<EventKind> {
        self.peek_number().map(kind_of)
    }

    /// The next event with its number.
    pub fn next_numbered(&mut self) -> Option<(u64, Event)> {
        let n = self.peek_number()?;
        self.remaining -= 1;
        self.next = self.next.wrapping_add(self.stride);
        Some((n, self.config.event(n)))
    }
}

impl Iterator for Generator {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        self.next_numbered().map(|(_, event)| event)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = usize::try_from(self.remaining).unwrap_or(usize::MAX);
        (n, Some(n))
    }
}

impl ExactSizeIterator for Generator {}
