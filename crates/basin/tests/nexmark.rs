//! Nexmark: every query in benchmarks/nexmark/queries gives the same rows
//! in stream mode (bounded, two parallel subtasks) as in batch mode over
//! the same events, and the same as DuckDB on those events where DuckDB
//! can express the query. Updating queries (upserts) are compared by their
//! latest row per key.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{run_basin, TestBroker};
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(300);
const EVENTS: &str = "20000";

/// How a query's output is compared.
struct Check {
    query: &'static str,
    /// Upsert key of an updating query (compare the latest row per key).
    key: &'static [&'static str],
    /// Columns compared (all when empty): leaves out tie-broken ones.
    columns: &'static [&'static str],
    duckdb: bool,
}

const CHECKS: &[Check] = &[
    Check {
        query: "q0",
        key: &[],
        columns: &[],
        duckdb: true,
    },
    Check {
        query: "q1",
        key: &[],
        columns: &[],
        duckdb: true,
    },
    Check {
        query: "q2",
        key: &[],
        columns: &[],
        duckdb: true,
    },
    Check {
        query: "q3",
        key: &[],
        columns: &[],
        duckdb: true,
    },
    Check {
        query: "q4",
        key: &["category"],
        columns: &[],
        duckdb: true,
    },
    Check {
        query: "q5",
        key: &[],
        columns: &[],
        duckdb: false,
    },
    Check {
        query: "q7",
        key: &[],
        columns: &[],
        duckdb: false,
    },
    Check {
        query: "q8",
        key: &[],
        columns: &[],
        duckdb: false,
    },
    Check {
        query: "q11",
        key: &[],
        columns: &[],
        duckdb: false,
    },
    Check {
        query: "q14",
        key: &[],
        columns: &[],
        duckdb: true,
    },
    Check {
        query: "q17",
        key: &["auction", "day"],
        columns: &[],
        duckdb: true,
    },
    Check {
        query: "q18",
        key: &["bidder", "auction"],
        columns: &["bidder", "auction", "date_time"],
        duckdb: true,
    },
    Check {
        query: "q19",
        key: &["auction", "rank_number"],
        columns: &["auction", "rank_number", "price"],
        duckdb: true,
    },
];

fn queries() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../benchmarks/nexmark/queries")
}

/// A value as text both engines agree on: timestamps with a space and no
/// trailing zeros, numbers to 9 significant digits.
fn normalize(v: &Value) -> String {
    match v {
        Value::Number(n) => format!("{:.9e}", n.as_f64().unwrap()),
        Value::String(s)
            if s.len() >= 19 && s.as_bytes()[10] == b'T' || s.as_bytes().get(10) == Some(&b' ') =>
        {
            let s = s.replacen('T', " ", 1);
            match s.split_once('.') {
                Some((whole, frac)) => {
                    let frac = frac.trim_end_matches('0');
                    if frac.is_empty() {
                        whole.to_string()
                    } else {
                        format!("{whole}.{frac}")
                    }
                }
                None => s,
            }
        }
        other => other.to_string(),
    }
}

fn parse(lines: &str, check: &Check) -> Vec<String> {
    let mut latest: BTreeMap<String, String> = BTreeMap::new();
    let mut rows = Vec::new();
    for line in lines.lines().filter(|l| !l.trim().is_empty()) {
        let object: BTreeMap<String, Value> = serde_json::from_str(line).expect("a JSON row");
        let pick = |names: &[&str]| -> String {
            let mut parts = Vec::new();
            for (name, v) in &object {
                if names.is_empty() || names.contains(&name.as_str()) {
                    parts.push(format!("{name}={}", normalize(v)));
                }
            }
            parts.join(",")
        };
        let row = pick(check.columns);
        if check.key.is_empty() {
            rows.push(row);
        } else {
            latest.insert(pick(check.key), row);
        }
    }
    rows.extend(latest.into_values());
    rows.sort();
    rows
}

