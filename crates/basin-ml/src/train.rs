//! One training run: split the rows by time (the newest rows are held out,
//! as a model is used on days after the ones it learned from), fit on the
//! rest, and measure both sides.

use std::time::Instant;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use tracing::info;

use crate::error::{MlError, Result};
use crate::features::Dataset;
use crate::metrics::Metrics;
use crate::model::{Algorithm, Model, Params};

const DAY_MICROS: i64 = 86_400_000_000;

/// Which rows are held out for validation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Validation {
    /// The newest share of the time range (of the rows, without a time column).
    Fraction(f64),
    /// Rows in the last `n` whole units (days, hours, minutes, in UTC) of
    /// the time range, the newest unit counted even if partly filled;
    /// `unit` in microseconds.
    Last { n: i64, unit: i64 },
    /// No validation rows; metrics are on the training rows.
    None,
}

impl Validation {
    /// `0.2`, `2 days`, `12 hours`, `30 minutes` or `none`.
    pub fn parse(s: &str) -> Result<Validation> {
        let s = s.trim().to_ascii_lowercase();
        if s == "none" {
            return Ok(Validation::None);
        }
        if let Ok(f) = s.parse::<f64>() {
            if f > 0.0 && f < 1.0 {
                return Ok(Validation::Fraction(f));
            }
        }
        let bad = || {
            MlError::Invalid(format!(
                "validation = '{s}': give a fraction between 0 and 1 (0.2), a span (2 days, 12 hours, 30 minutes) or none"
            ))
        };
        let (n, unit) = s.split_once(' ').ok_or_else(bad)?;
        let n: i64 = n.parse().map_err(|_| bad())?;
        if n < 1 {
            return Err(bad());
        }
        let unit = match unit.trim_end_matches('s') {
            "day" => DAY_MICROS,
            "hour" => DAY_MICROS / 24,
            "minute" => DAY_MICROS / 1440,
            _ => return Err(bad()),
        };
        Ok(Validation::Last { n, unit })
    }
}

/// What a run produced besides the model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub train: Metrics,
    /// Metrics on the held-out rows (none when nothing was held out).
    pub validation: Option<Metrics>,
    /// The first held-out time, microseconds since the epoch.
    pub validation_from: Option<i64>,
    pub importance: Vec<(String, f64)>,
    /// The whole run: split, fit and both measurements.
    pub seconds: f64,
    /// The fit alone.
    #[serde(default)]
    pub fit_seconds: f64,
}

/// Split, fit and measure.
pub fn train(
    data: &Dataset,
    algorithm: Algorithm,
    params: &Params,
    validation: Validation,
) -> Result<(Model, Report)> {
    let started = Instant::now();
    let (fit_rows, held, from) = split(data, validation)?;
    let fit = data.take(&fit_rows);
    info!(
        rows = fit.rows(),
        held_out = held.len(),
        algorithm = algorithm.name(),
        "training"
    );
    let fitting = Instant::now();
    let model = Model::fit(&fit, algorithm, params)?;
    let fit_seconds = fitting.elapsed().as_secs_f64();
    let measure = |d: &Dataset| {
        let pred = predict_all(&model, d);
        if algorithm.classifies() {
            Metrics::classification(&d.label, &pred)
        } else {
            Metrics::regression(&d.label, &pred)
        }
    };
    let report = Report {
        train: measure(&fit),
        validation: (!held.is_empty()).then(|| measure(&data.take(&held))),
        validation_from: from,
        importance: model.importance(),
        seconds: started.elapsed().as_secs_f64(),
        fit_seconds,
    };
    Ok((model, report))
}

/// `model`'s predictions for every row of `d`, chunks scored on all cores
/// (each row's score does not depend on its chunk).
fn predict_all(model: &Model, d: &Dataset) -> Vec<f64> {
    const CHUNK: usize = 16 * 1024;
    let rows = d.rows();
    (0..rows.div_ceil(CHUNK))
        .into_par_iter()
        .flat_map_iter(|c| {
            let (start, end) = (c * CHUNK, ((c + 1) * CHUNK).min(rows));
            let part: Vec<&[f64]> = d.columns.iter().map(|x| &x[start..end]).collect();
            model.predict(&part, end - start)
        })
        .collect()
}

/// Row indexes to fit on and to hold out, and the first held-out time.
fn split(data: &Dataset, v: Validation) -> Result<(Vec<usize>, Vec<usize>, Option<i64>)> {
    let all: Vec<usize> = (0..data.rows()).collect();
    let cutoff = match (v, &data.times) {
        (Validation::None, _) => return Ok((all, Vec::new(), None)),
        (Validation::Fraction(f), None) => {
            let keep = ((1.0 - f) * data.rows() as f64).round() as usize;
            return Ok((all[..keep].to_vec(), all[keep..].to_vec(), None));
        }
        (Validation::Last { .. }, None) => {
            return Err(MlError::Invalid(
                "a validation span needs a time column (time_column = '...')".into(),
            ))
        }
        (Validation::Fraction(f), Some(t)) => {
            let (lo, hi) = range(t);
            hi - ((hi - lo) as f64 * f) as i64
        }
        (Validation::Last { n, unit }, Some(t)) => {
            range(t).1.div_euclid(unit) * unit - (n - 1) * unit
        }
    };
    let times = data.times.as_ref().expect("matched above");
    let (held, fit): (Vec<usize>, Vec<usize>) = all.into_iter().partition(|&i| times[i] >= cutoff);
    if fit.is_empty() || held.is_empty() {
        return Err(MlError::Invalid(format!(
            "the validation split leaves {} rows to train on and {} to validate; widen or narrow it",
            fit.len(),
            held.len()
        )));
    }
    Ok((fit, held, Some(cutoff)))
}

fn range(t: &[i64]) -> (i64, i64) {
    let lo = t.iter().copied().min().unwrap_or(0);
    let hi = t.iter().copied().max().unwrap_or(0);
    (lo, hi)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::Feature;

    fn data(times: Vec<i64>) -> Dataset {
        let n = times.len();
        Dataset {
            features: vec![Feature {
                name: "x".into(),
                data_type: "Float64".into(),
            }],
            columns: vec![(0..n).map(|i| i as f64).collect()],
            label: (0..n).map(|i| i as f64).collect(),
            times: Some(times),
        }
    }

    #[test]
    fn a_span_holds_out_whole_days() {
        // Four rows a day for five days; the last two days are held out.
        let times: Vec<i64> = (0..20).map(|i| i / 4 * DAY_MICROS + i % 4 * 1000).collect();
        let v = Validation::parse("2 days").unwrap();
        let (fit, held, from) = split(&data(times), v).unwrap();
        assert_eq!(fit, (0..12).collect::<Vec<_>>());
        assert_eq!(held, (12..20).collect::<Vec<_>>());
        assert_eq!(from, Some(3 * DAY_MICROS));
    }

    #[test]
    fn bad_validations_are_named() {
        for bad in ["1.5", "two days", "3 weeks", "0 days"] {
            let err = Validation::parse(bad).unwrap_err().to_string();
            assert!(err.contains(&format!("'{bad}'")), "{err}");
        }
        let err = split(&data(vec![5; 10]), Validation::Fraction(0.2)).unwrap_err();
        assert!(err.to_string().contains("0 rows to train on"), "{err}");
    }
}
