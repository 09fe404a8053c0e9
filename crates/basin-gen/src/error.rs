//! The one error type of `basin-gen`: bad configuration, file-system
//! failures (naming the path), and Arrow / Parquet / JSON encoding errors.

use std::path::PathBuf;

use arrow::error::ArrowError;
use parquet::errors::ParquetError;

/// Everything that can go wrong while generating or writing a data set.
#[derive(Debug, thiserror::Error)]
pub enum GenError {
    /// A configuration value is out of range or inconsistent.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A file or folder could not be created, written or inspected.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. "cannot create".
        action: &'static str,
        /// The file or folder concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The output folder already holds files (parts are never overwritten).
    #[error("output folder {} is not empty", .0.display())]
    FolderNotEmpty(PathBuf),
    /// Building a record batch or writing CSV failed.
    #[error("Arrow error: {0}")]
    Arrow(#[from] ArrowError),
    /// Writing Parquet failed.
    #[error("Parquet error: {0}")]
    Parquet(#[from] ParquetError),
    /// Encoding a JSON line failed.
    #[error("JSON encoding error: {0}")]
    Json(#[from] serde_json::Error),
}

impl GenError {
    /// An I/O error on `path` while doing `action`.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> GenError {
        GenError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// Result with [`GenError`].
pub type Result<T, E = GenError> = std::result::Result<T, E>;
