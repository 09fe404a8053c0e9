//! End-to-end check of the broker against a real Kafka client (rdkafka /
//! librdkafka): CreateTopics, idempotent acks=all produce, group consume with
//! commits, watermarks, and a second group member that finds nothing new.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use basin::partitioner::hash_partition;
use common::TestBroker;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::Offset;

const TOPIC: &str = "orders";
const PARTITIONS: i32 = 3;
const RECORDS: usize = 1000;
const KEYS: usize = 37;
const GROUP: &str = "orders-readers";
const WAIT: Duration = Duration::from_secs(30);

/// Where a produced record was acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Placement {
    partition: i32,
    offset: i64,
}

/// One record as a consumer saw it.
#[derive(Debug, Clone)]
struct Seen {
    key: String,
    value: String,
    at: Placement,
}

fn key_of(i: usize) -> String {
    format!("customer-{}", i % KEYS)
}

fn value_of(i: usize) -> String {
    format!("order-{i:04}")
}

fn client_config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("socket.timeout.ms", "20000");
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rdkafka_round_trip_with_groups_and_idempotence() {
    let broker = TestBroker::start();
    let bootstrap = broker.bootstrap();

    create_topic(&bootstrap).await;
    let delivered = produce_all(&bootstrap).await;
    check_delivery_partitions(&delivered);

    let seen = consume_all(&bootstrap).await;
    check_records(&delivered, &seen);
    check_watermarks(&bootstrap, &seen);
    check_second_member_sees_nothing(&bootstrap).await;
}

async fn create_topic(bootstrap: &str) {
    let admin: AdminClient<DefaultClientContext> =
        client_config(bootstrap).create().expect("admin client");
    let topic = NewTopic::new(TOPIC, PARTITIONS, TopicReplication::Fixed(1));
    let options = AdminOptions::new().request_timeout(Some(WAIT));
    let results = admin
        .create_topics([&topic], &options)
        .await
        .expect("CreateTopics request");
    assert_eq!(results.len(), 1);
    assert_eq!(results[0], Ok(TOPIC.to_string()), "CreateTopics result");

    let again = admin
        .create_topics([&topic], &options)
        .await
        .expect("request");
    assert!(
        matches!(
            &again[0],
            Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists))
        ),
        "second CreateTopics must say TopicAlreadyExists: {again:?}"
    );
}

/// Produce keyed records with acks=all and idempotence; librdkafka chooses
/// partitions with its Java-compatible `murmur2_random` partitioner.
async fn produce_all(bootstrap: &str) -> HashMap<String, Placement> {
    let producer: FutureProducer = client_config(bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000")
        .create()
        .expect("producer");
    let mut pending = Vec::with_capacity(RECORDS);
    for i in 0..RECORDS {
        let (key, value) = (key_of(i), value_of(i));
        let record = FutureRecord::to(TOPIC).key(&key).payload(&value);
        let future = producer
            .send_result(record)
            .unwrap_or_else(|(e, _)| panic!("enqueue record {i}: {e}"));
        pending.push((value, future));
    }
    let mut delivered = HashMap::with_capacity(RECORDS);
    for (value, future) in pending {
        let result = tokio::time::timeout(Duration::from_secs(60), future)
            .await
            .unwrap_or_else(|_| panic!("no delivery report for {value} within 60 s"))
            .expect("producer dropped");
        let delivery = result.unwrap_or_else(|(e, _)| panic!("delivery of {value} failed: {e}"));
        let at = Placement {
            partition: delivery.partition,
            offset: delivery.offset,
        };
        assert!(delivered.insert(value, at).is_none());
    }
    producer.flush(WAIT).expect("flush");
    delivered
}

/// librdkafka's murmur2 choice agrees with Basin's partitioner.
fn check_delivery_partitions(delivered: &HashMap<String, Placement>) {
    for i in 0..RECORDS {
        let at = delivered[&value_of(i)];
        let expected = hash_partition(key_of(i).as_bytes(), PARTITIONS);
        assert_eq!(
            at.partition,
            expected,
            "record {i} (key {}) went to partition {} but Basin's murmur2 says {expected}",
            key_of(i),
            at.partition
        );
    }
}

fn group_consumer(bootstrap: &str) -> StreamConsumer {
    client_config(bootstrap)
        .set("group.id", GROUP)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "10000")
        .create()
        .expect("consumer")
}

