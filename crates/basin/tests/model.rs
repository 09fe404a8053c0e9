//! Models end to end through the binary: `basin gen taxi` trips, features
//! in SQL, `CREATE MODEL` (and `basin model train`), the registry's
//! versions and stages (`basin model list|show|promote|rollback`), and
//! `predict()` in batch SQL scoring exactly as training measured it.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{run_basin, Run};

const LIMIT: Duration = Duration::from_secs(600);

fn basin(dir: &Path, args: &[&str]) -> Run {
    let mut all = args.to_vec();
    let data = dir.join("data");
    all.extend(["--data-dir", data.to_str().unwrap()]);
    run_basin("127.0.0.1:1", &all, None, LIMIT)
}

fn sql(dir: &Path, sql: &str) -> Run {
    basin(dir, &["sql", sql, "--format", "csv"])
}

fn ok(run: Run) -> String {
    assert!(run.success, "{}", run.stderr);
    run.stdout
}

/// What a successful statement reported (messages go to stderr).
fn said(run: Run) -> String {
    assert!(run.success, "{}", run.stderr);
    run.stderr
}

/// A week of trips, cleaned as the seed course does (the generator keeps
/// the real data's refunds, zero-distance and runaway-meter rows), and its
/// fare features in `lake.features`.
fn features(dir: &Path, rows: &str) {
    let file = dir.join("trips.parquet");
    let gen = [
        "gen",
        "taxi",
        "--rows",
        rows,
        "--days",
        "7",
        "--out",
        file.to_str().unwrap(),
    ];
    ok(run_basin("127.0.0.1:1", &gen, None, LIMIT));
    ok(sql(dir, &common::fare_features_sql(&file)));
}

const FEATURES: &str = common::FARE_FEATURES;

fn show(dir: &Path, name: &str) -> serde_json::Value {
    let out = ok(basin(dir, &["model", "show", name, "--json"]));
    serde_json::from_str(&out).unwrap()
}

#[test]
fn the_taxi_fare_model_reaches_r2_on_held_out_days_and_sql_scores_as_training_measured() {
    let dir = tempfile::tempdir().unwrap();
    features(dir.path(), "40000");
    let trained = said(sql(
        dir.path(),
        "CREATE MODEL fare_model OPTIONS (label = 'fare_amount', time_column = 'pickup_ts',
             validation = '2 days', stage = 'production', iterations = 150)
         AS SELECT * FROM lake.features",
    ));
    assert!(
        trained.contains("model fare_model version 1 (production)"),
        "{trained}"
    );
    let v = &show(dir.path(), "fare_model")["version"];
    let valid = &v["report"]["validation"];
    let r2 = valid["r2"].as_f64().unwrap();
    assert!(r2 >= 0.9, "held-out R² {r2}: {v:#}");
    let names: Vec<&str> = v["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.join(", "), FEATURES);
    assert_eq!(v["report"]["importance"][0][0], "trip_distance", "{v:#}");
    assert_eq!(
        v["lineage"]["snapshot"]["tables"][0]["table"],
        "lake.features"
    );
    // predict() over the held-out days gives the metrics training recorded.
    let from = v["report"]["validation_from"].as_i64().unwrap();
    let scored = ok(sql(
        dir.path(),
        &format!(
            "WITH s AS (SELECT fare_amount AS y, predict('fare_model', {FEATURES}) AS p,
                               predict_version('fare_model') AS v
                        FROM lake.features
                        WHERE pickup_ts >= to_timestamp_micros({from}))
             SELECT count(*), sqrt(avg((y - p) * (y - p))), min(v), max(v) FROM s"
        ),
    ));
    let row: Vec<&str> = scored.lines().nth(1).unwrap().split(',').collect();
    assert_eq!(row[0], valid["rows"].to_string(), "{scored}");
    let rmse: f64 = row[1].parse().unwrap();
    let want = valid["rmse"].as_f64().unwrap();
    assert!(
        (rmse - want).abs() <= 1e-9 * want,
        "SQL RMSE {rmse}, training's {want}"
    );
    assert_eq!(&row[2..], ["1", "1"]);
}

