//! `basin gen taxi` end to end through the built binary: small CSV and
//! Parquet files (read back), folders of parts, same seed → same bytes,
//! clear errors for bad flags, and producing JSON lines to a topic of an
//! in-process broker (keys, partitions, timestamps, pacing). `basin gen
//! nexmark` likewise: three files with the 1:3:46 line counts, split runs
//! adding up to one, and the same events produced to three topics.

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

fn nexmark(args: &[&str]) -> Run {
    let mut full = vec!["gen", "nexmark"];
    full.extend_from_slice(args);
    basin(&full, "127.0.0.1:1")
}

const NEXMARK_FILES: [&str; 3] = ["person.jsonl", "auction.jsonl", "bid.jsonl"];

fn read_lines(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    text.lines().map(str::to_string).collect()
}

#[test]
fn nexmark_writes_three_files() {
    let dir = tempfile::tempdir().unwrap();
    let all = dir.path().join("all");
    let out = nexmark(&["--events", "5000", "--out", all.to_str().unwrap()]);
    assert!(out.success, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("wrote 5000 events (100 person, 300 auction, 4600 bid;"),
        "{}",
        stderr(&out)
    );
    let counts: Vec<usize> = NEXMARK_FILES
        .iter()
        .map(|f| read_lines(&all.join(f)).len())
        .collect();
    assert_eq!(counts, [100, 300, 4_600]);
    let bid: serde_json::Value =
        serde_json::from_str(&read_lines(&all.join("bid.jsonl"))[0]).unwrap();
    assert_eq!(bid["date_time"], "2026-01-01 00:00:00.000");

    // Two runs splitting the event numbers make the same lines as one.
    let (head, tail) = (dir.path().join("head"), dir.path().join("tail"));
    let out = nexmark(&["--events", "1234", "--out", head.to_str().unwrap()]);
    assert!(out.success, "{}", stderr(&out));
    let rest = ["--events", "3766", "--first-event", "1234"];
    let out = nexmark(&[&rest[..], &["--out", tail.to_str().unwrap()]].concat());
    assert!(out.success, "{}", stderr(&out));
    for file in NEXMARK_FILES {
        let mut split = read_lines(&head.join(file));
        split.extend(read_lines(&tail.join(file)));
        assert_eq!(split, read_lines(&all.join(file)), "{file}");
    }
}

#[test]
fn nexmark_bad_flags_are_explained() {
    let cases: [(&[&str], &str); 5] = [
        (
            &["--events", "0", "--out", "d"],
            "--events must be at least 1",
        ),
        (&["--events", "10"], "--topics"),
        (&["--out", "d"], "--events"),
        (
            &["--events", "1", "--out", "d", "--prefix", "x"],
            "--topics",
        ),
        (
            &["--events", "1", "--out", "d", "--event-rate", "0"],
            "--event-rate must be at least 1",
        ),
    ];
    for (args, expected) in cases {
        let out = nexmark(args);
        assert!(!out.success, "{args:?} succeeded");
        assert!(
            stderr(&out).contains(expected),
            "{args:?}: {}",
            stderr(&out)
        );
    }
}

/// The first `count` JSON records of `topic`.
fn consume(topic: &str, count: usize, brokers: &str) -> Vec<serde_json::Value> {
    let max = count.to_string();
    let args = ["consume", topic, "--from-beginning", "--format", "json"];
    let limits = ["--max", &max, "--timeout-ms", "30000"];
    let consumed = basin(&[&args[..], &limits[..]].concat(), brokers);
    assert!(consumed.success, "{}", consumed.stderr);
    consumed
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("json record"))
        .collect()
}

/// `(partitions, records)` of `topic` from `basin topic describe`.
fn describe_topic(topic: &str, brokers: &str) -> (usize, i64) {
    let described = basin(&["topic", "describe", topic], brokers);
    assert!(described.success, "{}", described.stderr);
    let rows: Vec<Vec<&str>> = described
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .skip_while(|cols| cols.first() != Some(&"PARTITION"))
        .skip(1)
        .take_while(|cols| cols.len() == 4 && cols[0].parse::<i32>().is_ok())
        .collect();
    let records = rows
        .iter()
        .map(|cols| cols[3].parse::<i64>().unwrap() - cols[2].parse::<i64>().unwrap())
        .sum();
    (rows.len(), records)
}

/// Milliseconds since the epoch of a `YYYY-MM-DD HH:MM:SS.mmm` string.
fn millis(text: &str) -> i64 {
    chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.3f")
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .and_utc()
        .timestamp_millis()
}

#[test]
fn nexmark_produces_to_three_topics() {
    let broker = TestBroker::start();
    let brokers = broker.bootstrap();
    let args = [
        "gen", "nexmark", "--events", "5000", "--topics", "--prefix", "nx_",
    ];
    let produced = basin(&[&args[..], &["--partitions", "3"]].concat(), &brokers);
    assert!(produced.success, "{}", produced.stderr);
    assert!(
        stderr(&produced).contains("produced 5000 events (100 person, 300 auction, 4600 bid;"),
        "{}",
        stderr(&produced)
    );
    let dir = tempfile::tempdir().unwrap();
    let out = nexmark(&["--events", "5000", "--out", dir.path().to_str().unwrap()]);
    assert!(out.success, "{}", stderr(&out));

    let kinds = [
        ("person", "id", 100),
        ("auction", "id", 300),
        ("bid", "auction", 4_600),
    ];
    for (kind, id_field, count) in kinds {
        let topic = format!("nx_{kind}");
        assert_eq!(describe_topic(&topic, &brokers), (3, count as i64));
        let records = consume(&topic, count, &brokers);
        let mut values = Vec::new();
        for record in &records {
            let text = record["value"].as_str().unwrap();
            let event: serde_json::Value = serde_json::from_str(text).unwrap();
            let key = record["key"].as_str().unwrap();
            assert_eq!(key, event[id_field].to_string());
            let partition = record["partition"].as_i64().unwrap() as i32;
            assert_eq!(partition, hash_partition(key.as_bytes(), 3));
            let ts = record["timestamp"].as_i64().unwrap();
            assert_eq!(ts, millis(event["date_time"].as_str().unwrap()));
            values.push(text.to_string());
        }
        // The same events as the files, in some partition order.
        let mut lines = read_lines(&dir.path().join(format!("{kind}.jsonl")));
        values.sort();
        lines.sort();
        assert_eq!(values, lines, "{kind}");
    }

    // Into the existing topics: the next 50 events (1 person, 3 auctions, 46 bids).
    let more = ["gen", "nexmark", "--events", "50", "--first-event", "5000"];
    let produced = basin(
        &[&more[..], &["--topics", "--prefix", "nx_"]].concat(),
        &brokers,
    );
    assert!(produced.success, "{}", produced.stderr);
    assert!(
        !stderr(&produced).contains("created topic"),
        "{}",
        produced.stderr
    );
    assert_eq!(describe_topic("nx_person", &brokers), (3, 101));
    assert_eq!(describe_topic("nx_bid", &brokers), (3, 4_646));
}