/// Read until every record arrived (or time runs out), then commit.
async fn consume_all(bootstrap: &str) -> Vec<Seen> {
    let consumer = group_consumer(bootstrap);
    consumer.subscribe(&[TOPIC]).expect("subscribe");
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut seen = Vec::with_capacity(RECORDS);
    while seen.len() < RECORDS {
        let left = deadline.saturating_duration_since(Instant::now());
        let message = tokio::time::timeout(left, consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("only {} of {RECORDS} records consumed", seen.len()))
            .expect("consumer error");
        seen.push(Seen {
            key: String::from_utf8(message.key().expect("key").to_vec()).expect("utf-8 key"),
            value: String::from_utf8(message.payload().expect("value").to_vec()).expect("utf-8"),
            at: Placement {
                partition: message.partition(),
                offset: message.offset(),
            },
        });
    }
    consumer
        .commit_consumer_state(CommitMode::Sync)
        .expect("commit");
    check_committed(&consumer, &seen);
    seen
}

/// The committed position of each partition is one past its last record.
fn check_committed(consumer: &StreamConsumer, seen: &[Seen]) {
    let committed = consumer.committed(WAIT).expect("committed offsets");
    let ends = partition_ends(seen);
    for elem in committed.elements_for_topic(TOPIC) {
        let expected = ends.get(&elem.partition()).copied().unwrap_or(0);
        assert_eq!(
            elem.offset(),
            Offset::Offset(expected),
            "committed offset of partition {}",
            elem.partition()
        );
    }
}

/// Per partition: one past the highest offset seen.
fn partition_ends(seen: &[Seen]) -> BTreeMap<i32, i64> {
    let mut ends = BTreeMap::new();
    for s in seen {
        let end = ends.entry(s.at.partition).or_insert(0);
        *end = (*end).max(s.at.offset + 1);
    }
    ends
}

/// Every record exactly once, with its key, where the producer was told.
fn check_records(delivered: &HashMap<String, Placement>, seen: &[Seen]) {
    assert_eq!(seen.len(), RECORDS);
    let mut values = HashSet::new();
    let mut key_partition: HashMap<&str, i32> = HashMap::new();
    for s in seen {
        assert!(values.insert(s.value.as_str()), "{} seen twice", s.value);
        let i: usize = s.value["order-".len()..].parse().expect("value index");
        assert_eq!(s.key, key_of(i), "key of {}", s.value);
        assert_eq!(delivered[&s.value], s.at, "placement of {}", s.value);
        let first = *key_partition.entry(&s.key).or_insert(s.at.partition);
        assert_eq!(first, s.at.partition, "key {} in two partitions", s.key);
        assert_eq!(s.at.partition, hash_partition(s.key.as_bytes(), PARTITIONS));
    }
    check_offsets_are_dense(seen);
}

/// Idempotent produce: each partition holds offsets 0..n with no gaps.
fn check_offsets_are_dense(seen: &[Seen]) {
    let mut by_partition: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for s in seen {
        by_partition
            .entry(s.at.partition)
            .or_default()
            .push(s.at.offset);
    }
    for (partition, mut offsets) in by_partition {
        offsets.sort_unstable();
        let expected: Vec<i64> = (0..offsets.len() as i64).collect();
        assert_eq!(offsets, expected, "offsets of partition {partition}");
    }
}

fn check_watermarks(bootstrap: &str, seen: &[Seen]) {
    let consumer: StreamConsumer = client_config(bootstrap).create().expect("consumer");
    let ends = partition_ends(seen);
    let mut total = 0;
    for partition in 0..PARTITIONS {
        let (low, high) = consumer
            .fetch_watermarks(TOPIC, partition, WAIT)
            .expect("watermarks");
        assert_eq!(low, 0, "low watermark of partition {partition}");
        let expected = ends.get(&partition).copied().unwrap_or(0);
        assert_eq!(high, expected, "high watermark of partition {partition}");
        total += high;
    }
    assert_eq!(total, RECORDS as i64);
}

/// A new member of the same group, after the commit, reads nothing.
async fn check_second_member_sees_nothing(bootstrap: &str) {
    let consumer = group_consumer(bootstrap);
    consumer.subscribe(&[TOPIC]).expect("subscribe");
    let assigned_by = Instant::now() + Duration::from_secs(60);
    let mut quiet_until = None;
    loop {
        match tokio::time::timeout(Duration::from_millis(250), consumer.recv()).await {
            Ok(Ok(m)) => panic!(
                "second member got partition {} offset {} after commit",
                m.partition(),
                m.offset()
            ),
            Ok(Err(e)) => panic!("second member error: {e}"),
            Err(_) => {}
        }
        let assigned = consumer.assignment().map(|a| a.count()).unwrap_or(0);
        if assigned > 0 && quiet_until.is_none() {
            quiet_until = Some(Instant::now() + Duration::from_secs(3));
        }
        match quiet_until {
            Some(t) if Instant::now() >= t => break,
            None if Instant::now() >= assigned_by => panic!("second member was never assigned"),
            _ => {}
        }
    }
}
