//! `basin-log`: Basin's storage engine. Partition logs of Kafka record
//! batches (format v2) kept as segment files with sparse offset and time
//! indexes, CRC-checked on append and on recovery, with leader epochs, a high
//! watermark, idempotent-producer state ready for replication, and Kafka
//! transactions: control markers, the last stable offset and the aborted
//! transaction index that `read_committed` reads need.
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
pub mod txn;

pub use cleaner::CompactionStats;
pub use config::{CleanupPolicy, FlushPolicy, LogConfig};
pub use error::{LogError, Result};
pub use partition::{AppendInfo, PartitionLog, ReadLimit, ReadResult};
pub use producer::OngoingTxn;
pub use segment::Truncation;
pub use store::{LogStore, Topic, TopicMeta};
pub use txn::{AbortedTxn, ControlType};
