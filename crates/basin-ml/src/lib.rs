//! Basin's machine learning: learners that read Arrow batches
//! (gradient-boosted trees from `forust-ml`, linear and logistic regression
//! of our own), a time-based train/validation split, metrics and feature
//! importance, and the model registry in the data dir. It has no SQL
//! engine: `basin-sql` runs the training query and the `predict()`
//! function on top of this crate, and the HTTP server calls [`Model::predict`]
//! through the same registry, so every path scores the same way.

pub mod error;
pub mod features;
pub mod linear;
pub mod metrics;
pub mod model;
pub mod registry;
pub mod serving;
pub mod train;

pub use error::{MlError, Result};
pub use features::{Dataset, Feature, Selection};
pub use metrics::Metrics;
pub use model::{Algorithm, Model, Params};
pub use registry::{Entry, Lineage, ModelRef, Registry, Stage, Version};
pub use serving::Models;
pub use train::{train, Report, Validation};
