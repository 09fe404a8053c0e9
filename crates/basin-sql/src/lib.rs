//! `basin-sql`: Basin's SQL layer. A DataFusion session over a data dir:
//! a persistent catalog of external tables (CSV, JSON lines, Parquet,
//! topics, PostgreSQL tables), the
//! `lake` schema of Parquet tables written atomically (optionally
//! partitioned, hive layout), and output in the formats data engineers use.

mod catalog;
mod channel_exec;
mod checked_files;
mod engine;
mod error;
pub mod lake;
mod lake_table;
mod model_sql;
pub mod output;
mod partitioned;
mod pg_sql;
pub mod postgres;
mod predict;
pub mod progress;
pub mod rejects;
mod schema_check;
pub mod topic;

pub use engine::{value_columns, Engine, Output, Parsed};
pub use error::{Result, SqlError};
pub use lake::Leftover;
pub use lake_table::LakeTable;
pub use output::{write_output, Format};
