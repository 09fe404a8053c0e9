//! A trained model: its algorithm, parameters, feature schema and fitted
//! body, and the one `predict` every caller goes through (so batch SQL,
//! stream pipelines and HTTP give bit-for-bit the same numbers). Gradient
//! boosted trees come from `forust-ml` (histogram-based, as LightGBM);
//! linear and logistic regression from `linear.rs`.

use std::collections::BTreeMap;
use std::fmt;

use arrow::array::RecordBatch;
use forust_ml::gradientbooster::{GrowPolicy, ImportanceMethod};
use forust_ml::objective::ObjectiveType;
use forust_ml::{GradientBooster, Matrix};
use serde::{Deserialize, Serialize};

use crate::error::{MlError, Result};
use crate::features::{numeric_column, Dataset, Feature};
use crate::linear::{sigmoid, Linear};

/// What a model learns and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    GbtRegressor,
    GbtClassifier,
    LinearRegression,
    LogisticRegression,
}

impl Algorithm {
    pub const NAMES: &'static str =
        "gbt_regressor (gbt), gbt_classifier, linear_regression (linear), logistic_regression (logistic)";

    pub fn parse(s: &str) -> Result<Algorithm> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "gbt" | "gbt_regressor" => Algorithm::GbtRegressor,
            "gbt_classifier" => Algorithm::GbtClassifier,
            "linear" | "linear_regression" => Algorithm::LinearRegression,
            "logistic" | "logistic_regression" => Algorithm::LogisticRegression,
            other => {
                return Err(MlError::Invalid(format!(
                    "unknown algorithm '{other}'; one of {}",
                    Algorithm::NAMES
                )))
            }
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Algorithm::GbtRegressor => "gbt_regressor",
            Algorithm::GbtClassifier => "gbt_classifier",
            Algorithm::LinearRegression => "linear_regression",
            Algorithm::LogisticRegression => "logistic_regression",
        }
    }

    /// Whether the label is 0/1 and predictions are probabilities.
    pub fn classifies(self) -> bool {
        matches!(
            self,
            Algorithm::GbtClassifier | Algorithm::LogisticRegression
        )
    }
}

/// Learner parameters; each has a default, and trees ignore `l2`'s meaning
/// for linear models and vice versa only in scale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Params {
    pub iterations: usize,
    pub learning_rate: f32,
    pub max_depth: usize,
    pub max_leaves: usize,
    pub nbins: u16,
    pub l2: f32,
    pub min_leaf_weight: f32,
    pub subsample: f32,
    pub seed: u64,
}

impl Default for Params {
    fn default() -> Params {
        Params {
            iterations: 200,
            learning_rate: 0.1,
            max_depth: 8,
            max_leaves: 64,
            nbins: 255,
            l2: 1.0,
            min_leaf_weight: 1.0,
            subsample: 1.0,
            seed: 0,
        }
    }
}

impl Params {
    pub const NAMES: &'static str =
        "iterations, learning_rate, max_depth, max_leaves, nbins, l2, min_leaf_weight, subsample, seed";

    /// Set one parameter from its text, naming it in errors.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        fn num<T: std::str::FromStr>(key: &str, value: &str) -> Result<T> {
            value.trim().parse().map_err(|_| {
                MlError::Invalid(format!("parameter {key} = '{value}' is not a valid number"))
            })
        }
        match key {
            "iterations" => self.iterations = num(key, value)?,
            "learning_rate" => self.learning_rate = num(key, value)?,
            "max_depth" => self.max_depth = num(key, value)?,
            "max_leaves" => self.max_leaves = num(key, value)?,
            "nbins" => self.nbins = num(key, value)?,
            "l2" => self.l2 = num(key, value)?,
            "min_leaf_weight" => self.min_leaf_weight = num(key, value)?,
            "subsample" => self.subsample = num(key, value)?,
            "seed" => self.seed = num(key, value)?,
            _ => {
                return Err(MlError::Invalid(format!(
                    "unknown parameter '{key}'; one of {}",
                    Params::NAMES
                )))
            }
        }
        Ok(())
    }
}

#[derive(Serialize, Deserialize)]
enum Body {
    Trees(Box<GradientBooster>),
    Linear(Linear),
}

/// A fitted model and what it takes.
#[derive(Serialize, Deserialize)]
pub struct Model {
    pub algorithm: Algorithm,
    pub params: Params,
    pub features: Vec<Feature>,
    body: Body,
}

impl fmt::Debug for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Model")
            .field("algorithm", &self.algorithm)
            .field("features", &self.features)
            .finish_non_exhaustive()
    }
}

