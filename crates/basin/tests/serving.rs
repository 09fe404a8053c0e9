//! Online model serving through the binary: a fare model trained with
//! `CREATE MODEL` on `basin gen taxi` trips, scored over `basin up`'s
//! `POST /v1/models/{name}/predict` with bit-for-bit the numbers batch
//! SQL's `predict()` and a stream pipeline's give for the same trips; clear 400s and 404s; and a
//! newly promoted version answering without a restart, while a pinned
//! `name@version` keeps its own.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use common::run_basin;
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(600);

const FEATURES: &str = common::FARE_FEATURES;

/// Run `basin sql` on `data`; (stdout, stderr).
fn sql(data: &Path, statement: &str, format: &str) -> (String, String) {
    let args = [
        "sql",
        "--data-dir",
        data.to_str().unwrap(),
        "--format",
        format,
        statement,
    ];
    let run = run_basin("127.0.0.1:1", &args, None, LIMIT);
    assert!(run.success, "{statement}: {}", run.stderr);
    (run.stdout, run.stderr)
}

/// Three days of trips and their fare features in `lake.features`, as
/// `tests/model.rs` builds them.
fn features(dir: &Path, data: &Path) {
    let file = dir.join("trips.parquet");
    let gen = ["gen", "taxi", "--rows", "3000", "--days", "3", "--out"];
    let run = run_basin(
        "127.0.0.1:1",
        &[&gen[..], &[file.to_str().unwrap()]].concat(),
        None,
        LIMIT,
    );
    assert!(run.success, "{}", run.stderr);
    sql(data, &common::fare_features_sql(&file), "csv");
}

/// Train version `version` of `fare_model`, made production.
fn train(data: &Path, version: u32, iterations: u32) {
    let statement = format!(
        "CREATE MODEL fare_model OPTIONS (label = 'fare_amount', time_column = 'pickup_ts',
             stage = 'production', iterations = {iterations}) AS SELECT * FROM lake.features"
    );
    let (_, said) = sql(data, &statement, "csv");
    let want = format!("model fare_model version {version} (production)");
    assert!(said.contains(&want), "{said}");
}

/// 50 rows of `lake.features` in a fixed order, each with the prediction
/// batch SQL gives it from `model` (as `sql_prediction`). JSON lines leave
/// out null values; they come back as explicit nulls, as a client sends a
/// missing value.
fn scored_rows(data: &Path, model: &str) -> Vec<Value> {
    let query = format!(
        "SELECT *, predict('{model}', {FEATURES}) AS sql_prediction FROM lake.features
         ORDER BY pickup_ts, trip_distance, pu_zone, do_zone LIMIT 50"
    );
    let (out, _) = sql(data, &query, "json");
    let rows: Vec<Value> = out
        .lines()
        .map(|line| {
            let mut row: Value = serde_json::from_str(line).unwrap();
            for f in FEATURES.split(", ") {
                row.as_object_mut().unwrap().entry(f).or_insert(Value::Null);
            }
            row
        })
        .collect();
    assert_eq!(rows.len(), 50, "{out}");
    rows
}

/// The bits of each row's `sql_prediction`.
fn sql_bits(rows: &[Value]) -> Vec<u64> {
    rows.iter()
        .map(|r| {
            r["sql_prediction"]
                .as_f64()
                .expect("a prediction")
                .to_bits()
        })
        .collect()
}

/// The bits of an answer's predictions.
fn http_bits(body: &Value) -> Vec<u64> {
    body["predictions"]
        .as_array()
        .unwrap_or_else(|| panic!("no predictions: {body}"))
        .iter()
        .map(|p| p.as_f64().expect("a number").to_bits())
        .collect()
}