fn assert_same(what: &str, got: &[String], want: &[String]) {
    let diff = got.iter().zip(want).find(|(g, w)| g != w);
    assert!(
        diff.is_none(),
        "{what}: first difference (got, want): {diff:?}"
    );
    assert_eq!(got.len(), want.len(), "{what}: row counts differ");
}

/// q12 windows processing time: its rows depend on when bids are read,
/// but in both modes every bid lands in one 10 s window.
fn check_q12(brokers: &str, dir: &Path, bids: usize) {
    let sources = queries().join("_sources.sql");
    let file = queries().join("q12.sql");
    for extra in [
        &["--bounded", "--parallelism", "2"][..],
        &["--mode", "batch"],
    ] {
        let data = dir.join(format!("q12-{}", extra[1]));
        let mut args = vec![
            "pipeline",
            "run",
            sources.to_str().unwrap(),
            file.to_str().unwrap(),
        ];
        args.extend_from_slice(&["--data-dir", data.to_str().unwrap()]);
        args.extend_from_slice(extra);
        let out = run_basin(brokers, &args, None, LIMIT);
        assert!(out.success, "q12 {extra:?}: {}", out.stderr);
        let mut counted = 0;
        for line in out.stdout.lines().filter(|l| !l.trim().is_empty()) {
            let row: BTreeMap<String, Value> = serde_json::from_str(line).expect("a JSON row");
            counted += row["bid_count"].as_u64().unwrap() as usize;
            let start = row["window_start"].as_str().unwrap();
            assert!(start.starts_with("20") && start.ends_with("0"), "{line}");
        }
        assert_eq!(counted, bids, "q12 {extra:?}: every bid counted once");
    }
}

#[test]
fn nexmark_stream_equals_batch_equals_duckdb() {
    let broker = TestBroker::start();
    let brokers = broker.bootstrap();
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events");
    let gen = [
        "gen",
        "nexmark",
        "--events",
        EVENTS,
        "--topics",
        "--partitions",
        "3",
    ];
    assert!(run_basin(&brokers, &gen, None, LIMIT).success);
    let files = [
        "gen",
        "nexmark",
        "--events",
        EVENTS,
        "--out",
        events.to_str().unwrap(),
    ];
    assert!(run_basin(&brokers, &files, None, LIMIT).success);
    let bids = std::fs::read_to_string(events.join("bid.jsonl"))
        .unwrap()
        .lines()
        .count();
    check_q12(&brokers, dir.path(), bids);
    let sources = queries().join("_sources.sql");
    for check in CHECKS {
        let file = queries().join(format!("{}.sql", check.query));
        let data = dir.path().join(check.query);
        let run = |extra: &[&str]| {
            let mut args = vec![
                "pipeline",
                "run",
                sources.to_str().unwrap(),
                file.to_str().unwrap(),
            ];
            args.extend_from_slice(&["--data-dir", data.to_str().unwrap()]);
            args.extend_from_slice(extra);
            let out = run_basin(&brokers, &args, None, LIMIT);
            assert!(out.success, "{} {extra:?}: {}", check.query, out.stderr);
            parse(&out.stdout, check)
        };
        let streamed = run(&[
            "--bounded",
            "--parallelism",
            "2",
            "--checkpoint-interval",
            "500ms",
        ]);
        let batch = run(&["--mode", "batch"]);
        assert!(!batch.is_empty(), "{}: the events give rows", check.query);
        assert_same(
            &format!("{} stream vs batch", check.query),
            &streamed,
            &batch,
        );
        if check.duckdb {
            let out = Command::new("python3")
                .arg(queries().join("../duckdb_answer.py"))
                .arg(&file)
                .arg(&events)
                .output()
                .expect("python3 runs");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "duckdb on {}: {stderr}", check.query);
            let duck = parse(&String::from_utf8_lossy(&out.stdout), check);
            assert_same(&format!("{} batch vs duckdb", check.query), &batch, &duck);
        }
    }
}
