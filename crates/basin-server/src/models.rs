//! Online model serving: `POST /v1/models/{name}/predict` scores JSON rows
//! with a model of the registry in the data dir (`fare_model`, its
//! production version, or a pinned `fare_model@3`).
//!
//! The body is `{"rows": [{...}, ...]}`, a bare array of row objects, or a
//! single row object. Each row holds every feature of the model by name as
//! a number, a boolean (1/0) or null (a missing value, NaN); other keys are
//! ignored. The answer is `{"model", "version", "predictions"}`, one
//! prediction per row in order.
//!
//! Values become `f64` columns in the model's feature order and go through
//! [`basin_ml::Model::predict`], as batch SQL's `predict()` and stream
//! pipelines do, so the same inputs give bit-for-bit the same numbers. Every
//! request first refreshes the pinned production versions, so a newly
//! promoted version answers at once.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::Json;
use basin_ml::{Feature, ModelRef, Models};
use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::App;

/// The handler: scoring runs off the async workers (it reads the registry
/// and may walk many trees).
pub async fn predict(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let models = app.models.clone();
    tokio::task::spawn_blocking(move || score(&models, &name, &body))
        .await
        .map_err(|e| ApiError::Internal(format!("scoring stopped: {e}")))?
        .map(Json)
}

/// Score the rows of `body` with the model `name` names.
pub fn score(models: &Models, name: &str, body: &[u8]) -> Result<Value, ApiError> {
    let r = ModelRef::parse(name)?;
    models.refresh();
    let (version, model) = models.get(&r)?;
    let body: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("the body is not valid JSON: {e}")))?;
    let rows = rows(&body, &model.features)?;
    let columns = columns(rows, &model.features)?;
    let refs: Vec<&[f64]> = columns.iter().map(Vec::as_slice).collect();
    let predictions = model.predict(&refs, rows.len());
    Ok(serde_json::json!({
        "model": r.name,
        "version": version,
        "predictions": predictions,
    }))
}

/// The row objects of a body: `{"rows": [...]}`, `[...]` or one object.
fn rows<'a>(body: &'a Value, features: &[Feature]) -> Result<&'a [Value], ApiError> {
    let rows = match body {
        Value::Array(rows) => rows.as_slice(),
        Value::Object(o) if is_batch(o, features) => match &o["rows"] {
            Value::Array(rows) => rows.as_slice(),
            other => {
                return Err(ApiError::BadRequest(format!(
                    "'rows' must be an array of row objects, not {}",
                    kind(other)
                )))
            }
        },
        Value::Object(_) => std::slice::from_ref(body),
        other => {
            return Err(ApiError::BadRequest(format!(
                "the body must be a row object, an array of them or {{\"rows\": [...]}}, not {}",
                kind(other)
            )))
        }
    };
    if rows.is_empty() {
        return Err(ApiError::BadRequest("no rows to score".into()));
    }
    Ok(rows)
}

/// Whether an object is `{"rows": [...]}` rather than a row (a model may
/// have a feature called `rows`).
fn is_batch(o: &Map<String, Value>, features: &[Feature]) -> bool {
    o.contains_key("rows") && !features.iter().any(|f| f.name == "rows")
}

/// The rows as one `f64` column per feature, in the model's order.
fn columns(rows: &[Value], features: &[Feature]) -> Result<Vec<Vec<f64>>, ApiError> {
    let mut columns = vec![Vec::with_capacity(rows.len()); features.len()];
    for (i, row) in rows.iter().enumerate() {
        let Value::Object(row) = row else {
            return Err(ApiError::BadRequest(format!(
                "row {i} is {}, not an object of feature values",
                kind(row)
            )));
        };
        for (f, column) in features.iter().zip(&mut columns) {
            column.push(value(i, f, row.get(&f.name))?);
        }
    }
    Ok(columns)
}

/// Feature `f` of row `row` as the number the model takes.
fn value(row: usize, f: &Feature, v: Option<&Value>) -> Result<f64, ApiError> {
    let bad =
        |what: String| ApiError::BadRequest(format!("row {row}: feature '{}' {what}", f.name));
    let x = match v {
        None => return Err(bad("is missing (send null for a missing value)".into())),
        Some(Value::Null) => f64::NAN,
        Some(Value::Bool(b)) => f64::from(u8::from(*b)),
        Some(Value::Number(n)) => n
            .as_f64()
            .ok_or_else(|| bad(format!("is {n}, which is not a 64-bit float")))?,
        Some(other) => {
            return Err(bad(format!(
                "must be a number, a boolean or null, not {}",
                kind(other)
            )))
        }
    };
    Ok(as_trained(x, &f.data_type))
}

/// `x` at the precision of the column the feature was trained on: a
/// `Float32` column holds `f32` values, which SQL and streams widen
/// exactly, so a JSON number is rounded to `f32` first to score the same.
fn as_trained(x: f64, data_type: &str) -> f64 {
    if data_type == "Float32" {
        f64::from(x as f32)
    } else {
        x
    }
}

