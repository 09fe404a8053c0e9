//! Every example pipeline in examples/pipelines gives the same rows in
//! stream mode (bounded, two parallel subtasks) as in batch mode, over
//! taxi trips loaded into a topic.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{run_basin, TestBroker};

const LIMIT: Duration = Duration::from_secs(300);

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/pipelines")
}

/// Load a day of generated trips into the `trips` topic, in pickup order.
fn load_trips(brokers: &str, dir: &Path) {
    let create = ["topic", "create", "trips", "--partitions", "3"];
    assert!(run_basin(brokers, &create, None, LIMIT).success);
    let file = dir.join("trips.parquet");
    let gen = [
        "gen",
        "taxi",
        "--rows",
        "6000",
        "--days",
        "1",
        "--out",
        file.to_str().unwrap(),
    ];
    assert!(run_basin(brokers, &gen, None, LIMIT).success);
    let sources = std::fs::read_to_string(examples().join("_trips.sql")).unwrap();
    let topic_ddl = sources
        .replace(",\n    WATERMARK FOR tpep_pickup_datetime AS tpep_pickup_datetime - INTERVAL '10' SECOND", "")
        .replace("CREATE EXTERNAL TABLE trips", "CREATE EXTERNAL TABLE trips_in");
    assert!(
        !topic_ddl.contains("WATERMARK"),
        "the test strips the watermark clause"
    );
    let load = format!(
        "CREATE EXTERNAL TABLE src STORED AS PARQUET LOCATION '{}';
         {topic_ddl}
         INSERT INTO trips_in SELECT * FROM src ORDER BY tpep_pickup_datetime;",
        file.display()
    );
    let data = dir.join("load");
    let out = run_basin(
        brokers,
        &["sql", "--data-dir", data.to_str().unwrap(), &load],
        None,
        LIMIT,
    );
    assert!(out.success, "{}", out.stderr);
}

/// A CSV line with numbers rounded to 9 significant digits.
fn normalize(line: &str) -> String {
    line.split(',')
        .map(|f| match f.parse::<f64>() {
            Ok(x) if f.contains('.') => format!("{x:.9e}"),
            _ => f.to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn table_rows(brokers: &str, data: &Path, table: &str) -> Vec<String> {
    let query = format!("SELECT * FROM {table}");
    let args = [
        "sql",
        "--data-dir",
        data.to_str().unwrap(),
        "--format",
        "csv",
        &query,
    ];
    let out = run_basin(brokers, &args, None, LIMIT);
    assert!(out.success, "{}", out.stderr);
    let mut rows: Vec<String> = out.stdout.lines().skip(1).map(normalize).collect();
    rows.sort();
    rows
}

#[test]
fn every_example_pipeline_gives_the_same_rows_in_both_modes() {
    let broker = TestBroker::start();
    let brokers = broker.bootstrap();
    let dir = tempfile::tempdir().unwrap();
    load_trips(&brokers, dir.path());
    let sources = examples().join("_trips.sql");
    let mut checked = 0;
    for entry in std::fs::read_dir(examples()).unwrap() {
        let file = entry.unwrap().path();
        let name = file.file_stem().unwrap().to_string_lossy().into_owned();
        if name.starts_with('_') || file.extension().is_none_or(|e| e != "sql") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let table = text
            .split("INSERT INTO ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .expect("an example writes a lake table")
            .to_string();
        let mut results = Vec::new();
        for mode in [
            &["--bounded", "--parallelism", "2"][..],
            &["--mode", "batch"][..],
        ] {
            let data = dir.path().join(format!("{name}-{}", mode[0]));
            let mut args = vec![
                "pipeline",
                "run",
                sources.to_str().unwrap(),
                file.to_str().unwrap(),
            ];
            args.extend_from_slice(&["--data-dir", data.to_str().unwrap()]);
            args.extend_from_slice(mode);
            let out = run_basin(&brokers, &args, None, LIMIT);
            assert!(out.success, "{name} {mode:?}: {}", out.stderr);
            results.push(table_rows(&brokers, &data, &table));
        }
        assert!(!results[1].is_empty(), "{name}: the trips give rows");
        let diff = results[0].iter().zip(&results[1]).find(|(s, b)| s != b);
        assert!(
            diff.is_none(),
            "{name}: first difference (stream, batch): {diff:?}"
        );
        assert_eq!(
            results[0].len(),
            results[1].len(),
            "{name}: row counts differ"
        );
        checked += 1;
    }
    assert!(checked >= 4, "the examples were found");
}