impl Model {
    /// Fit `algorithm` on every row of `data`, on both cores.
    pub fn fit(data: &Dataset, algorithm: Algorithm, params: &Params) -> Result<Model> {
        if algorithm.classifies() {
            check_binary(&data.label)?;
        }
        let body = match algorithm {
            Algorithm::GbtRegressor | Algorithm::GbtClassifier => {
                Body::Trees(Box::new(fit_trees(data, algorithm, params)?))
            }
            Algorithm::LinearRegression | Algorithm::LogisticRegression => {
                Body::Linear(Linear::fit(
                    &data.columns,
                    &data.label,
                    f64::from(params.l2),
                    algorithm.classifies(),
                )?)
            }
        };
        Ok(Model {
            algorithm,
            params: params.clone(),
            features: data.features.clone(),
            body,
        })
    }

    /// Predictions for `rows` rows of `columns` (one per feature, in the
    /// feature schema's order, NaN for missing): the regression value, or
    /// the probability of class 1.
    pub fn predict(&self, columns: &[&[f64]], rows: usize) -> Vec<f64> {
        match &self.body {
            Body::Trees(b) => {
                let flat: Vec<f64> = columns.concat();
                let raw = b.predict(&Matrix::new(&flat, rows, columns.len()), false);
                if self.algorithm.classifies() {
                    raw.into_iter().map(sigmoid).collect()
                } else {
                    raw
                }
            }
            Body::Linear(l) => l.predict(columns, rows),
        }
    }

    /// Predictions for a batch holding the features by name.
    pub fn predict_batch(&self, batch: &RecordBatch) -> Result<Vec<f64>> {
        let names: Vec<String> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let mut columns = Vec::with_capacity(self.features.len());
        for f in &self.features {
            let array = batch
                .column_by_name(&f.name)
                .ok_or_else(|| MlError::MissingColumn {
                    column: f.name.clone(),
                    available: names.clone(),
                })?;
            columns.push(numeric_column(&f.name, array)?);
        }
        let refs: Vec<&[f64]> = columns.iter().map(Vec::as_slice).collect();
        Ok(self.predict(&refs, batch.num_rows()))
    }

    /// Each feature's share of the model (trees: total split gain; linear:
    /// the size of its standardized weight), summing to 1, largest first.
    pub fn importance(&self) -> Vec<(String, f64)> {
        let raw: Vec<f64> = match &self.body {
            Body::Trees(b) => {
                let by = b.calculate_feature_importance(ImportanceMethod::TotalGain, false);
                (0..self.features.len())
                    .map(|i| f64::from(by.get(&i).copied().unwrap_or(0.0)))
                    .collect()
            }
            Body::Linear(l) => l.weights[1..].iter().map(|w| w.abs()).collect(),
        };
        let total: f64 = raw.iter().sum();
        let mut out: Vec<(String, f64)> = self
            .features
            .iter()
            .zip(raw)
            .map(|(f, v)| (f.name.clone(), if total > 0.0 { v / total } else { 0.0 }))
            .collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1));
        out
    }

    /// The learner's parameters as text, for the registry.
    pub fn param_map(&self) -> BTreeMap<String, String> {
        let v = serde_json::to_value(&self.params).expect("params serialize");
        v.as_object()
            .expect("an object")
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect()
    }
}

fn check_binary(label: &[f64]) -> Result<()> {
    match label.iter().find(|v| **v != 0.0 && **v != 1.0) {
        Some(v) => Err(MlError::Invalid(format!(
            "a classifier's label must be 0 or 1 (or a boolean); found {v}"
        ))),
        None => Ok(()),
    }
}

fn fit_trees(data: &Dataset, algorithm: Algorithm, p: &Params) -> Result<GradientBooster> {
    let objective = if algorithm.classifies() {
        ObjectiveType::LogLoss
    } else {
        ObjectiveType::SquaredLoss
    };
    let mut booster = GradientBooster::default()
        .set_objective_type(objective)
        .set_iterations(p.iterations)
        .set_learning_rate(p.learning_rate)
        .set_max_depth(p.max_depth)
        .set_max_leaves(p.max_leaves)
        .set_nbins(p.nbins)
        .set_l2(p.l2)
        .set_min_leaf_weight(p.min_leaf_weight)
        .set_subsample(p.subsample)
        .set_seed(p.seed)
        .set_initialize_base_score(true)
        .set_parallel(true);
    if p.max_leaves < usize::MAX {
        booster.grow_policy = GrowPolicy::LossGuide;
    }
    let flat = data.matrix();
    let matrix = Matrix::new(&flat, data.rows(), data.columns.len());
    let weights = vec![1.0; data.rows()];
    booster
        .fit(&matrix, &data.label, &weights, None)
        .map_err(|e| MlError::Train(e.to_string()))?;
    Ok(booster)
}
