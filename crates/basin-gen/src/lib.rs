//! `basin-gen`: realistic, deterministic synthetic data sets for Basin's
//! course material and benchmarks: NYC TLC yellow-taxi trips ([`taxi`]),
//! streamed as Arrow record batches and written as Parquet or CSV
//! ([`write`]) or encoded as JSON lines for a topic; and the Nexmark
//! auction benchmark's events ([`nexmark`]) as JSON lines.
//!
//! ```
//! use basin_gen::taxi::TaxiConfig;
//!
//! let mut config = TaxiConfig::new(1_000, 42);
//! config.batch_size = 500;
//! let rows: usize = config.batches().unwrap().map(|b| b.unwrap().num_rows()).sum();
//! assert_eq!(rows, 1_000);
//! ```

pub mod error;
pub mod nexmark;
pub mod sample;
pub mod taxi;
pub mod write;

pub use error::{GenError, Result};
pub use taxi::{taxi_schema, TaxiConfig, Trip};
pub use write::{write_batches, Format, Layout, Output, WriteSummary};
