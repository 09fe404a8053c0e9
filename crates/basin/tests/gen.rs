//! `basin gen taxi` end to end through the built binary: small CSV and
//! Parquet files (read back), folders of parts, same seed → same bytes,
//! clear errors for bad flags, and producing JSON lines to a topic of an
//! in-process broker (keys, partitions, timestamps, pacing).

mod common;

use std::fs::File;
use std::path::Path;
use std::time::Duration;

use basin::partitioner::hash_partition;
use common::{run_basin, Run, TestBroker};
use parquet::file::reader::{FileReader, SerializedFileReader};

/// Run `basin ARGS` (killed after 120 s) with `brokers` as BASIN_BROKERS.
fn basin(args: &[&str], brokers: &str) -> Run {
    run_basin(brokers, args, None, Duration::from_secs(120))
}

fn gen(args: &[&str]) -> Run {
    let mut full = vec!["gen", "taxi"];
    full.extend_from_slice(args);
    basin(&full, "127.0.0.1:1")
}

fn stderr(out: &Run) -> &str {
    &out.stderr
}

fn parquet_rows(path: &Path) -> i64 {
    let reader = SerializedFileReader::new(File::open(path).expect("open")).expect("parquet");
    reader.metadata().file_metadata().num_rows()
}

#[test]
fn writes_csv_and_parquet() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("trips.csv");
    let csv_arg = csv.to_str().unwrap();
    let out = gen(&["--rows", "3000", "--seed", "5", "--out", csv_arg]);
    assert!(out.success, "{}", stderr(&out));
    let summary = stderr(&out);
    assert!(
        summary.contains("wrote 3000 rows") && summary.contains("rows/s"),
        "{summary}"
    );
    let text = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(text.lines().count(), 3001);
    assert!(text.starts_with("VendorID,tpep_pickup_datetime,"));
    assert!(text.lines().nth(1).unwrap().contains(",2024-01-01T"));

    let pq = dir.path().join("trips.parquet");
    let args = [
        "--rows",
        "3000",
        "--seed",
        "5",
        "--start",
        "2024-03-01",
        "--days",
        "2",
    ];
    let out = gen(&[&args[..], &["--out", pq.to_str().unwrap()]].concat());
    assert!(out.success, "{}", stderr(&out));
    assert_eq!(parquet_rows(&pq), 3000);
    let bytes = std::fs::read(&pq).unwrap();
    assert_eq!(&bytes[..4], b"PAR1");

    // Same seed, same bytes.
    let again = dir.path().join("again.parquet");
    let out = gen(&[&args[..], &["--out", again.to_str().unwrap()]].concat());
    assert!(out.success, "{}", stderr(&out));
    assert_eq!(std::fs::read(&again).unwrap(), bytes);
}

#[test]
fn writes_a_folder_of_parts() {
    let dir = tempfile::tempdir().unwrap();
    let parts = dir.path().join("parts");
    let parts_arg = parts.to_str().unwrap();
    let args = [
        "--rows",
        "2500",
        "--out",
        parts_arg,
        "--rows-per-file",
        "1000",
        "--format",
        "csv",
    ];
    let out = gen(&args);
    assert!(out.success, "{}", stderr(&out));
    assert!(stderr(&out).contains("(3 files)"), "{}", stderr(&out));
    let lines: Vec<usize> = ["part-00000.csv", "part-00001.csv", "part-00002.csv"]
        .iter()
        .map(|name| {
            std::fs::read_to_string(parts.join(name))
                .unwrap()
                .lines()
                .count()
        })
        .collect();
    assert_eq!(lines, [1001, 1001, 501]);
    let out = gen(&args);
    assert!(!out.success);
    assert!(stderr(&out).contains("is not empty"), "{}", stderr(&out));
}

#[test]
fn bad_flags_are_explained() {
    let cases: [(&[&str], &str); 6] = [
        (&["--out", "x.parquet"], "--rows"),
        (&["--rows", "10"], "--out"),
        (
            &["--rows", "0", "--out", "x.parquet"],
            "--rows must be at least 1",
        ),
        (
            &["--rows", "1", "--out", "x.csv", "--start", "soon"],
            "YYYY-MM-DD",
        ),
        (&["--topic", "t", "--rate", "lots"], "N/s"),
        (
            &["--rows", "1", "--out", "x.csv", "--format", "parquet"],
            "does not match",
        ),
    ];
    for (args, expected) in cases {
        let out = gen(args);
        assert!(!out.success, "{args:?} succeeded");
        assert!(
            stderr(&out).contains(expected),
            "{args:?}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn produces_trips_to_a_topic() {
    let broker = TestBroker::start();
    let brokers = broker.bootstrap();
    let created = basin(&["topic", "create", "trips", "--partitions", "3"], &brokers);
    assert!(created.success);
    let args = [
        "gen", "taxi", "--topic", "trips", "--rows", "300", "--rate", "max",
    ];
    let produced = basin(
        &[&args[..], &["--start", "2024-01-01", "--seed", "9"]].concat(),
        &brokers,
    );
    assert!(produced.success);
    assert!(
        stderr(&produced).contains("produced 300 trips"),
        "{}",
        stderr(&produced)
    );

    let consume = [
        "consume",
        "trips",
        "--from-beginning",
        "--max",
        "300",
        "--format",
        "json",
    ];
    let consumed = basin(
        &[&consume[..], &["--timeout-ms", "30000"]].concat(),
        &brokers,
    );
    assert!(consumed.success);
    let stdout = &consumed.stdout;
    let records: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("json record"))
        .collect();
    assert_eq!(records.len(), 300);
    let jan_1_2024_ms = 1_704_067_200_000_i64;
    for record in &records {
        let trip: serde_json::Value =
            serde_json::from_str(record["value"].as_str().unwrap()).unwrap();
        let key = record["key"].as_str().unwrap();
        assert_eq!(key, trip["PULocationID"].to_string());
        let partition = record["partition"].as_i64().unwrap() as i32;
        assert_eq!(partition, hash_partition(key.as_bytes(), 3));
        let ts = record["timestamp"].as_i64().unwrap();
        assert!(
            (jan_1_2024_ms..jan_1_2024_ms + 600_000).contains(&ts),
            "{ts}"
        );
        let pickup = trip["tpep_pickup_datetime"].as_str().unwrap();
        assert!(pickup.starts_with("2024-01-01T00:"), "{pickup}");
    }
}

#[test]
fn paces_to_the_rate() {
    let broker = TestBroker::start();
    let brokers = broker.bootstrap();
    let created = basin(&["topic", "create", "paced"], &brokers);
    assert!(created.success);
    let args = [
        "gen",
        "taxi",
        "--topic",
        "paced",
        "--rate",
        "200/s",
        "--duration",
        "1s",
    ];
    let produced = basin(&args, &brokers);
    assert!(produced.success);
    let text = stderr(&produced);
    let count: u64 = text
        .split("produced ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {text}"));
    assert!(
        (100..=215).contains(&count),
        "{count} trips in 1 s at 200/s"
    );
}
