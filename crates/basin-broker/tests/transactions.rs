//! Kafka transactions with a real client: librdkafka (through `rdkafka`)
//! as transactional producer and as `read_committed` / `read_uncommitted`
//! consumer, against an in-process broker. Commit, abort, two transactions
//! interleaved on one partition, offsets sent to a transaction, a zombie
//! producer fenced by a newer one, and a transaction aborted by its timeout.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::TestBroker;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Message, Offset, TopicPartitionList};

const T: Duration = Duration::from_secs(30);
const PARTITIONS: i32 = 3;

type TxnProducer = ThreadedProducer<DefaultProducerContext>;

fn producer(bootstrap: &str, txn_id: &str, extra: &[(&str, &str)]) -> TxnProducer {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("transactional.id", txn_id)
        .set("linger.ms", "5");
    for (k, v) in extra {
        config.set(*k, *v);
    }
    let p: TxnProducer = config.create().expect("producer");
    p.init_transactions(T).expect("init_transactions");
    p
}

fn send(p: &TxnProducer, topic: &str, partition: i32, value: &str) {
    p.send(
        BaseRecord::to(topic)
            .partition(partition)
            .key(value)
            .payload(value),
    )
    .map_err(|(e, _)| e)
    .expect("send");
}

/// Send `values` round-robin over the partitions and wait for delivery.
fn send_all(p: &TxnProducer, topic: &str, values: &[String]) {
    for (i, v) in values.iter().enumerate() {
        send(p, topic, i as i32 % PARTITIONS, v);
    }
    p.flush(T).expect("flush");
}

fn values(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

fn consumer(bootstrap: &str, group: &str, isolation: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("isolation.level", isolation)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer")
}

/// Every record of `topic` from the beginning to the end of each partition
/// (the last stable offset for `read_committed`): `(partition, offset, value)`.
fn read_all(bootstrap: &str, topic: &str, isolation: &str) -> Vec<(i32, i64, String)> {
    let c = consumer(bootstrap, "reader", isolation);
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let mut at_end = BTreeSet::new();
    let deadline = Instant::now() + T;
    while at_end.len() < PARTITIONS as usize {
        assert!(
            Instant::now() < deadline,
            "{topic}: no end of partitions: {at_end:?}"
        );
        match c.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(e)) => panic!("consumer error: {e}"),
            Some(Ok(m)) => {
                at_end.remove(&m.partition());
                let value = String::from_utf8(m.payload().unwrap_or_default().to_vec()).unwrap();
                out.push((m.partition(), m.offset(), value));
            }
        }
    }
    out
}

fn sorted_values(records: &[(i32, i64, String)]) -> Vec<String> {
    let mut v: Vec<String> = records.iter().map(|r| r.2.clone()).collect();
    v.sort();
    v
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// The end offset of partition 0 as a reader of `isolation` sees it.
fn end_offset(bootstrap: &str, topic: &str, isolation: &str) -> i64 {
    let c = consumer(bootstrap, "watermarks", isolation);
    c.fetch_watermarks(topic, 0, T).expect("watermarks").1
}

#[test]
fn committed_records_are_read_once_and_only_after_the_commit() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path(), PARTITIONS);
    let b = broker.bootstrap();
    let p = producer(&b, "commit", &[]);
    p.begin_transaction().unwrap();
    let sent = values("c", 30);
    send_all(&p, "t-commit", &sent);
    // Open: the last stable offset holds read_committed readers back.
    assert_eq!(end_offset(&b, "t-commit", "read_uncommitted"), 10);
    assert_eq!(end_offset(&b, "t-commit", "read_committed"), 0);
    assert!(read_all(&b, "t-commit", "read_committed").is_empty());
    p.commit_transaction(T).unwrap();

    let committed = read_all(&b, "t-commit", "read_committed");
    assert_eq!(sorted_values(&committed), sorted(sent.clone()));
    // The marker takes an offset after the ten records of partition 0.
    assert_eq!(end_offset(&b, "t-commit", "read_committed"), 11);
    assert_eq!(
        sorted_values(&read_all(&b, "t-commit", "read_uncommitted")),
        sorted(sent)
    );
}

