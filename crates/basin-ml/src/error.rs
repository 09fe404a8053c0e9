//! The ML crate's error type: every message names the model, column or file
//! it is about.

use std::path::PathBuf;

/// Everything that can go wrong in `basin-ml`.
#[derive(Debug, thiserror::Error)]
pub enum MlError {
    /// A column the model needs is not in the input.
    #[error("column '{column}' is missing{}", hint(.available))]
    MissingColumn {
        column: String,
        available: Vec<String>,
    },
    /// A feature or label column whose type the learner cannot take.
    #[error("column '{column}' has type {found}; {expected}")]
    WrongType {
        column: String,
        found: String,
        expected: String,
    },
    /// A feature or label column with no value at all.
    #[error("column '{column}' is null in every row; drop it or fill it")]
    AllNull { column: String },
    /// Options of a training run that make no sense together.
    #[error("{0}")]
    Invalid(String),
    /// The learner failed.
    #[error("training failed: {0}")]
    Train(String),
    /// No such model, version or stage in the registry.
    #[error("{0}")]
    NotFound(String),
    /// A model file whose bytes do not match the checksum recorded for it.
    #[error("model file {} fails its checksum (expected sha256 {expected}, found {found}); refusing to load it", path.display())]
    Checksum {
        path: PathBuf,
        expected: String,
        found: String,
    },
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a valid model file: {source}", path.display())]
    Format {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Arrow(#[from] arrow::error::ArrowError),
}

fn hint(available: &[String]) -> String {
    if available.is_empty() {
        String::new()
    } else {
        format!(" (the input has: {})", available.join(", "))
    }
}

pub type Result<T> = std::result::Result<T, MlError>;

/// An I/O error on `path`.
pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> MlError {
    let path = path.into();
    move |source| MlError::Io { path, source }
}
