//! NYC TLC yellow-taxi trips: schema, zones, demand calendar, rate card,
//! the trip sampler with the real data's defects, the streaming generator
//! and the JSON-lines encoder.

pub mod calendar;
pub mod fare;
pub mod generator;
pub mod json;
pub mod schema;
pub mod trip;
pub mod zones;

pub use generator::{TaxiBatches, TaxiConfig, TaxiTrips, DEFAULT_BATCH_SIZE};
pub use json::{json_line, write_json};
pub use schema::{taxi_schema, TripBatchBuilder, COLUMNS};
pub use trip::{format_iso, NullBlock, Trip, TripSampler};