#[test]
fn aborted_records_are_only_seen_by_read_uncommitted() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path(), PARTITIONS);
    let b = broker.bootstrap();
    let p = producer(&b, "abort", &[]);
    p.begin_transaction().unwrap();
    let aborted = values("a", 12);
    send_all(&p, "t-abort", &aborted);
    p.abort_transaction(T).unwrap();
    p.begin_transaction().unwrap();
    let kept = values("k", 6);
    send_all(&p, "t-abort", &kept);
    p.commit_transaction(T).unwrap();

    let committed = read_all(&b, "t-abort", "read_committed");
    assert_eq!(sorted_values(&committed), sorted(kept.clone()));
    let all = read_all(&b, "t-abort", "read_uncommitted");
    assert_eq!(sorted_values(&all), sorted([aborted, kept].concat()));
}

#[test]
fn interleaved_transactions_on_one_partition_end_independently() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path(), PARTITIONS);
    let b = broker.bootstrap();
    let (a, c) = (producer(&b, "inter-a", &[]), producer(&b, "inter-c", &[]));
    a.begin_transaction().unwrap();
    c.begin_transaction().unwrap();
    for i in 0..4 {
        send(&a, "t-inter", 0, &format!("a-{i}"));
        a.flush(T).unwrap();
        send(&c, "t-inter", 0, &format!("c-{i}"));
        c.flush(T).unwrap();
    }
    a.abort_transaction(T).unwrap();
    // c is still open from offset 1: nothing is stable yet.
    assert_eq!(end_offset(&b, "t-inter", "read_committed"), 1);
    assert!(read_all(&b, "t-inter", "read_committed").is_empty());
    c.commit_transaction(T).unwrap();

    let committed: Vec<String> = read_all(&b, "t-inter", "read_committed")
        .into_iter()
        .map(|r| r.2)
        .collect();
    assert_eq!(committed, values("c", 4), "in order, without a's records");
    assert_eq!(read_all(&b, "t-inter", "read_uncommitted").len(), 8);
}

fn committed_offset(b: &str, group: &str, topic: &str) -> Option<i64> {
    let c = consumer(b, group, "read_committed");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, 0);
    let got = c.committed_offsets(tpl, T).expect("OffsetFetch");
    match got.find_partition(topic, 0).unwrap().offset() {
        Offset::Offset(o) => Some(o),
        _ => None,
    }
}

fn send_offset(p: &TxnProducer, group_consumer: &BaseConsumer, topic: &str, offset: i64) {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(offset))
        .unwrap();
    let metadata = group_consumer.group_metadata().expect("group metadata");
    p.send_offsets_to_transaction(&tpl, &metadata, T)
        .expect("send_offsets_to_transaction");
}

#[test]
fn offsets_sent_to_a_transaction_count_only_when_it_commits() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path(), PARTITIONS);
    let b = broker.bootstrap();
    let group = consumer(&b, "sink-group", "read_committed");
    let p = producer(&b, "offsets", &[]);

    p.begin_transaction().unwrap();
    send_all(&p, "t-out", &values("o", 3));
    send_offset(&p, &group, "t-in", 42);
    p.commit_transaction(T).unwrap();
    assert_eq!(committed_offset(&b, "sink-group", "t-in"), Some(42));

    p.begin_transaction().unwrap();
    send_all(&p, "t-out", &values("x", 3));
    send_offset(&p, &group, "t-in", 99);
    p.abort_transaction(T).unwrap();
    assert_eq!(committed_offset(&b, "sink-group", "t-in"), Some(42));

    p.begin_transaction().unwrap();
    send_offset(&p, &group, "t-in", 50);
    p.commit_transaction(T).unwrap();
    assert_eq!(committed_offset(&b, "sink-group", "t-in"), Some(50));
    assert_eq!(
        sorted_values(&read_all(&b, "t-out", "read_committed")),
        sorted(values("o", 3))
    );
}

