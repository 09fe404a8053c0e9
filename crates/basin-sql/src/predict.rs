//! `predict(model, feature, ...)` and `predict_version(model)` as SQL
//! functions, in batch queries and stream pipelines alike. The first
//! argument is a string literal naming the model (`'fare_model'` for its
//! production version, `'fare_model@3'` for a pinned one); the rest are the
//! model's features in the order it was trained on. Planning checks the
//! model exists, the number of features and their types, so a mistake is
//! reported before any row is read. Scoring goes through
//! `basin_ml::Model::predict`, as every other path does.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use basin_ml::{features::is_numeric, features::numeric_column, ModelRef, Models};
use datafusion::arrow::array::{ArrayRef, Float64Array, Int64Array};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{plan_err, DataFusionError, Result as DfResult, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use datafusion::prelude::SessionContext;

/// Register `predict` and `predict_version` on `ctx`, scoring with `models`.
pub fn register(ctx: &SessionContext, models: &Arc<Models>) {
    for version in [false, true] {
        ctx.register_udf(ScalarUDF::new_from_impl(Predict {
            models: models.clone(),
            version,
            // Volatile: a stream moves to a new version mid-query, so
            // predict_version('m') must not be folded into a constant.
            signature: Signature::variadic_any(Volatility::Volatile),
        }));
    }
}

/// The function; `version` makes it `predict_version`.
#[derive(Debug)]
struct Predict {
    models: Arc<Models>,
    version: bool,
    signature: Signature,
}

impl PartialEq for Predict {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.models, &other.models) && self.version == other.version
    }
}

impl Eq for Predict {}

impl Hash for Predict {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.version.hash(state);
    }
}

impl Predict {
    fn usage(&self) -> &'static str {
        if self.version {
            "predict_version('model')"
        } else {
            "predict('model', feature, ...)"
        }
    }

    /// The model named by the first argument's literal.
    fn model_ref(&self, first: Option<&ScalarValue>) -> DfResult<ModelRef> {
        let name = match first {
            Some(ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s))) => s,
            Some(ScalarValue::Utf8View(Some(s))) => s,
            _ => {
                return plan_err!(
                    "{}: the first argument must be a string literal naming the model",
                    self.usage()
                )
            }
        };
        ModelRef::parse(name).map_err(ml_error)
    }

    /// Check the features against the model's schema.
    fn check(&self, r: &ModelRef, types: &[DataType]) -> DfResult<()> {
        let (version, model) = self.models.get(r).map_err(ml_error)?;
        let names: Vec<&str> = model.features.iter().map(|f| f.name.as_str()).collect();
        if types.len() != names.len() {
            return plan_err!(
                "predict('{}'): version {version} takes {} features ({}), got {}",
                r.name,
                names.len(),
                names.join(", "),
                types.len()
            );
        }
        for (i, (t, name)) in types.iter().zip(&names).enumerate() {
            if !is_numeric(t) {
                return plan_err!(
                    "predict('{}'): argument {} (feature {name}) has type {t}; features are numbers or booleans",
                    r.name,
                    i + 2
                );
            }
        }
        Ok(())
    }
}

fn ml_error(e: basin_ml::MlError) -> DataFusionError {
    DataFusionError::Plan(e.to_string())
}

impl ScalarUDFImpl for Predict {
    fn name(&self) -> &str {
        if self.version {
            "predict_version"
        } else {
            "predict"
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(if self.version {
            DataType::Int64
        } else {
            DataType::Float64
        })
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        let first = args.scalar_arguments.first().copied().flatten();
        let r = self.model_ref(first)?;
        if self.version {
            if args.arg_fields.len() != 1 {
                return plan_err!("predict_version takes one argument, the model");
            }
            self.models.get(&r).map_err(ml_error)?;
        } else {
            let types: Vec<DataType> = args.arg_fields[1..]
                .iter()
                .map(|f| f.data_type().clone())
                .collect();
            self.check(&r, &types)?;
        }
        let t = self.return_type(&[])?;
        Ok(Arc::new(Field::new(self.name(), t, true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let first = match args.args.first() {
            Some(ColumnarValue::Scalar(s)) => Some(s),
            _ => None,
        };
        let r = self.model_ref(first)?;
        let (version, model) = self.models.get(&r).map_err(ml_error)?;
        let rows = args.number_rows;
        if self.version {
            let out = Int64Array::from(vec![i64::from(version); rows]);
            return Ok(ColumnarValue::Array(Arc::new(out)));
        }
        let mut columns = Vec::with_capacity(model.features.len());
        for (value, f) in args.args[1..].iter().zip(&model.features) {
            let array: ArrayRef = value.to_array(rows)?;
            columns.push(numeric_column(&f.name, &array).map_err(ml_error)?);
        }
        let refs: Vec<&[f64]> = columns.iter().map(Vec::as_slice).collect();
        let out = Float64Array::from(model.predict(&refs, rows));
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}
