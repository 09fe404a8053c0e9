//! The ML benchmark's Rust side. Generates `--rows` taxi trips over
//! `--days` days (seed 1), computes the seed course's fare features the way
//! `crates/basin/tests/common/mod.rs::fare_features_sql` does in SQL, holds
//! out the last `--valid-days` whole days, and trains Basin's
//! gradient-boosted trees (`basin-ml`, forust-ml) and, for the learner
//! comparison, `perpetual` on the same rows. It writes the features with
//! their split to `--out` (Parquet) so `benchmarks/ml/bench_ml.py` trains
//! LightGBM and scikit-learn on exactly the same rows, and prints one JSON
//! line per measurement.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use arrow::array::{Float64Array, Int8Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use basin_gen::taxi::TaxiConfig;
use basin_ml::{Algorithm, Dataset, Feature, Metrics, Params, Validation};
use clap::Parser;

const DAY_US: i64 = 86_400_000_000;
const FEATURES: [&str; 8] = [
    "trip_distance",
    "duration_min",
    "pickup_hour",
    "pickup_weekday",
    "pu_zone",
    "do_zone",
    "passenger_count",
    "rate_code",
];

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 1_000_000)]
    rows: u64,
    #[arg(long, default_value_t = 31)]
    days: u32,
    #[arg(long, default_value_t = 7)]
    valid_days: i64,
    /// Where to write the features (Parquet, with a `valid` 0/1 column).
    #[arg(long)]
    out: std::path::PathBuf,
    /// Skip perpetual (it is slow on 10 M rows).
    #[arg(long)]
    no_perpetual: bool,
    /// Basin's learner parameters, KEY=VALUE (as `CREATE MODEL` options);
    /// max_leaves=0 grows depth-wise.
    #[arg(long = "param")]
    params: Vec<String>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let started = Instant::now();
    let data = features(&args)?;
    report(
        "features",
        serde_json::json!({"rows": data.rows(), "seconds": started.elapsed().as_secs_f64()}),
    );
    write_parquet(&args, &data)?;
    let validation = Validation::Last {
        n: args.valid_days,
        unit: DAY_US,
    };
    let mut params = Params::default();
    for p in &args.params {
        let (k, v) = p.split_once('=').context("--param KEY=VALUE")?;
        params.set(k, v)?;
        if k == "max_leaves" && v == "0" {
            params.max_leaves = usize::MAX;
        }
    }
    let (model, r) = basin_ml::train(&data, Algorithm::GbtRegressor, &params, validation)?;
    let valid = r.validation.clone().context("no validation rows")?;
    report(
        "basin",
        serde_json::json!({"train_rows": r.train.rows, "valid_rows": valid.rows,
            "seconds": r.fit_seconds, "with_evaluation_seconds": r.seconds, "rmse": valid.rmse, "r2": valid.r2, "params": params}),
    );
    scoring(&data, &model);
    if !args.no_perpetual {
        perpetual_run(&data, r.validation_from.context("a time split")?)?;
    }
    Ok(())
}

fn report(engine: &str, mut v: serde_json::Value) {
    v["engine"] = engine.into();
    println!("{v}");
}

/// The features of every clean trip, with its pickup time.
fn features(args: &Args) -> Result<Dataset> {
    let mut config = TaxiConfig::new(args.rows, 1);
    config.days = args.days;
    let mut columns: Vec<Vec<f64>> = vec![Vec::new(); FEATURES.len()];
    let (mut label, mut times) = (Vec::new(), Vec::new());
    for t in config.trips()? {
        let duration = t.tpep_dropoff_datetime - t.tpep_pickup_datetime;
        let clean = (2.5..=250.0).contains(&t.fare_amount)
            && t.trip_distance > 0.0
            && t.trip_distance < 100.0
            && duration > 0
            && duration < 3 * 3_600_000_000;
        if !clean {
            continue;
        }
        let pickup = t.tpep_pickup_datetime;
        let day = pickup.div_euclid(DAY_US);
        let values = [
            t.trip_distance,
            duration as f64 / 60e6,
            (pickup.rem_euclid(DAY_US) / 3_600_000_000) as f64,
            (day + 4).rem_euclid(7) as f64,
            f64::from(t.pu_location_id),
            f64::from(t.do_location_id),
            t.passenger_count.map_or(f64::NAN, |v| v as f64),
            t.ratecode_id.map_or(f64::NAN, |v| v as f64),
        ];
        for (c, v) in columns.iter_mut().zip(values) {
            c.push(v);
        }
        label.push(t.fare_amount);
        times.push(pickup);
    }
    let features = FEATURES
        .iter()
        .map(|n| Feature {
            name: n.to_string(),
            data_type: "Float64".into(),
        })
        .collect();
    Ok(Dataset {
        features,
        columns,
        label,
        times: Some(times),
    })
}

