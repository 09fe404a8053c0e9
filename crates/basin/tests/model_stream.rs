//! `predict()` in a running stream pipeline: it scores with the production
//! version it started with, moves to a newly promoted version at the next
//! checkpoint without a restart, loses and repeats no row, and each row's
//! score equals the batch `predict()` of the version it carries, bit for
//! bit.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{clock, run_basin, wait_for_exit, TestBroker};

const LIMIT: Duration = Duration::from_secs(120);

fn sql(brokers: &str, data: &Path, statement: &str) -> String {
    let args = [
        "sql",
        statement,
        "--format",
        "csv",
        "--data-dir",
        data.to_str().unwrap(),
    ];
    let run = run_basin(brokers, &args, None, LIMIT);
    assert!(run.success, "{}", run.stderr);
    run.stdout
}

fn produce(brokers: &str, ids: std::ops::Range<i64>) {
    let lines: String = ids
        .map(|i| {
            let x = (i % 97) as f64 / 7.0;
            format!("{{\"id\":{i},\"x\":{x},\"ts\":\"{}\"}}\n", clock(i * 10))
        })
        .collect();
    assert!(run_basin(brokers, &["produce", "feats"], Some(lines), LIMIT).success);
}

const READ: &str =
    "CREATE EXTERNAL TABLE IF NOT EXISTS scored_read (id BIGINT, x DOUBLE, p DOUBLE, v BIGINT) \
                    STORED AS TOPIC LOCATION 'scored'";

/// id → (x, score, version) of the committed output rows, failing on a repeat.
fn scored(brokers: &str, data: &Path) -> BTreeMap<i64, (String, String, String)> {
    let out = sql(
        brokers,
        data,
        &format!("{READ}; SELECT id, x, p, v FROM scored_read"),
    );
    let mut rows = BTreeMap::new();
    for line in out.lines().skip(1) {
        let cells: Vec<&str> = line.split(',').collect();
        let id: i64 = cells[0].parse().unwrap();
        let row = (
            cells[1].to_string(),
            cells[2].to_string(),
            cells[3].to_string(),
        );
        assert!(rows.insert(id, row).is_none(), "id {id} written twice");
    }
    rows
}

fn wait_for_rows(brokers: &str, data: &Path, n: usize) -> BTreeMap<i64, (String, String, String)> {
    let deadline = Instant::now() + LIMIT;
    loop {
        let rows = scored(brokers, data);
        if rows.len() >= n {
            return rows;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {n} rows scored",
            rows.len()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn a_promoted_version_is_picked_up_at_a_checkpoint_without_losing_or_repeating_rows() {
    let broker = TestBroker::start();
    let brokers = broker.bootstrap();
    for topic in ["feats", "scored"] {
        let create = ["topic", "create", topic, "--partitions", "1"];
        assert!(run_basin(&brokers, &create, None, LIMIT).success);
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    sql(
        &brokers,
        &data,
        "CREATE TABLE lake.train AS SELECT CAST(value AS DOUBLE) / 10 AS x, \
            CAST(value AS DOUBLE) / 10 * 3 + 1 AS y FROM range(0, 200);
         CREATE MODEL m OPTIONS (label = 'y', algorithm = 'linear', validation = 'none', stage = 'production')
            AS SELECT x, y FROM lake.train;
         CREATE MODEL m OPTIONS (label = 'y', iterations = 10, validation = 'none')
            AS SELECT x, y * 2 AS y FROM lake.train",
    );
    let file = dir.path().join("score.sql");
    std::fs::write(
        &file,
        "CREATE EXTERNAL TABLE feats (id BIGINT, x DOUBLE, ts TIMESTAMP,
           WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) STORED AS TOPIC LOCATION 'feats';
         CREATE EXTERNAL TABLE scored (id BIGINT, x DOUBLE, p DOUBLE, v BIGINT) STORED AS TOPIC LOCATION 'scored';
         INSERT INTO scored SELECT id, x, predict('m', x), predict_version('m') FROM feats;",
    )
    .unwrap();
    let mut job = Command::new(env!("CARGO_BIN_EXE_basin"))
        .args([
            "pipeline",
            "run",
            file.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ])
        .args(["--checkpoint-interval", "200ms"])
        .env("BASIN_BROKERS", &brokers)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = common::drain(job.stderr.take().unwrap());
    produce(&brokers, 0..500);
    wait_for_rows(&brokers, &data, 500);
    let promote = [
        "model",
        "promote",
        "m",
        "2",
        "--data-dir",
        data.to_str().unwrap(),
    ];
    assert!(run_basin(&brokers, &promote, None, LIMIT).success);
    // Several checkpoints pass before the next rows arrive.
    std::thread::sleep(Duration::from_secs(2));
    produce(&brokers, 500..1000);
    let rows = wait_for_rows(&brokers, &data, 1000);
    job.kill().unwrap();
    wait_for_exit(&mut job, LIMIT, &["pipeline", "run"]);
    let log = log.join().unwrap();
    assert_eq!(rows.len(), 1000, "{log}");
    assert_eq!(
        rows.keys().copied().collect::<Vec<_>>(),
        (0..1000).collect::<Vec<_>>()
    );
    for (id, (_, _, v)) in &rows {
        let want = if *id < 500 { "1" } else { "2" };
        assert_eq!(v, want, "row {id}\n{log}");
    }
    // Each score is the batch predict() of its version, bit for bit.
    let batch = sql(
        &brokers,
        &data,
        &format!(
            "{READ}; SELECT id, p = CASE WHEN v = 1 THEN predict('m@1', x) ELSE predict('m@2', x) END AS same \
             FROM scored_read ORDER BY id"
        ),
    );
    let differ: Vec<&str> = batch
        .lines()
        .skip(1)
        .filter(|l| !l.ends_with(",true"))
        .collect();
    assert!(
        differ.is_empty(),
        "stream and batch scores differ: {differ:?}"
    );
}
