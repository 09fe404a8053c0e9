//! Group mode end to end: two `basin pipeline run --group` processes, each
//! with its own data dir, share one windowed aggregation over a 4-partition
//! topic. The source is keyed by click id, the aggregate by user, so rows
//! cross between the processes through a repartition topic. One process is
//! killed with SIGKILL halfway through the input; the survivor takes its
//! partitions over from their last checkpoint (restored from the state
//! topic, not from the dead process's disk), and the sink topic, read
//! `read_committed`, holds every window's count exactly once.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{run_basin, TestBroker};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

const LIMIT: Duration = Duration::from_secs(120);
const PARTITIONS: i32 = 4;
const USERS: u64 = 23;
const WINDOW_MS: i64 = 5000;

/// (click id, user, amount, event time in ms): 10 ms apart, up to 1.5 s out of order.
fn clicks(n: usize) -> Vec<(usize, u64, u64, i64)> {
    let mut next = common::lcg(11);
    (0..n)
        .map(|i| {
            let t = 60_000 + i as i64 * 10 - (next() % 1500) as i64;
            (i, next() % USERS, 1 + next() % 100, t)
        })
        .collect()
}

fn lines(clicks: &[(usize, u64, u64, i64)]) -> String {
    clicks
        .iter()
        .map(|(id, user, amount, t)| {
            format!(
                "{{\"id\":\"c{id}\",\"user\":{user},\"amount\":{amount},\"ts\":\"{}\"}}\n",
                common::clock(*t)
            )
        })
        .collect()
}

/// (user, window start) → (clicks, total), as an uninterrupted run gives.
fn expected(clicks: &[(usize, u64, u64, i64)]) -> BTreeMap<(u64, String), (u64, u64)> {
    let mut out: BTreeMap<(u64, String), (u64, u64)> = BTreeMap::new();
    for &(_, user, amount, t) in clicks {
        let start = common::clock(t - t % WINDOW_MS)[..19].replace(' ', "T");
        let g = out.entry((user, start)).or_default();
        *g = (g.0 + 1, g.1 + amount);
    }
    out
}

const PIPELINE: &str = "
CREATE EXTERNAL TABLE clicks (id VARCHAR, user BIGINT, amount BIGINT, ts TIMESTAMP,
  WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
STORED AS TOPIC LOCATION 'clicks';
CREATE EXTERNAL TABLE click_counts (user BIGINT, window_start TIMESTAMP, clicks BIGINT, total BIGINT)
STORED AS TOPIC LOCATION 'click_counts';
INSERT INTO click_counts
SELECT user, window_start, count(*), sum(amount)
FROM TABLE(TUMBLE(TABLE clicks, DESCRIPTOR(ts), INTERVAL '5' SECOND))
GROUP BY user, window_start, window_end;
";

fn start(file: &Path, data: &Path, brokers: &str, log: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_basin"))
        .args(["pipeline", "run", file.to_str().unwrap(), "--group", "g1"])
        .args(["--checkpoint-interval", "300ms", "--data-dir"])
        .arg(data)
        .env("BASIN_BROKERS", brokers)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

/// Every record of `topic` (read_committed), as parsed JSON values.
fn read_all(brokers: &str, topic: &str) -> Vec<serde_json::Value> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "pipeline-group-test-reader")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        list.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&list).unwrap();
    let mut ended = 0;
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while ended < PARTITIONS && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => out.push(serde_json::from_slice(m.payload().unwrap()).unwrap()),
            Some(Err(KafkaError::PartitionEOF(_))) => ended += 1,
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None => {}
        }
    }
    assert_eq!(
        ended, PARTITIONS,
        "{topic}: not every partition reached its end"
    );
    out
}

/// The sink's rows by (user, window start); panics on a row seen twice.
fn windows(brokers: &str) -> BTreeMap<(u64, String), (u64, u64)> {
    let mut got = BTreeMap::new();
    for row in read_all(brokers, "click_counts") {
        let key = (
            row["user"].as_u64().unwrap(),
            row["window_start"].as_str().unwrap().to_string(),
        );
        let value = (
            row["clicks"].as_u64().unwrap(),
            row["total"].as_u64().unwrap(),
        );
        if let Some(before) = got.insert(key.clone(), value) {
            panic!("window {key:?} written twice: {before:?} and {value:?}");
        }
    }
    got
}

fn produce(brokers: &str, text: String) {
    let done = run_basin(
        brokers,
        &["produce", "clicks", "--key-field", "id"],
        Some(text),
        LIMIT,
    );
    assert!(done.success, "{}", done.stderr);
}