/// What a JSON value is, for errors.
fn kind(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(_) => "a boolean".into(),
        Value::Number(_) => "a number".into(),
        Value::String(s) => format!("a string ({})", Value::String(short(s))),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

fn short(s: &str) -> String {
    match s.char_indices().nth(40) {
        Some((at, _)) => format!("{}...", &s[..at]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use basin_ml::{Algorithm, Dataset, Lineage, Params, Validation};

    fn feature(name: &str, data_type: &str) -> Feature {
        Feature {
            name: name.into(),
            data_type: data_type.into(),
        }
    }

    /// A data dir with `m` version 1 (production): y = 2a + b.
    fn registry() -> (tempfile::TempDir, Arc<Models>) {
        let dir = tempfile::tempdir().unwrap();
        let a: Vec<f64> = (0..50).map(f64::from).collect();
        let b: Vec<f64> = (0..50).map(|i| f64::from(i % 7)).collect();
        let label = a.iter().zip(&b).map(|(a, b)| 2.0 * a + b).collect();
        let data = Dataset {
            features: vec![feature("a", "Float64"), feature("b", "Int64")],
            columns: vec![a, b],
            label,
            times: None,
        };
        let (model, report) = basin_ml::train(
            &data,
            Algorithm::LinearRegression,
            &Params::default(),
            Validation::None,
        )
        .unwrap();
        let models = Models::open(dir.path());
        let v = models
            .registry()
            .register("m", &model, Lineage::default(), report)
            .unwrap();
        models.registry().promote("m", v).unwrap();
        (dir, models)
    }

    /// The status and message of a failed scoring.
    fn error(r: Result<Value, ApiError>) -> (u16, String) {
        match r {
            Ok(v) => panic!("scored: {v}"),
            Err(e) => (e.status().as_u16(), e.to_string()),
        }
    }

    #[test]
    fn every_body_shape_scores_as_predict_does() {
        let (_dir, models) = registry();
        let (_, model) = models.get(&ModelRef::parse("m").unwrap()).unwrap();
        let want = model.predict(&[&[3.0, f64::NAN], &[1.0, 1.0]], 2);
        let bodies = [
            r#"{"rows": [{"a": 3, "b": 1, "x": "extra"}, {"a": null, "b": true}]}"#,
            r#"[{"a": 3.0, "b": 1}, {"b": 1, "a": null}]"#,
        ];
        for body in bodies {
            let got = score(&models, "m", body.as_bytes()).unwrap();
            assert_eq!(got["model"], "m");
            assert_eq!(got["version"], 1);
            let got: Vec<u64> = got["predictions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_f64().unwrap().to_bits())
                .collect();
            let want: Vec<u64> = want.iter().map(|p| p.to_bits()).collect();
            assert_eq!(got, want, "{body}");
        }
        let one = score(&models, "m@1", br#"{"a": 3, "b": 1}"#).unwrap();
        assert_eq!(one["predictions"].as_array().unwrap().len(), 1);
        assert_eq!(one["predictions"][0].as_f64().unwrap(), want[0]);
    }

    #[test]
    fn bad_rows_name_the_row_and_the_field() {
        let (_dir, models) = registry();
        let cases = [
            (
                r#"[{"a": 1, "b": 1}, {"a": 1}]"#,
                "row 1: feature 'b' is missing",
            ),
            (
                r#"{"rows": [{"a": "2.5", "b": 1}]}"#,
                "row 0: feature 'a' must be a number, a boolean or null, not a string (\"2.5\")",
            ),
            (r#"{"rows": [{"a": [1], "b": 1}]}"#, "not an array"),
            (r#"{"rows": []}"#, "no rows to score"),
            (r#"[]"#, "no rows to score"),
            (r#"{"rows": 3}"#, "'rows' must be an array"),
            (r#"[1]"#, "row 0 is a number"),
            (r#"7"#, "not a number"),
            (r#"{"a": "#, "not valid JSON"),
        ];
        for (body, want) in cases {
            let (status, message) = error(score(&models, "m", body.as_bytes()));
            assert_eq!(status, 400, "{body}: {message}");
            assert!(message.contains(want), "{body}: {message}");
        }
    }

    #[test]
    fn unknown_models_and_versions_are_not_found() {
        let (_dir, models) = registry();
        let body = br#"{"a": 1, "b": 1}"#;
        let (status, message) = error(score(&models, "nope", body));
        assert_eq!(status, 404, "{message}");
        assert!(message.contains("no model named nope"), "{message}");
        let (status, message) = error(score(&models, "m@9", body));
        assert_eq!(status, 404, "{message}");
        assert!(message.contains("no version 9"), "{message}");
        let (status, message) = error(score(&models, "m@x", body));
        assert_eq!(status, 400, "{message}");
    }

    #[test]
    fn float32_features_are_rounded_as_their_column_was() {
        assert_eq!(as_trained(0.1, "Float32"), f64::from(0.1f32));
        assert_eq!(as_trained(0.1, "Float64"), 0.1);
        assert!(as_trained(f64::NAN, "Float32").is_nan());
    }
}
