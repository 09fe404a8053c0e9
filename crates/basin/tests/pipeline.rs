//! `basin pipeline run` end to end: a windowed aggregation from a topic
//! into a lake table, killed with SIGKILL at random moments several times
//! and restarted; the table ends up holding exactly the rows an
//! uninterrupted run gives (computed here from the events), each once.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{clock, run_basin, wait_for_exit, TestBroker};

const LIMIT: Duration = Duration::from_secs(120);

/// (auction, price, event time in ms after BASE): 50 ms apart, up to 1.5 s out of order.
fn events(n: usize) -> Vec<(i64, i64, i64)> {
    let mut next = common::lcg(7);
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

/// Bids and totals per auction: one row per auction, updated as bids come.
fn expected_totals(events: &[(i64, i64, i64)]) -> Vec<String> {
    let mut groups: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    for &(auction, price, _) in events {
        let g = groups.entry(auction).or_default();
        *g = (g.0 + 1, g.1 + price);
    }
    groups
        .iter()
        .map(|(a, (n, total))| format!("{a},{n},{total}"))
        .collect()
}

/// Bids and totals per auction and 5 s window, every 2 s (HOP).
fn expected_hop(events: &[(i64, i64, i64)]) -> Vec<String> {
    let mut groups: BTreeMap<(i64, i64), (i64, i64)> = BTreeMap::new();
    for &(auction, price, t) in events {
        // Windows start at multiples of the slide.
        let last = t - t % 2000;
        let mut start = last;
        while start - 2000 > t - 5000 {
            start -= 2000;
        }
        while start <= last {
            let g = groups.entry((auction, start)).or_default();
            *g = (g.0 + 1, g.1 + price);
            start += 2000;
        }
    }
    groups
        .iter()
        .map(|((a, s), (n, total))| {
            format!("{a},{},{n},{total}", clock(*s)[..19].replace(' ', "T"))
        })
        .collect()
}

/// The windowed count, into `sink` (declared by `sink_ddl`).
fn windowed_insert(sink: &str) -> String {
    format!(
        "INSERT INTO {sink} (auction, window_start, bids, total)
         SELECT auction, window_start, count(*), sum(price)
         FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(date_time), INTERVAL '5' SECOND))
         GROUP BY auction, window_start, window_end"
    )
}

/// The pipeline file: the bids topic, `sink_ddl`, then `insert`.
fn pipeline(dir: &Path, sink_ddl: &str, insert: &str) -> std::path::PathBuf {
    let sql = format!(
        "CREATE EXTERNAL TABLE bids (auction BIGINT, price BIGINT, date_time TIMESTAMP,
           WATERMARK FOR date_time AS date_time - INTERVAL '2' SECOND)
         STORED AS TOPIC LOCATION 'bids';
         {sink_ddl};
         {insert};"
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
    killed_and_restarted(&Job {
        sink_ddl: LAKE_SINK.into(),
        insert: windowed_insert("lake.bid_counts"),
        setup: vec![],
        query: query.into(),
        expected,
    });
}

/// HOP windows are aggregated per 1 s slice (the gcd of 2 s and 5 s) and
/// merged as windows close; slices in checkpoints survive kills.
#[test]
fn killed_and_restarted_hop_job_writes_each_window_once() {
    let query = "SELECT auction, window_start, bids, total FROM lake.bid_counts ORDER BY auction, window_start";
    killed_and_restarted(&Job {
        sink_ddl: LAKE_SINK.into(),
        insert: "INSERT INTO lake.bid_counts (auction, window_start, bids, total)
         SELECT auction, window_start, count(*), sum(price)
         FROM TABLE(HOP(TABLE bids, DESCRIPTOR(date_time), INTERVAL '2' SECOND, INTERVAL '5' SECOND))
         GROUP BY auction, window_start, window_end"
            .into(),
        setup: vec![],
        query: query.into(),
        expected: expected_hop,
    });
}

/// The DDL of a Basin table over `schema.bid_counts` in PostgreSQL.
fn pg_table(name: &str, url: &str, schema: &str, columns: &str) -> String {
    format!(
        "CREATE EXTERNAL TABLE {name} ({columns}) STORED AS POSTGRES LOCATION '{url}' \
         OPTIONS ('table' '{schema}.bid_counts')"
    )
}

