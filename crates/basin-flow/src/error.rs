//! The orchestrator's error type.

use std::path::PathBuf;

/// Everything that can go wrong in `basin-flow`.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    /// A DAG file is malformed or invalid; `line` is 1-based.
    #[error("{}:{line}: {message}", file.display())]
    Dag {
        file: PathBuf,
        line: usize,
        message: String,
    },
    #[error("template: {0}")]
    Template(String),
    #[error("schedule: {0}")]
    Schedule(String),
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Run(String),
    /// The PostgreSQL metadata store: a bad `--metadata` URL, a failed
    /// connection or statement.
    #[error("{0}")]
    Metadata(String),
}

pub type Result<T> = std::result::Result<T, FlowError>;