#[test]
fn two_processes_share_a_pipeline_and_the_survivor_of_a_kill_finishes_it_exactly_once() {
    let broker = TestBroker::start();
    let brokers = broker.bootstrap();
    for topic in ["clicks", "click_counts"] {
        let create = ["topic", "create", topic, "--partitions", "4"];
        assert!(run_basin(&brokers, &create, None, LIMIT).success);
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("click_counts.sql");
    std::fs::write(&file, PIPELINE).unwrap();
    let all = clicks(40_000);
    let (first, second) = all.split_at(all.len() / 2);
    produce(&brokers, lines(first));

    let log_a = dir.path().join("a.log");
    let log_b = dir.path().join("b.log");
    let mut a = start(&file, &dir.path().join("a"), &brokers, &log_a);
    let mut b = start(&file, &dir.path().join("b"), &brokers, &log_b);
    // Both hold partitions and output has been committed: then kill one.
    let deadline = Instant::now() + LIMIT;
    wait_for_windows(
        &brokers,
        10,
        deadline,
        &mut [(&mut a, &log_a), (&mut b, &log_b)],
    );
    let before_kill = windows(&brokers).len();
    a.kill().unwrap(); // SIGKILL
    a.wait().unwrap();
    let a_log = logs(&[&log_a]);
    let a_owned = owned(&last_assignment(&a_log));
    assert!(
        !a_owned.is_empty(),
        "the killed process held no partition:\n{a_log}"
    );
    let b_seen = logs(&[&log_b]).len();
    // The rest of the clicks, and late-enough ones on every partition to
    // close every window (user 999's own windows never close).
    let mut rest = lines(second);
    for i in 0..40 {
        rest.push_str(&format!(
            "{{\"id\":\"end{i}\",\"user\":999,\"amount\":0,\"ts\":\"{}\"}}\n",
            common::clock(60_000 + all.len() as i64 * 10 + 60_000)
        ));
    }
    produce(&brokers, rest);

    let want = expected(&all);
    wait_for_windows(&brokers, want.len(), deadline, &mut [(&mut b, &log_b)]);
    // Whatever the survivor still commits must not repeat a window.
    std::thread::sleep(Duration::from_secs(2));
    let got = windows(&brokers);
    b.kill().unwrap();
    b.wait().unwrap();
    let b_log = logs(&[&log_b]);
    assert!(
        last_assignment(&b_log).ends_with("partitions={0, 1, 2, 3}"),
        "the survivor did not take every partition over:\n{b_log}"
    );
    // The killed process's aggregate tasks resume in the survivor from
    // checkpoints that only the state topic holds.
    for p in a_owned {
        let line = format!("resuming from checkpoint job=click_counts-2-g1-g1-p{p} ");
        assert!(
            b_log[b_seen..].contains(&line),
            "the survivor did not resume partition {p}'s aggregate:\n{b_log}"
        );
    }
    assert!(
        before_kill < want.len(),
        "everything was done before the kill"
    );
    let diff = want.iter().find(|(k, v)| got.get(*k) != Some(*v));
    assert!(diff.is_none(), "first wrong window (want): {diff:?}");
    assert_eq!(got.len(), want.len());
}

/// Wait until the sink holds `n` windows; fail at `deadline` or when one
/// of `running` exits, with the logs.
fn wait_for_windows(
    brokers: &str,
    n: usize,
    deadline: Instant,
    running: &mut [(&mut Child, &Path)],
) {
    loop {
        let got = windows(brokers).len();
        if got >= n {
            return;
        }
        let logs = logs(&running.iter().map(|(_, log)| *log).collect::<Vec<_>>());
        assert!(
            Instant::now() < deadline,
            "{got} of {n} windows; logs:\n{logs}"
        );
        for (child, _) in running.iter_mut() {
            assert!(
                child.try_wait().unwrap().is_none(),
                "a process exited:\n{logs}"
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The partitions a process's log last says it owns.
fn last_assignment(log: &str) -> String {
    log.lines()
        .rfind(|l| l.contains("pipeline group assignment"))
        .unwrap_or_default()
        .trim_end()
        .to_string()
}

/// The partition numbers of an assignment line (`partitions={0, 1}`).
fn owned(line: &str) -> Vec<u32> {
    let set = line
        .rsplit_once('{')
        .map_or("", |(_, s)| s)
        .trim_end_matches('}');
    set.split(", ").filter_map(|p| p.parse().ok()).collect()
}

fn logs(paths: &[&Path]) -> String {
    paths
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n----\n")
}
