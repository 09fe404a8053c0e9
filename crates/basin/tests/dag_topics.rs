//! The orchestrator and topics, against a real broker: a `topic` sensor
//! waits until every partition holds a record at or after the end of the
//! run's data interval, and a DAG with `on_update = ["topic.NAME"]` runs
//! when new records are written to that topic.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{run_basin, TestBroker};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;

const LIMIT: Duration = Duration::from_secs(120);

fn producer(broker: &TestBroker) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .create()
        .expect("producer")
}

/// One record into `partition`, stamped `at` (RFC 3339).
fn send(p: &BaseProducer, partition: i32, at: &str) {
    let ms = chrono::DateTime::parse_from_rfc3339(at)
        .unwrap()
        .timestamp_millis();
    p.send(
        BaseRecord::<(), str>::to("events")
            .payload("{}")
            .partition(partition)
            .timestamp(ms),
    )
    .expect("queued");
    p.flush(Duration::from_secs(30)).expect("acknowledged");
}

fn create_topic(broker: &TestBroker) {
    let args = ["topic", "create", "events", "--partitions", "2"];
    let out = run_basin(&broker.bootstrap(), &args, None, LIMIT);
    assert!(out.success, "{}", out.stderr);
}

#[test]
fn a_topic_sensor_waits_for_every_partition_to_pass_the_interval_end() {
    let broker = TestBroker::start();
    create_topic(&broker);
    let p = producer(&broker);
    send(&p, 0, "2026-01-01T12:00:00Z");
    send(&p, 1, "2026-01-01T13:00:00Z");
    let dir = tempfile::tempdir().unwrap();
    let dags = dir.path().join("dags");
    std::fs::create_dir_all(&dags).unwrap();
    std::fs::write(
        dags.join("waits.toml"),
        "schedule = \"0 0 * * *\"\ntimezone = \"UTC\"\n\
         [tasks.events_in]\nkind = \"sensor\"\ntopic = \"events\"\npoke_interval = \"100ms\"\ntimeout = \"100s\"\n\
         [tasks.after]\nkind = \"shell\"\ndepends_on = [\"events_in\"]\ncommand = \"echo '{{ outputs.events_in }}'\"\n",
    )
    .unwrap();
    let mut test = Command::new(env!("CARGO_BIN_EXE_basin"))
        .args([
            "dag",
            "test",
            "waits",
            "--date",
            "2026-01-02T00:00:00Z",
            "--dags",
        ])
        .arg(&dags)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--brokers", &broker.bootstrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        test.try_wait().unwrap().is_none(),
        "done before any record passed the end"
    );
    // One partition past the end is not enough.
    send(&p, 0, "2026-01-02T00:00:00Z");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        test.try_wait().unwrap().is_none(),
        "done with partition 1 behind"
    );
    send(&p, 1, "2026-01-02T00:00:05Z");
    let deadline = Instant::now() + LIMIT;
    while test.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "the sensor never saw the records"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = test.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find(|l| l.starts_with("events_in "))
        .unwrap();
    assert!(line.contains(" success "), "{stdout}");
    assert!(
        line.contains("events: all 2 partition(s) have records at or after 2026-01-02T00:00:00Z"),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("after ") && l.contains(" success ")),
        "{stdout}"
    );
}

#[test]
fn records_written_to_a_topic_trigger_its_dag() {
    let broker = TestBroker::start();
    create_topic(&broker);
    let p = producer(&broker);
    send(&p, 0, "2026-01-01T12:00:00Z");
    let dir = tempfile::tempdir().unwrap();
    let dags = dir.path().join("dags");
    std::fs::create_dir_all(&dags).unwrap();
    let data = dir.path().join("data");
    std::fs::write(
        dags.join("on_events.toml"),
        "on_update = [\"topic.events\"]\n[tasks.note]\nkind = \"shell\"\ncommand = \"true\"\n",
    )
    .unwrap();
    let mut scheduler = Command::new(env!("CARGO_BIN_EXE_basin"))
        .args(["dag", "scheduler", "--tick", "100ms", "--dags"])
        .arg(&dags)
        .arg("--data-dir")
        .arg(&data)
        .args(["--brokers", &broker.bootstrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let runs = || {
        let args = ["dag", "runs", "on_events", "--dags", dags.to_str().unwrap()];
        let mut args: Vec<&str> = args.to_vec();
        args.extend(["--data-dir", data.to_str().unwrap()]);
        run_basin("", &args, None, LIMIT).stdout
    };
    let deadline = Instant::now() + LIMIT;
    // The scheduler notes the version it first sees (one record), then
    // reacts to writes after it.
    while !runs().contains("on_update topic.events: version 1 seen") {
        assert!(Instant::now() < deadline, "the scheduler never looked");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!runs().contains("dataset__"), "ran before any new record");
    send(&p, 1, "2026-01-01T12:00:01Z");
    let out = loop {
        let out = runs();
        let done = |l: &&str| l.contains("dataset__topic.events@2") && l.contains(" success ");
        if out.lines().any(|l| done(&l)) {
            break out;
        }
        assert!(Instant::now() < deadline, "{out}");
        std::thread::sleep(Duration::from_millis(100));
    };
    scheduler.kill().unwrap();
    scheduler.wait().unwrap();
    let dataset_runs = out.lines().filter(|l| l.contains("dataset__")).count();
    assert_eq!(dataset_runs, 1, "{out}");
}