#[test]
fn versions_are_promoted_rolled_back_pinned_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    features(dir.path(), "6000");
    let train = |algorithm: &str| {
        ok(basin(
            dir.path(),
            &[
                "model",
                "train",
                "fare",
                "--query",
                "SELECT * FROM lake.features",
                "--label",
                "fare_amount",
                "--time-column",
                "pickup_ts",
                "--algorithm",
                algorithm,
                "--param",
                "iterations=20",
            ],
        ))
    };
    assert!(train("linear").contains("version 1 (candidate)"));
    assert!(train("gbt").contains("version 2 (candidate)"));
    let q = format!("SELECT predict('fare', {FEATURES}) FROM lake.features LIMIT 1");
    let err = sql(dir.path(), &q).stderr;
    assert!(
        err.contains("model fare has no production version"),
        "{err}"
    );
    ok(basin(dir.path(), &["model", "promote", "fare", "1"]));
    ok(basin(dir.path(), &["model", "promote", "fare", "2"]));
    let stages = |dir: &Path| -> Vec<String> {
        show(dir, "fare")["model"]["versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["stage"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(stages(dir.path()), ["archived", "production"]);
    let version = |r: &str| ok(sql(dir.path(), &format!("SELECT predict_version('{r}')")));
    assert_eq!(version("fare").lines().nth(1), Some("2"));
    let back = ok(basin(dir.path(), &["model", "rollback", "fare"]));
    assert!(back.contains("version 1 is back in production"), "{back}");
    assert_eq!(stages(dir.path()), ["production", "archived"]);
    assert_eq!(version("fare").lines().nth(1), Some("1"));
    let list = ok(basin(dir.path(), &["model", "list"]));
    let cells: Vec<&str> = list.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        cells[..5],
        ["fare", "2", "1", "2", "linear_regression"],
        "{list}"
    );
    // A pinned version scores even when it is not production; a model file
    // that no longer matches its checksum is refused.
    let pinned = format!("SELECT predict('fare@2', {FEATURES}) FROM lake.features LIMIT 1");
    ok(sql(dir.path(), &pinned));
    let file = dir.path().join("data/models/fare/v2.json");
    let mut bytes = std::fs::read(&file).unwrap();
    let at = bytes.len() / 2;
    bytes[at] = if bytes[at] == b'1' { b'2' } else { b'1' };
    std::fs::write(&file, bytes).unwrap();
    let err = sql(dir.path(), &pinned).stderr;
    assert!(err.contains("fails its checksum"), "{err}");
}

#[test]
fn bad_training_input_and_bad_predict_calls_are_named() {
    let dir = tempfile::tempdir().unwrap();
    features(dir.path(), "2000");
    let create = |options: &str, select: &str| {
        sql(
            dir.path(),
            &format!("CREATE MODEL m OPTIONS (label = 'fare_amount', {options}) AS {select}"),
        )
        .stderr
    };
    let base = "SELECT * FROM lake.features";
    let err = create("features = 'trip_distance, tip'", base);
    assert!(err.contains("column 'tip' is missing"), "{err}");
    let err = create(
        "iterations = 5",
        "SELECT fare_amount, 'x' AS zone FROM lake.features",
    );
    assert!(err.contains("column 'zone' has type Utf8"), "{err}");
    let err = create(
        "iterations = 5",
        "SELECT fare_amount, trip_distance, CAST(NULL AS DOUBLE) AS nothing FROM lake.features",
    );
    assert!(
        err.contains("column 'nothing' is null in every row"),
        "{err}"
    );
    let err = create("depth = 3", base);
    assert!(err.contains("unknown parameter 'depth'"), "{err}");
    let err = create("time_column = 'pickup_ts', validation = '3 weeks'", base);
    assert!(err.contains("validation = '3 weeks'"), "{err}");
    let err = sql(dir.path(), "CREATE MODEL m AS SELECT 1 AS x").stderr;
    assert!(err.contains("needs OPTIONS (label"), "{err}");
    ok(sql(
        dir.path(),
        "CREATE MODEL m OPTIONS (label = 'fare_amount', features = 'trip_distance, duration_min',
             algorithm = 'linear', stage = 'production') AS SELECT * FROM lake.features",
    ));
    let err = sql(
        dir.path(),
        "SELECT predict('m', trip_distance) FROM lake.features",
    )
    .stderr;
    assert!(
        err.contains("takes 2 features (trip_distance, duration_min), got 1"),
        "{err}"
    );
    let err = sql(
        dir.path(),
        "SELECT predict('m', trip_distance, 'long') FROM lake.features",
    )
    .stderr;
    assert!(
        err.contains("argument 3 (feature duration_min) has type Utf8"),
        "{err}"
    );
    let err = sql(dir.path(), "SELECT predict('nope', 1.0)").stderr;
    assert!(err.contains("no model named nope"), "{err}");
}
