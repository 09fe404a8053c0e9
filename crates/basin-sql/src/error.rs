//! The SQL layer's error type.

use std::path::PathBuf;

use datafusion::error::DataFusionError;

/// Everything that can go wrong in `basin-sql`.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// A query failed; `at` is `line L, column C` when the SQL position is known.
    #[error("{message}{}", at.as_ref().map(|a| format!(" (at {a})")).unwrap_or_default())]
    Query { message: String, at: Option<String> },
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("catalog file {path} is corrupt: {reason}")]
    Catalog { path: PathBuf, reason: String },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Model(#[from] basin_ml::MlError),
}

pub type Result<T> = std::result::Result<T, SqlError>;

impl From<DataFusionError> for SqlError {
    fn from(e: DataFusionError) -> Self {
        let at = e
            .diagnostic()
            .and_then(|d| d.span)
            .map(|s| format!("line {}, column {}", s.start.line, s.start.column));
        SqlError::Query {
            message: e.strip_backtrace(),
            at,
        }
    }
}

/// Attach a path to an I/O error.
pub(crate) trait IoContext<T> {
    fn at(self, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: &std::path::Path) -> Result<T> {
        self.map_err(|source| SqlError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}