/// Into a PostgreSQL table without a primary key (plain inserts, so a row
/// written twice would show): the checkpoint id commits with the rows.
#[test]
fn killed_and_restarted_job_writes_each_row_once_to_postgres() {
    let url = common::pg_url();
    let schema = common::pg_schema(&url);
    common::psql(
        &url,
        &format!("CREATE TABLE {schema}.bid_counts (auction bigint, window_start timestamp, bids bigint, total bigint)"),
    );
    let columns = "auction BIGINT, window_start TIMESTAMP, bids BIGINT, total BIGINT";
    killed_and_restarted(&Job {
        sink_ddl: pg_table("bid_counts", &url, &schema, columns),
        insert: windowed_insert("bid_counts"),
        setup: vec![pg_table("counts_read", &url, &schema, columns)],
        query: "SELECT auction, window_start, bids, total FROM counts_read ORDER BY auction, window_start".into(),
        expected,
    });
    let job = common::psql(
        &url,
        &format!("SELECT checkpoint FROM basin_pipeline_checkpoints WHERE job = 'bid_counts-2' AND target = '\"{schema}\".\"bid_counts\"'"),
    );
    assert!(job.trim().parse::<u64>().unwrap() > 0, "{job}");
}

/// A GROUP BY without a window keeps updating its rows: upserts on the
/// table's primary key, across kills and restarts.
#[test]
fn killed_and_restarted_job_upserts_into_postgres() {
    let url = common::pg_url();
    let schema = common::pg_schema(&url);
    common::psql(
        &url,
        &format!("CREATE TABLE {schema}.bid_counts (auction bigint PRIMARY KEY, bids bigint, total bigint)"),
    );
    let columns = "auction BIGINT, bids BIGINT, total BIGINT";
    killed_and_restarted(&Job {
        sink_ddl: pg_table("totals", &url, &schema, columns),
        insert:
            "INSERT INTO totals SELECT auction, count(*), sum(price) FROM bids GROUP BY auction"
                .into(),
        setup: vec![pg_table("totals_read", &url, &schema, columns)],
        query: "SELECT auction, bids, total FROM totals_read ORDER BY auction".into(),
        expected: expected_totals,
    });
}

/// Updates into a table without a primary key are refused, naming the table.
#[test]
fn updating_result_needs_a_primary_key_in_postgres() {
    let url = common::pg_url();
    let schema = common::pg_schema(&url);
    common::psql(
        &url,
        &format!("CREATE TABLE {schema}.bid_counts (auction bigint, bids bigint, total bigint)"),
    );
    let broker = TestBroker::start();
    let brokers = broker.bootstrap();
    assert!(run_basin(&brokers, &["topic", "create", "bids"], None, LIMIT).success);
    let dir = tempfile::tempdir().unwrap();
    let ddl = pg_table(
        "totals",
        &url,
        &schema,
        "auction BIGINT, bids BIGINT, total BIGINT",
    );
    let insert =
        "INSERT INTO totals SELECT auction, count(*), sum(price) FROM bids GROUP BY auction";
    let file = pipeline(dir.path(), &ddl, insert);
    let data = dir.path().join("data");
    let run = [
        "pipeline",
        "run",
        file.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ];
    let out = run_basin(&brokers, &run, None, LIMIT);
    assert!(!out.success);
    assert!(
        out.stderr.contains("no primary key") && out.stderr.contains("bid_counts"),
        "{}",
        out.stderr
    );
}

/// Into a topic, read with isolation.level=read_committed (the default of
/// Basin's topic tables): every row once.
#[test]
fn killed_and_restarted_job_writes_each_row_once_to_a_topic() {
    let read = "CREATE EXTERNAL TABLE IF NOT EXISTS counts_read (auction BIGINT, window_start TIMESTAMP, bids BIGINT, total BIGINT) STORED AS TOPIC LOCATION 'bid_counts'";
    let query =
        "SELECT auction, window_start, bids, total FROM counts_read ORDER BY auction, window_start";
    killed_and_restarted(&Job {
        sink_ddl: TOPIC_SINK.into(),
        insert: windowed_insert("bid_counts"),
        setup: vec![read.into()],
        query: query.into(),
        expected,
    });
}

/// (auction, price, event time in ms).
type Event = (i64, i64, i64);

/// A job for [`killed_and_restarted`].
struct Job {
    sink_ddl: String,
    insert: String,
    /// Statements run before `query`, to read the sink.
    setup: Vec<String>,
    query: String,
    /// The rows `query` must give (as CSV lines), from the events.
    expected: fn(&[Event]) -> Vec<String>,
}

/// Run the job, SIGKILL it at random moments and restart it; then `query`
/// (after `setup`) must give each expected row once.
fn killed_and_restarted(job: &Job) {
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
    let file = pipeline(dir.path(), &job.sink_ddl, &job.insert);
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

    for ddl in &job.setup {
        let done = run_basin(
            &brokers,
            &["sql", "--data-dir", data.to_str().unwrap(), ddl.as_str()],
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
            &job.query,
        ],
        None,
        LIMIT,
    );
    assert!(out.success, "{}", out.stderr);
    let got: Vec<String> = out.stdout.lines().skip(1).map(str::to_string).collect();
    let want = (job.expected)(&events);
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
    let file = pipeline(dir.path(), LAKE_SINK, &windowed_insert("lake.bid_counts"));
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
