//! `basin-stream`: Basin's stream engine. A pipeline is a SQL file; the
//! same file runs as a batch job over history or as a stream job over live
//! topics, with event time, watermarks, windows (`TUMBLE`, `HOP`), keyed
//! state and checkpoints. DataFusion plans the SQL; this crate turns the
//! plan into tasks that process Arrow batches as they arrive.

pub mod agg;
pub mod checkpoint;
mod error;
pub mod exec;
pub mod group;
mod hash;
pub mod join;
pub mod late;
pub mod ops;
pub mod pg;
pub mod pipeline;
pub mod plan;
pub mod proctime;
pub mod remote;
pub mod runtime;
pub mod script;
pub mod session;
pub mod sink;
pub mod source;
pub mod topn;
pub mod ttl;
pub mod txn;
pub mod udf;
pub mod window;

pub use error::{Result, StreamError};
pub use pipeline::{Mode, Pipeline, RunOptions, RunSummary, DEFAULT_CHECKPOINT_INTERVAL};
