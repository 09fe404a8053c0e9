//! Bodies of Basin's cargo-fuzz targets, kept in a library so that stable
//! tests can run them too (basin-log's `fuzz_smoke` test includes
//! `record_batch.rs` by path).

pub mod kafka_request;
pub mod record_batch;
