//! Runs the built `basin` binary end to end against an in-process broker:
//! `topic create`, `produce --key-field`, `consume --max`, `topic describe`
//! and `topic list`, plus the clear errors for bad input and an
//! unreachable broker; and `basin up` itself, from start to SIGTERM.

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use basin::partitioner::hash_partition;
use common::{run_basin, wait_for_exit, Run, TestBroker};

/// Run `basin ARGS` against `brokers`, feeding `stdin`; killed after 90 s.
fn basin(brokers: &str, args: &[&str], stdin: Option<String>) -> Run {
    run_basin(brokers, args, stdin, Duration::from_secs(90))
}

fn user_lines(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!(r#"{{"id":"user-{}","seq":{i}}}"#, i % 11))
        .collect()
}

#[test]
fn cli_creates_produces_and_consumes() {
    let broker = TestBroker::start();
    let brokers = broker.bootstrap();
    let create = [
        "topic",
        "create",
        "users",
        "--partitions",
        "4",
        "--retention-ms",
        "3600000",
        "--flush",
        "every-batch",
    ];
    let created = basin(&brokers, &create, None);
    assert!(created.success, "topic create failed: {}", created.stderr);
    let again = basin(&brokers, &create, None);
    assert!(
        !again.success && again.stderr.contains("already exists"),
        "{}",
        again.stderr
    );

    let lines = user_lines(200);
    let produced = basin(
        &brokers,
        &["produce", "users", "--key-field", "id"],
        Some(lines.join("\n") + "\n"),
    );
    assert!(produced.success, "produce failed: {}", produced.stderr);
    assert!(
        produced.stderr.contains("produced 200 records"),
        "{}",
        produced.stderr
    );

    let consumed = basin(
        &brokers,
        &[
            "consume",
            "users",
            "--from-beginning",
            "--max",
            "200",
            "--format",
            "json",
            "--timeout-ms",
            "30000",
        ],
        None,
    );
    assert!(consumed.success, "consume failed: {}", consumed.stderr);
    check_consumed_json(&consumed.stdout, &lines);
    check_describe_and_list(&brokers);
}

/// 200 JSON lines: every input line once, keyed by its id, murmur2-placed.
fn check_consumed_json(stdout: &str, lines: &[String]) {
    let records: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("consume --format json line"))
        .collect();
    assert_eq!(records.len(), lines.len(), "records consumed");
    let mut values = HashSet::new();
    for record in &records {
        let value = record["value"].as_str().expect("value");
        let doc: serde_json::Value = serde_json::from_str(value).expect("value is the JSON line");
        let id = doc["id"].as_str().expect("id");
        assert_eq!(record["key"].as_str(), Some(id), "key of {value}");
        let partition = record["partition"].as_i64().expect("partition") as i32;
        assert_eq!(
            partition,
            hash_partition(id.as_bytes(), 4),
            "partition of {id}"
        );
        assert!(record["offset"].as_i64().is_some() && record["timestamp"].is_i64());
        assert!(values.insert(value.to_string()), "{value} twice");
    }
    let expected: HashSet<String> = lines.iter().cloned().collect();
    assert_eq!(values, expected);
}

fn check_describe_and_list(brokers: &str) {
    let described = basin(brokers, &["topic", "describe", "users"], None);
    assert!(described.success, "describe failed: {}", described.stderr);
    assert!(
        described.stdout.contains("Partitions: 4"),
        "{}",
        described.stdout
    );
    assert!(
        described.stdout.contains("retention.ms = 3600000"),
        "{}",
        described.stdout
    );
    let listed = basin(brokers, &["topic", "list"], None);
    assert!(listed.success, "list failed: {}", listed.stderr);
    assert!(
        listed.stdout.lines().any(|l| l == "users"),
        "{}",
        listed.stdout
    );
    let missing = basin(brokers, &["topic", "describe", "nope"], None);
    assert!(
        !missing.success && missing.stderr.contains("unknown topic"),
        "{}",
        missing.stderr
    );
}

#[test]
fn cli_produce_names_the_bad_line() {
    let broker = TestBroker::start();
    let brokers = broker.bootstrap();
    let created = basin(
        &brokers,
        &["topic", "create", "events", "--partitions", "2"],
        None,
    );
    assert!(created.success, "topic create failed: {}", created.stderr);
    let input = "{\"id\":\"a\"}\nnot json\n".to_string();
    let produced = basin(
        &brokers,
        &["produce", "events", "--key-field", "id"],
        Some(input),
    );
    assert!(!produced.success);
    assert!(produced.stderr.contains("line 2"), "{}", produced.stderr);
    let range = basin(
        &brokers,
        &[
            "produce",
            "events",
            "--partitioner",
            "range",
            "--splits",
            "a,m,t",
        ],
        Some(String::new()),
    );
    assert!(
        !range.success && range.stderr.contains("has 2 partitions"),
        "{}",
        range.stderr
    );
}

#[test]
fn cli_names_an_unreachable_broker() {
    let run = basin(
        "127.0.0.1:1",
        &["--connect-timeout-ms", "1500", "topic", "list"],
        None,
    );
    assert!(!run.success);
    assert!(run.stderr.contains("127.0.0.1:1"), "{}", run.stderr);
}

#[test]
fn up_announces_its_address_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let args = [
        "up",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data.to_str().expect("utf-8"),
    ];
    let mut child = Command::new(env!("CARGO_BIN_EXE_basin"))
        .args(args)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn basin up");
    let lines = stderr_lines(&mut child);
    let addr = wait_for_listening(&lines, &mut child);
    let listed = basin(&addr, &["topic", "list"], None);
    assert!(
        listed.success,
        "topic list against basin up: {}",
        listed.stderr
    );
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(killed.success());
    let status = wait_for_exit(&mut child, Duration::from_secs(30), &args);
    assert!(
        status.success(),
        "basin up exited with {status} after SIGTERM"
    );
}

/// Forward the child's stderr lines through a channel.
fn stderr_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The address from `basin broker listening on ADDR (data in DIR)`.
fn wait_for_listening(lines: &mpsc::Receiver<String>, child: &mut Child) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let Ok(line) = lines.recv_timeout(left) else {
            break;
        };
        if let Some(rest) = line.strip_prefix("basin broker listening on ") {
            assert!(rest.contains("(data in "), "{line}");
            return rest.split_whitespace().next().expect("address").to_string();
        }
    }
    let _ = child.kill();
    panic!("basin up never printed its listening line");
}
