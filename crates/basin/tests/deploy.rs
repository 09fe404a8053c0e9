//! Deployed pipelines: `basin pipeline deploy` hands a pipeline to a
//! running `basin up` node, which runs it; `list` and `status` show it
//! working; `stop` and `restart` do what they say.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::run_basin;

const LIMIT: Duration = Duration::from_secs(120);

/// `basin up` on a free port; its address.
fn start_node(data: &std::path::Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_basin"))
        .args([
            "up",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("basin broker listening on ") {
                let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_string());
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the node starts");
    (child, addr)
}

fn basin(brokers: &str, args: &[&str]) -> common::Run {
    run_basin(brokers, args, None, LIMIT)
}

#[test]
fn deploy_list_status_stop_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut node, brokers) = start_node(&data);
    let d = data.to_str().unwrap();
    assert!(basin(&brokers, &["topic", "create", "bids", "--partitions", "3"]).success);
    let lines: String = (0..3000)
        .map(|i| {
            let t = 60_000 + i * 100;
            let (s, ms) = (t / 1000, t % 1000);
            format!(
                "{{\"auction\":{},\"price\":{},\"date_time\":\"2026-01-01 00:{:02}:{:02}.{ms:03}\"}}\n",
                i % 7,
                i % 100,
                s / 60,
                s % 60
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
    let file = dir.path().join("bid_counts.sql");
    std::fs::write(
        &file,
        "CREATE EXTERNAL TABLE bids (auction BIGINT, price BIGINT, date_time TIMESTAMP,
           WATERMARK FOR date_time AS date_time - INTERVAL '1' SECOND)
         STORED AS TOPIC LOCATION 'bids';
         CREATE TABLE IF NOT EXISTS lake.bid_counts (auction BIGINT, window_start TIMESTAMP, bids BIGINT);
         INSERT INTO lake.bid_counts
         SELECT auction, window_start, count(*)
         FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
         GROUP BY auction, window_start, window_end;",
    )
    .unwrap();

    let deployed = basin(
        &brokers,
        &[
            "pipeline",
            "deploy",
            file.to_str().unwrap(),
            "--checkpoint-interval",
            "200ms",
            "--data-dir",
            d,
        ],
    );
    assert!(deployed.success, "{}", deployed.stderr);
    assert!(
        deployed.stderr.contains("bid_counts is running"),
        "{}",
        deployed.stderr
    );

    // The node reads every record; the status says so.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = basin(
            &brokers,
            &["pipeline", "status", "bid_counts", "--data-dir", d],
        );
        assert!(status.success, "{}", status.stderr);
        if status.stdout.contains("3000 rows in") {
            assert!(
                status.stdout.contains("bid_counts: running"),
                "{}",
                status.stdout
            );
            assert!(
                status.stdout.contains("stage 1 aggregate"),
                "{}",
                status.stdout
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the deployed job never read the topic:\n{}",
            status.stdout
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let listed = basin(&brokers, &["pipeline", "list", "--data-dir", d]);
    assert!(
        listed
            .stdout
            .lines()
            .any(|l| l.starts_with("bid_counts") && l.contains("running")),
        "{}",
        listed.stdout
    );

    let stopped = basin(
        &brokers,
        &["pipeline", "stop", "bid_counts", "--data-dir", d],
    );
    assert!(
        stopped.success && stopped.stderr.contains("bid_counts is stopped"),
        "{}",
        stopped.stderr
    );
    let status = basin(
        &brokers,
        &["pipeline", "status", "bid_counts", "--data-dir", d],
    );
    assert!(
        status.stdout.contains("bid_counts: stopped"),
        "{}",
        status.stdout
    );

    let restarted = basin(
        &brokers,
        &["pipeline", "restart", "bid_counts", "--data-dir", d],
    );
    assert!(
        restarted.success && restarted.stderr.contains("bid_counts is running"),
        "{}",
        restarted.stderr
    );

    let missing = basin(&brokers, &["pipeline", "stop", "nope", "--data-dir", d]);
    assert!(
        !missing.success && missing.stderr.contains("no pipeline named nope"),
        "{}",
        missing.stderr
    );
    let bad = dir.path().join("bad.sql");
    std::fs::write(
        &bad,
        "SELECT * FROM TABLE(TUMBLE(TABLE bids, date_time, INTERVAL '1' SECOND))",
    )
    .unwrap();
    let refused = basin(
        &brokers,
        &["pipeline", "deploy", bad.to_str().unwrap(), "--data-dir", d],
    );
    assert!(
        !refused.success && refused.stderr.contains("DESCRIPTOR"),
        "{}",
        refused.stderr
    );
    let _ = node.kill();
    let _ = node.wait();
}