/// The same rows through a stream pipeline on the node's broker: each
/// row's `predict()` as the pipeline wrote it to a topic, by row order.
fn stream_bits(node: &common::Node, data: &Path, rows: &[Value]) -> Vec<u64> {
    let brokers = &node.kafka;
    for topic in ["fare_features", "fare_scored"] {
        let create = ["topic", "create", topic, "--partitions", "1"];
        assert!(run_basin(brokers, &create, None, LIMIT).success);
    }
    let lines: String = rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut r = r.clone();
            r["seq"] = json!(i);
            format!("{r}\n")
        })
        .collect();
    assert!(run_basin(brokers, &["produce", "fare_features"], Some(lines), LIMIT).success);
    let file = data.parent().unwrap().join("score_trips.sql");
    std::fs::write(
        &file,
        format!(
            "CREATE EXTERNAL TABLE fare_features (seq BIGINT, pickup_ts TIMESTAMP,
               trip_distance DOUBLE, duration_min DOUBLE, pickup_hour DOUBLE, pickup_weekday DOUBLE,
               pu_zone INT, do_zone INT, passenger_count BIGINT, rate_code BIGINT,
               WATERMARK FOR pickup_ts AS pickup_ts - INTERVAL '1' SECOND)
             STORED AS TOPIC LOCATION 'fare_features';
             CREATE EXTERNAL TABLE fare_scored (seq BIGINT, p DOUBLE) STORED AS TOPIC LOCATION 'fare_scored';
             INSERT INTO fare_scored SELECT seq, predict('fare_model', {FEATURES}) FROM fare_features;"
        ),
    )
    .unwrap();
    let data_arg = data.to_str().unwrap();
    let run = [
        "pipeline",
        "run",
        file.to_str().unwrap(),
        "--bounded",
        "--data-dir",
        data_arg,
    ];
    let run = run_basin(brokers, &run, None, LIMIT);
    assert!(run.success, "{}", run.stderr);
    let read = "CREATE EXTERNAL TABLE scored_read (seq BIGINT, p DOUBLE) STORED AS TOPIC LOCATION 'fare_scored';
                SELECT p FROM scored_read ORDER BY seq";
    let args = ["sql", "--data-dir", data_arg, "--format", "json", read];
    let out = run_basin(brokers, &args, None, LIMIT);
    assert!(out.success, "{}", out.stderr);
    out.stdout
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            v["p"].as_f64().expect("a score").to_bits()
        })
        .collect()
}

/// POST `body` to `path`: (status, JSON body).
fn post(http: &str, path: &str, body: &Value) -> (u16, Value) {
    let body = body.to_string();
    let mut stream = TcpStream::connect(http).unwrap();
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {http}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, answer) = response.split_once("\r\n\r\n").expect("http response");
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let answer = serde_json::from_str(answer.trim())
        .unwrap_or_else(|e| panic!("POST {path}: answer is not JSON ({e}): {answer}"));
    (status, answer)
}

fn predict(node: &common::Node, model: &str, body: &Value) -> (u16, Value) {
    post(&node.http, &format!("/v1/models/{model}/predict"), body)
}

/// The error message of a failed request, checking its status.
fn error(node: &common::Node, model: &str, body: &Value, status: u16) -> String {
    let (got, answer) = predict(node, model, body);
    assert_eq!(got, status, "{answer}");
    answer["error"].as_str().unwrap().to_string()
}

#[test]
fn http_predictions_match_batch_sql_and_follow_promotions() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    features(dir.path(), &data);
    train(&data, 1, 30);
    let node = common::start_node(&data);

    // The same rows score the same, bit for bit, in every body shape.
    let rows = scored_rows(&data, "fare_model");
    let (status, body) = predict(&node, "fare_model", &json!({ "rows": rows }));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["model"], "fare_model");
    assert_eq!(body["version"], 1);
    let v1 = http_bits(&body);
    assert_eq!(v1, sql_bits(&rows));
    assert_eq!(
        stream_bits(&node, &data, &rows),
        v1,
        "stream vs HTTP and batch"
    );
    let (status, body) = predict(&node, "fare_model", &json!(rows[..3]));
    assert_eq!(status, 200, "{body}");
    assert_eq!(http_bits(&body), v1[..3]);
    let (status, body) = predict(&node, "fare_model", &rows[7]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(http_bits(&body), [v1[7]]);

    // Bad rows name the row and the field.
    let mut missing = rows[..3].to_vec();
    missing[2].as_object_mut().unwrap().remove("trip_distance");
    let message = error(&node, "fare_model", &json!({ "rows": missing }), 400);
    assert!(
        message.contains("row 2") && message.contains("'trip_distance' is missing"),
        "{message}"
    );
    let mut text = rows[0].clone();
    text["duration_min"] = json!("12.5");
    let message = error(&node, "fare_model", &json!({ "rows": [text] }), 400);
    assert!(
        message.contains("row 0") && message.contains("'duration_min'"),
        "{message}"
    );
    assert!(message.contains("a string"), "{message}");
    let message = error(&node, "fare_model", &json!({ "rows": [] }), 400);
    assert!(message.contains("no rows"), "{message}");

    // Unknown models and versions are 404.
    let message = error(&node, "no_such_model", &rows[0], 404);
    assert!(
        message.contains("no model named no_such_model"),
        "{message}"
    );
    let message = error(&node, "fare_model@9", &rows[0], 404);
    assert!(message.contains("no version 9"), "{message}");

    // A second production version answers at once; @1 stays version 1.
    train(&data, 2, 40);
    let v2_rows = scored_rows(&data, "fare_model@2");
    let (status, body) = predict(&node, "fare_model", &json!({ "rows": v2_rows }));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["version"], 2, "{body}");
    assert_eq!(http_bits(&body), sql_bits(&v2_rows));
    assert_ne!(sql_bits(&v2_rows), v1, "version 2 scores differently");
    let (status, body) = predict(&node, "fare_model@1", &json!({ "rows": rows }));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["version"], 1, "{body}");
    assert_eq!(http_bits(&body), v1);
}