fn write_parquet(args: &Args, data: &Dataset) -> Result<()> {
    let last_day = data
        .times
        .as_ref()
        .unwrap()
        .iter()
        .max()
        .unwrap()
        .div_euclid(DAY_US);
    let from = (last_day - args.valid_days + 1) * DAY_US;
    let mut fields: Vec<Field> = FEATURES
        .iter()
        .map(|n| Field::new(*n, DataType::Float64, true))
        .collect();
    fields.push(Field::new("fare_amount", DataType::Float64, false));
    fields.push(Field::new("valid", DataType::Int8, false));
    let mut arrays: Vec<Arc<dyn arrow::array::Array>> = data
        .columns
        .iter()
        .map(|c| Arc::new(Float64Array::from(c.clone())) as _)
        .collect();
    arrays.push(Arc::new(Float64Array::from(data.label.clone())));
    let valid: Int8Array = data
        .times
        .as_ref()
        .unwrap()
        .iter()
        .map(|t| Some(i8::from(*t >= from)))
        .collect();
    arrays.push(Arc::new(valid));
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?;
    let file = std::fs::File::create(&args.out).with_context(|| args.out.display().to_string())?;
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None)?;
    w.write(&batch)?;
    w.close()?;
    Ok(())
}

/// Batch scoring on one thread: predictions per second per core.
fn scoring(data: &Dataset, model: &basin_ml::Model) {
    let rows = data.rows().min(1_000_000);
    let cols: Vec<&[f64]> = data.columns.iter().map(|c| &c[..rows]).collect();
    let started = Instant::now();
    let mut scored = 0;
    for chunk in (0..rows).step_by(8192) {
        let end = (chunk + 8192).min(rows);
        let part: Vec<&[f64]> = cols.iter().map(|c| &c[chunk..end]).collect();
        scored += model.predict(&part, end - chunk).len();
    }
    let s = started.elapsed().as_secs_f64();
    report(
        "basin_scoring",
        serde_json::json!({"rows": scored, "seconds": s, "per_second_per_core": scored as f64 / s}),
    );
}

fn perpetual_run(data: &Dataset, from: i64) -> Result<()> {
    use perpetual::objective::Objective;
    let times = data.times.as_ref().unwrap();
    let (fit_idx, held_idx): (Vec<usize>, Vec<usize>) =
        (0..data.rows()).partition(|&i| times[i] < from);
    let (fit, held) = (data.take(&fit_idx), data.take(&held_idx));
    let started = Instant::now();
    let flat = fit.matrix();
    let matrix = perpetual::Matrix::new(&flat, fit.rows(), fit.columns.len());
    let mut booster = perpetual::PerpetualBooster::default()
        .set_objective(Objective::SquaredLoss)
        .set_budget(0.5);
    booster
        .fit(&matrix, &fit.label, None, None)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let seconds = started.elapsed().as_secs_f64();
    let flat = held.matrix();
    let pred = booster.predict(
        &perpetual::Matrix::new(&flat, held.rows(), held.columns.len()),
        true,
    );
    let m = Metrics::regression(&held.label, &pred);
    report(
        "perpetual",
        serde_json::json!({"seconds": seconds, "rmse": m.rmse, "r2": m.r2, "budget": 0.5}),
    );
    Ok(())
}