fn assert_fenced(result: Result<(), KafkaError>, what: &str) {
    let err = result.expect_err(what);
    let fatal = err.rdkafka_error_code().is_some_and(|c| {
        matches!(
            c,
            rdkafka::types::RDKafkaErrorCode::Fenced
                | rdkafka::types::RDKafkaErrorCode::ProducerFenced
                | rdkafka::types::RDKafkaErrorCode::InvalidProducerEpoch
        )
    }) || matches!(&err, KafkaError::Transaction(e) if e.is_fatal());
    assert!(fatal, "{what}: expected fencing, got {err:?}");
}

#[test]
fn a_zombie_producer_is_fenced_by_a_newer_one() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path(), PARTITIONS);
    let b = broker.bootstrap();
    let zombie = producer(&b, "zombie", &[]);
    zombie.begin_transaction().unwrap();
    send_all(&zombie, "t-zombie", &values("z", 3));

    // The new instance's init aborts the zombie's open transaction.
    let fresh = producer(&b, "zombie", &[]);
    send(&zombie, "t-zombie", 0, "z-late");
    let _ = zombie.flush(Duration::from_secs(5));
    assert_fenced(zombie.commit_transaction(T), "the zombie's commit");

    fresh.begin_transaction().unwrap();
    send_all(&fresh, "t-zombie", &values("f", 3));
    fresh.commit_transaction(T).unwrap();
    let committed = read_all(&b, "t-zombie", "read_committed");
    assert_eq!(sorted_values(&committed), sorted(values("f", 3)));
}

#[test]
fn a_transaction_past_its_timeout_is_aborted_by_the_broker() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path(), PARTITIONS);
    let b = broker.bootstrap();
    let p = producer(&b, "slow", &[("transaction.timeout.ms", "2000")]);
    p.begin_transaction().unwrap();
    send_all(&p, "t-slow", &values("s", 3));
    assert_eq!(end_offset(&b, "t-slow", "read_committed"), 0);
    // The broker aborts it (marker at offset 1 of partition 0) and fences
    // the producer.
    let deadline = Instant::now() + T;
    while end_offset(&b, "t-slow", "read_committed") != 2 {
        assert!(Instant::now() < deadline, "the transaction was not aborted");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(read_all(&b, "t-slow", "read_committed").is_empty());
    assert_eq!(read_all(&b, "t-slow", "read_uncommitted").len(), 3);
    assert_fenced(p.commit_transaction(T), "commit after the timeout");
}

#[test]
fn transactions_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path(), PARTITIONS);
    let b = broker.bootstrap();
    let p = producer(&b, "restart", &[]);
    p.begin_transaction().unwrap();
    send_all(&p, "t-restart", &values("r", 6));
    p.commit_transaction(T).unwrap();
    p.begin_transaction().unwrap();
    send_all(&p, "t-restart", &values("open", 3));
    drop(p);
    broker.stop();

    // The open transaction stays open across the restart (its producer may
    // come back) until its producer re-inits.
    let broker = TestBroker::start(dir.path(), PARTITIONS);
    let b = broker.bootstrap();
    assert_eq!(end_offset(&b, "t-restart", "read_committed"), 3);
    let p = producer(&b, "restart", &[]);
    assert_eq!(end_offset(&b, "t-restart", "read_committed"), 5);
    let committed = read_all(&b, "t-restart", "read_committed");
    assert_eq!(sorted_values(&committed), sorted(values("r", 6)));
    p.begin_transaction().unwrap();
    send_all(&p, "t-restart", &values("again", 3));
    p.commit_transaction(T).unwrap();
    let committed = read_all(&b, "t-restart", "read_committed");
    assert_eq!(
        sorted_values(&committed),
        sorted([values("r", 6), values("again", 3)].concat())
    );
}
