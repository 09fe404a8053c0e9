//! The stream engine's error type.

use std::path::PathBuf;

use datafusion::error::DataFusionError;

/// Everything that can go wrong in `basin-stream`.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The pipeline file is malformed; `at` names the statement.
    #[error("{at}: {message}")]
    Script { at: String, message: String },
    /// Planning or evaluating SQL failed.
    #[error("{0}")]
    Sql(#[from] basin_sql::SqlError),
    /// A query uses something stream mode cannot run (yet).
    #[error("stream mode cannot run this query: {0}")]
    Unsupported(String),
    #[error("kafka: {0}")]
    Kafka(String),
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("checkpoint {path}: {reason}")]
    Checkpoint { path: PathBuf, reason: String },
    /// A task of the running job failed.
    #[error("{0}")]
    Task(String),
}

pub type Result<T> = std::result::Result<T, StreamError>;

impl From<DataFusionError> for StreamError {
    fn from(e: DataFusionError) -> Self {
        StreamError::Sql(basin_sql::SqlError::from(e))
    }
}

impl From<datafusion::arrow::error::ArrowError> for StreamError {
    fn from(e: datafusion::arrow::error::ArrowError) -> Self {
        StreamError::from(DataFusionError::from(e))
    }
}

impl From<rdkafka::error::KafkaError> for StreamError {
    fn from(e: rdkafka::error::KafkaError) -> Self {
        StreamError::Kafka(e.to_string())
    }
}

/// Attach a path to an I/O error.
pub(crate) trait IoContext<T> {
    fn at(self, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: &std::path::Path) -> Result<T> {
        self.map_err(|source| StreamError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}
