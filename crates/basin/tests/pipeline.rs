//! `basin pipeline run` end to end: a windowed aggregation from a topic
//! into a lake table, killed with SIGKILL at random moments several times
//! and restarted; the table ends up holding exactly the rows an
//! uninterrupted run gives (computed here from the events), each once.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{run_basin, wait_for_exit, TestBroker};

const LIMIT: Duration = Duration::from_secs(120);

/// (auction, price, event time in ms after BASE): 50 ms apart, up to 1.5 s out of order.
fn events(n: usize) -> Vec<(i64, i64, i64)> {
    let mut state = 7u64;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        state >> 33
    };
    (0..n)
        .map(|i| {
            (
                (next() % 13) as i64,
                1 + (next() % 500) as i64,
                60_000 + i as i64 * 20 - (next() % 1500) as i64,
            )
        })
        .collect()
}

fn clock(ms: i64) -> String {
    let s = ms / 1000;
    format!(
        "2026-01-01 {:02}:{:02}:{:02}.{:03}",
        s / 3600,
        s % 3600 / 60,
        s % 60,
        ms % 1000
    )
}

fn expected(events: &[(i64, i64, i64)]) -> Vec<String> {
    let mut groups: BTreeMap<(i64, i64), (i64, i64)> = BTreeMap::new();
    for &(auction, price, t) in events {
        let g = groups.entry((auction, t - t % 5000)).or_default();
        *g = (g.0 + 1, g.1 + price);
    }
    groups
        .iter()
        .map(|((a, s), (n, total))| {
            format!("{a},{},{n},{total}", clock(*s)[..19].replace(' ', "T"))
        })
        .collect()
}

/// The windowed count, into `sink` (declared by `sink_ddl`).
fn pipeline(dir: &Path, sink_ddl: &str, sink: &str) -> std::path::PathBuf {
    let sql = format!(
        "CREATE EXTERNAL TABLE bids (auction BIGINT, price BIGINT, date_time TIMESTAMP,
           WATERMARK FOR date_time AS date_time - INTERVAL '2' SECOND)
         STORED AS TOPIC LOCATION 'bids';
         {sink_ddl};
         INSERT INTO {sink} (auction, window_start, bids, total)
         SELECT auction, window_start, count(*), sum(price)
         FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(date_time), INTERVAL '5' SECOND))
         GROUP BY auction, window_start, window_end;"
    );
    let path = dir.join("bid_counts.sql");
    std::fs::write(&path, sql).unwrap();
    path
}

/// The id of the newest completed checkpoint of the job, 0 if none.
fn newest_checkpoint(data: &Path) -> u64 {
    let job = data.join("pipelines/bid_counts/statement-2");
    let Ok(entries) = std::fs::read_dir(&job) else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("_manifest.json").exists())
        .filter_map(|e| {
            e.file_name()
                .to_string_lossy()
                .strip_prefix("chk-")?
                .parse()
                .ok()
        })
        .max()
        .unwrap_or(0)
}

fn seed() -> u64 {
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    eprintln!("kill schedule seed: {seed}");
    seed
}

const LAKE_SINK: &str = "CREATE TABLE IF NOT EXISTS lake.bid_counts (auction BIGINT, window_start TIMESTAMP, bids BIGINT, total BIGINT)";
const TOPIC_SINK: &str = "CREATE EXTERNAL TABLE bid_counts (auction BIGINT, window_start TIMESTAMP, bids BIGINT, total BIGINT) STORED AS TOPIC LOCATION 'bid_counts'";

#[test]
fn killed_and_restarted_job_writes_each_row_once_to_the_lake() {
    let query = "SELECT auction, window_start, bids, total FROM lake.bid_counts ORDER BY auction, window_start";
    killed_and_restarted(LAKE_SINK, "lake.bid_counts", &[], query);
}

/// Into a topic, read with isolation.level=read_committed (the default of
/// Basin's topic tables): every row once.
#[test]
fn killed_and_restarted_job_writes_each_row_once_to_a_topic() {
    let read = "CREATE EXTERNAL TABLE IF NOT EXISTS counts_read (auction BIGINT, window_start TIMESTAMP, bids BIGINT, total BIGINT) STORED AS TOPIC LOCATION 'bid_counts'";
    let query =
        "SELECT auction, window_start, bids, total FROM counts_read ORDER BY auction, window_start";
    killed_and_restarted(TOPIC_SINK, "bid_counts", &[read], query);
}

