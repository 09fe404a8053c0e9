//! Features and labels out of Arrow batches. Every learner sees the same
//! thing: one `f64` column per feature (nulls as NaN), column-major, in the
//! order of the model's feature schema. Training and every way of
//! predicting (batch SQL, stream pipelines, HTTP) go through
//! [`numeric_column`], so a value is turned into a number one way only.

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type, TimeUnit, TimestampMicrosecondType};
use serde::{Deserialize, Serialize};

use crate::error::{MlError, Result};

/// One input of a model: its name and the Arrow type it was trained on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Feature {
    pub name: String,
    /// The training column's type, as Arrow prints it (`Int64`, `Float64`).
    pub data_type: String,
}

/// Whether a column of this type can be a feature or a label.
pub fn is_numeric(t: &DataType) -> bool {
    t.is_numeric() || matches!(t, DataType::Boolean | DataType::Null)
}

const NUMERIC: &str = "features and labels must be numbers or booleans \
    (cast it, or turn a timestamp into numbers with date_part('hour', ts))";

/// `array` as `f64` values, nulls as NaN; `name` is the column's name for
/// errors.
pub fn numeric_column(name: &str, array: &ArrayRef) -> Result<Vec<f64>> {
    if !is_numeric(array.data_type()) {
        return Err(MlError::WrongType {
            column: name.to_string(),
            found: array.data_type().to_string(),
            expected: NUMERIC.to_string(),
        });
    }
    let floats = cast(array, &DataType::Float64)?;
    let floats = floats.as_primitive::<Float64Type>();
    Ok(floats.iter().map(|v| v.unwrap_or(f64::NAN)).collect())
}

/// `array` as microseconds since the epoch (timestamps of any unit, dates,
/// or integers taken as microseconds); nulls are an error, since a row
/// without a time cannot be put on either side of a split.
pub fn time_column(name: &str, array: &ArrayRef) -> Result<Vec<i64>> {
    let micros = DataType::Timestamp(TimeUnit::Microsecond, None);
    let ok = matches!(
        array.data_type(),
        DataType::Timestamp(..) | DataType::Date32 | DataType::Date64
    ) || array.data_type().is_integer();
    if !ok {
        return Err(MlError::WrongType {
            column: name.to_string(),
            found: array.data_type().to_string(),
            expected: "the time column must be a timestamp, a date or an integer".to_string(),
        });
    }
    let times = match array.data_type() {
        t if t.is_integer() => cast(&cast(array, &DataType::Int64)?, &micros)?,
        _ => cast(array, &micros)?,
    };
    if times.null_count() > 0 {
        return Err(MlError::Invalid(format!(
            "time column '{name}' has {} null values; every row needs a time for the split",
            times.null_count()
        )));
    }
    Ok(times
        .as_primitive::<TimestampMicrosecondType>()
        .values()
        .to_vec())
}

/// The columns a training run takes out of its query's batches.
#[derive(Debug, Clone)]
pub struct Selection {
    pub label: String,
    /// Feature names in model order; empty means every column but the
    /// label, the time column and `exclude`.
    pub features: Vec<String>,
    pub time_column: Option<String>,
    pub exclude: Vec<String>,
}

/// Training data: features column-major, the label, and each row's time.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub features: Vec<Feature>,
    /// One `Vec` per feature, each `rows` long.
    pub columns: Vec<Vec<f64>>,
    pub label: Vec<f64>,
    pub times: Option<Vec<i64>>,
}

impl Dataset {
    pub fn rows(&self) -> usize {
        self.label.len()
    }

    /// Take `selection`'s columns out of `batches` (all of one schema).
    pub fn from_batches(batches: &[RecordBatch], selection: &Selection) -> Result<Dataset> {
        let Some(first) = batches.first() else {
            return Err(MlError::Invalid(
                "the training query returned no rows".into(),
            ));
        };
        let schema = first.schema();
        let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
        let features = feature_names(&names, selection)?;
        let column = |name: &str| -> Result<Vec<ArrayRef>> {
            let i = index_of(&names, name)?;
            Ok(batches.iter().map(|b| b.column(i).clone()).collect())
        };
        let mut out = Dataset {
            features: Vec::new(),
            columns: Vec::new(),
            label: concat_numeric(&selection.label, &column(&selection.label)?)?,
            times: None,
        };
        if let Some(t) = &selection.time_column {
            let mut times = Vec::with_capacity(out.label.len());
            for array in column(t)? {
                times.extend(time_column(t, &array)?);
            }
            out.times = Some(times);
        }
        for name in features {
            let i = index_of(&names, &name)?;
            out.columns.push(concat_numeric(&name, &column(&name)?)?);
            out.features.push(Feature {
                data_type: schema.field(i).data_type().to_string(),
                name,
            });
        }
        out.check_values(&selection.label)?;
        Ok(out)
    }

    /// Refuse an all-null feature and a label with any null.
    fn check_values(&self, label: &str) -> Result<()> {
        for (f, values) in self.features.iter().zip(&self.columns) {
            if values.iter().all(|v| v.is_nan()) {
                return Err(MlError::AllNull {
                    column: f.name.clone(),
                });
            }
        }
        let missing = self.label.iter().filter(|v| !v.is_finite()).count();
        if missing > 0 {
            return Err(MlError::Invalid(format!(
                "label '{label}' is null (or not finite) in {missing} of {} rows; filter them out",
                self.rows()
            )));
        }
        Ok(())
    }

    /// The rows at `keep`, in that order.
    pub fn take(&self, keep: &[usize]) -> Dataset {
        let pick = |v: &Vec<f64>| keep.iter().map(|&i| v[i]).collect::<Vec<f64>>();
        Dataset {
            features: self.features.clone(),
            columns: self.columns.iter().map(pick).collect(),
            label: pick(&self.label),
            times: self
                .times
                .as_ref()
                .map(|t| keep.iter().map(|&i| t[i]).collect()),
        }
    }

    /// The features as one column-major block, as the tree learner takes.
    pub fn matrix(&self) -> Vec<f64> {
        self.columns.concat()
    }
}

fn index_of(names: &[String], name: &str) -> Result<usize> {
    names
        .iter()
        .position(|n| n == name)
        .ok_or_else(|| MlError::MissingColumn {
            column: name.to_string(),
            available: names.to_vec(),
        })
}

fn feature_names(names: &[String], s: &Selection) -> Result<Vec<String>> {
    if !s.features.is_empty() {
        for f in &s.features {
            index_of(names, f)?;
            if *f == s.label {
                return Err(MlError::Invalid(format!(
                    "'{f}' is the label; it cannot also be a feature"
                )));
            }
        }
        return Ok(s.features.clone());
    }
    index_of(names, &s.label)?;
    let skip =
        |n: &String| *n == s.label || s.time_column.as_ref() == Some(n) || s.exclude.contains(n);
    let features: Vec<String> = names.iter().filter(|n| !skip(n)).cloned().collect();
    if features.is_empty() {
        return Err(MlError::Invalid(format!(
            "the query has no feature columns besides the label '{}'",
            s.label
        )));
    }
    Ok(features)
}

fn concat_numeric(name: &str, arrays: &[ArrayRef]) -> Result<Vec<f64>> {
    let mut out = Vec::with_capacity(arrays.iter().map(|a| a.len()).sum());
    for a in arrays {
        out.extend(numeric_column(name, a)?);
    }
    Ok(out)
}
