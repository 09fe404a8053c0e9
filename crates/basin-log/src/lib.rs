//! `basin-log`: Basin's storage engine. Partition logs of Kafka record
//! batches (format v2) kept as segment files with sparse offset and time
//! indexes, CRC-checked on append and on recovery, with leader epochs, a high
//! watermark and idempotent-producer state ready for replication.
//!
//! This crate does no networking: the broker (`basin-broker`) drives it.

pub mod batch;
mod cleaner;
pub mod config;
mod epoch;
mod error;
mod index;
pub mod partition;
mod producer;
mod segment;
pub mod store;

pub use cleaner::CompactionStats;
pub use config::{CleanupPolicy, FlushPolicy, LogConfig};
pub use error::{LogError, Result};
pub use partition::{AppendInfo, PartitionLog, ReadLimit, ReadResult};
pub use segment::Truncation;
pub use store::{LogStore, Topic, TopicMeta};