/// Run the job, SIGKILL it at random moments and restart it; then `query`
/// (after `setup`) must give each expected row once.
fn killed_and_restarted(sink_ddl: &str, sink: &str, setup: &[&str], query: &str) {
    let broker = TestBroker::start();
    let brokers = broker.bootstrap();
    for topic in ["bids", "bid_counts"] {
        let create = ["topic", "create", topic, "--partitions", "3"];
        assert!(run_basin(&brokers, &create, None, LIMIT).success);
    }
    let events = events(200_000);
    let lines: String = events
        .iter()
        .map(|(a, p, t)| {
            format!(
                "{{\"auction\":{a},\"price\":{p},\"date_time\":\"{}\"}}\n",
                clock(*t)
            )
        })
        .collect();
    let produced = run_basin(
        &brokers,
        &["produce", "bids", "--key-field", "auction"],
        Some(lines),
        LIMIT,
    );
    assert!(produced.success);

    let dir = tempfile::tempdir().unwrap();
    let file = pipeline(dir.path(), sink_ddl, sink);
    let data = dir.path().join("data");
    let args = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = [
            "pipeline",
            "run",
            file.to_str().unwrap(),
            "--bounded",
            "--checkpoint-interval",
            "100ms",
            "--data-dir",
            data.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let mut rng = seed();
    let mut kills = 0;
    for _ in 0..4 {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let after = Duration::from_millis((rng >> 33) % 300);
        let before = newest_checkpoint(&data);
        let mut child = Command::new(env!("CARGO_BIN_EXE_basin"))
            .args(args(&[]))
            .env("BASIN_BROKERS", &brokers)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Kill once the run has made progress: after a new checkpoint.
        while newest_checkpoint(&data) == before && child.try_wait().unwrap().is_none() {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(after);
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        wait_for_exit(&mut child, LIMIT, &["pipeline", "run"]);
    }
    assert!(
        kills >= 2,
        "fewer than two runs were still going when killed; make the input larger"
    );
    let args = args(&[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let last = run_basin(&brokers, &args, None, LIMIT);
    assert!(last.success, "{}", last.stderr);

    for ddl in setup {
        let done = run_basin(
            &brokers,
            &["sql", "--data-dir", data.to_str().unwrap(), ddl],
            None,
            LIMIT,
        );
        assert!(done.success, "{}", done.stderr);
    }
    let out = run_basin(
        &brokers,
        &[
            "sql",
            "--data-dir",
            data.to_str().unwrap(),
            "--format",
            "csv",
            query,
        ],
        None,
        LIMIT,
    );
    assert!(out.success, "{}", out.stderr);
    let got: Vec<String> = out.stdout.lines().skip(1).map(str::to_string).collect();
    let want = expected(&events);
    let diff = got.iter().zip(&want).find(|(g, w)| g != w);
    assert!(diff.is_none(), "first difference (got, want): {diff:?}");
    assert_eq!(got.len(), want.len());
}

/// A running job logs its status: rows/s, watermark and lag, the last
/// checkpoint, and per stage rows in and out and backpressure.
#[test]
fn running_job_reports_status() {
    let broker = TestBroker::start();
    let brokers = broker.bootstrap();
    for topic in ["bids", "bid_counts"] {
        let create = ["topic", "create", topic, "--partitions", "3"];
        assert!(run_basin(&brokers, &create, None, LIMIT).success);
    }
    let lines: String = events(2000)
        .iter()
        .map(|(a, p, t)| {
            format!(
                "{{\"auction\":{a},\"price\":{p},\"date_time\":\"{}\"}}\n",
                clock(*t)
            )
        })
        .collect();
    let produce = ["produce", "bids", "--key-field", "auction"];
    assert!(run_basin(&brokers, &produce, Some(lines), LIMIT).success);
    let dir = tempfile::tempdir().unwrap();
    let file = pipeline(dir.path(), LAKE_SINK, "lake.bid_counts");
    let data = dir.path().join("data");
    let mut child = Command::new(env!("CARGO_BIN_EXE_basin"))
        .args([
            "pipeline",
            "run",
            file.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ])
        .args([
            "--status-interval",
            "300ms",
            "--checkpoint-interval",
            "200ms",
        ])
        .env("BASIN_BROKERS", &brokers)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = common::drain(child.stderr.take().unwrap());
    std::thread::sleep(Duration::from_secs(4));
    child.kill().unwrap();
    wait_for_exit(&mut child, LIMIT, &["pipeline", "run"]);
    let log = stderr.join().unwrap();
    for expected in [
        "rows/s in",
        "watermark 2026-01-01",
        "s ago",
        "stage 0 source bids: 2000 rows in",
        "stage 1 aggregate",
        "blocked on downstream (backpressure)",
    ] {
        assert!(
            log.contains(expected),
            "no `{expected}` in the status log:\n{log}"
        );
    }
}
