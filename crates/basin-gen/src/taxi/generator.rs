//! The taxi data-set generator: [`TaxiConfig`] (rows, seed, start, days,
//! batch size), [`TaxiTrips`] (trips in pickup order) and [`TaxiBatches`]
//! (Arrow record batches), both streaming with memory bounded by one
//! batch, so 10M+ rows never sit in memory at once.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use chrono::NaiveDateTime;

use super::calendar::Schedule;
use super::schema::{taxi_schema, TripBatchBuilder};
use super::trip::{NullBlock, Trip, TripSampler};
use crate::error::{GenError, Result};

/// Default rows per record batch.
pub const DEFAULT_BATCH_SIZE: usize = 65_536;
/// The longest span accepted, in days (about ten years).
pub const MAX_DAYS: u32 = 3_660;

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct TaxiConfig {
    /// Number of trips.
    pub rows: u64,
    /// PRNG seed: the same seed gives the same trips.
    pub seed: u64,
    /// Start of the span (local NYC time).
    pub start: NaiveDateTime,
    /// Length of the span in days; pickups follow the demand curve over it.
    pub days: u32,
    /// Rows per record batch.
    pub batch_size: usize,
}

impl TaxiConfig {
    /// `rows` trips over January 2024 with `seed`.
    pub fn new(rows: u64, seed: u64) -> TaxiConfig {
        let start = chrono::NaiveDate::from_ymd_opt(2024, 1, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .unwrap_or_default();
        TaxiConfig {
            rows,
            seed,
            start,
            days: 31,
            batch_size: DEFAULT_BATCH_SIZE,
        }
    }

    /// Check the values are usable.
    pub fn validate(&self) -> Result<()> {
        if self.days == 0 || self.days > MAX_DAYS {
            return Err(GenError::Config(format!(
                "days must be between 1 and {MAX_DAYS}, got {}",
                self.days
            )));
        }
        if self.batch_size == 0 {
            return Err(GenError::Config("batch size must be at least 1".into()));
        }
        Ok(())
    }

    /// Start of the span in microseconds.
    pub fn start_micros(&self) -> i64 {
        self.start.and_utc().timestamp_micros()
    }

    /// The trips, in pickup order.
    pub fn trips(&self) -> Result<TaxiTrips> {
        self.validate()?;
        Ok(TaxiTrips {
            schedule: Schedule::new(self.rows, self.start_micros(), self.days, self.seed),
            sampler: TripSampler::new(self.seed, NullBlock::for_rows(self.rows, self.seed)),
        })
    }

    /// The trips as record batches of `batch_size` rows (the last may be shorter).
    pub fn batches(&self) -> Result<TaxiBatches> {
        Ok(TaxiBatches {
            trips: self.trips()?,
            builder: TripBatchBuilder::with_capacity(self.batch_size),
            batch_size: self.batch_size,
        })
    }
}

/// Trips in pickup order.
#[derive(Debug)]
pub struct TaxiTrips {
    schedule: Schedule,
    sampler: TripSampler,
}

impl Iterator for TaxiTrips {
    type Item = Trip;

    fn next(&mut self) -> Option<Trip> {
        let pickup = self.schedule.next()?;
        Some(self.sampler.sample(pickup))
    }
}

/// Record batches of trips.
#[derive(Debug)]
pub struct TaxiBatches {
    trips: TaxiTrips,
    builder: TripBatchBuilder,
    batch_size: usize,
}

impl TaxiBatches {
    /// The schema of every batch.
    pub fn schema(&self) -> SchemaRef {
        taxi_schema()
    }
}

impl Iterator for TaxiBatches {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Result<RecordBatch>> {
        while self.builder.len() < self.batch_size {
            match self.trips.next() {
                Some(trip) => self.builder.push(&trip),
                None => break,
            }
        }
        if self.builder.is_empty() {
            None
        } else {
            Some(self.builder.finish())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_have_the_requested_sizes() {
        let mut config = TaxiConfig::new(2_500, 1);
        config.batch_size = 1_000;
        let sizes: Vec<usize> = config
            .batches()
            .unwrap()
            .map(|b| b.unwrap().num_rows())
            .collect();
        assert_eq!(sizes, [1_000, 1_000, 500]);
    }

    #[test]
    fn bad_config_is_rejected() {
        let mut config = TaxiConfig::new(10, 1);
        config.days = 0;
        assert!(matches!(config.trips(), Err(GenError::Config(_))));
        config.days = 1;
        config.batch_size = 0;
        assert!(config.batches().is_err());
    }
}
