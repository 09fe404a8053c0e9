//! The transaction APIs at the protocol level, where a client library would
//! hide the details: error codes per API version (PRODUCER_FENCED versus
//! INVALID_PRODUCER_EPOCH), KIP-360 epoch checks in InitProducerId, the
//! checks on transactional produce, EndTxn retries, OffsetFetch's
//! `require_stable`, and `read_committed` Fetch answers (last stable offset,
//! aborted transactions).

mod common;

use std::net::TcpStream;

use bytes::{Bytes, BytesMut};
use common::{roundtrip, topic, txn_id, TestBroker};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

const INVALID_PRODUCER_EPOCH: i16 = 47;
const INVALID_TXN_STATE: i16 = 48;
const INVALID_TRANSACTION_TIMEOUT: i16 = 50;
const OPERATION_NOT_ATTEMPTED: i16 = 55;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const UNSTABLE_OFFSET_COMMIT: i16 = 88;
const PRODUCER_FENCED: i16 = 90;

fn init(conn: &mut TcpStream, id: &str, v: i16, current: (i64, i16)) -> InitProducerIdResponse {
    let req = InitProducerIdRequest::default()
        .with_transactional_id(Some(txn_id(id)))
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(current.0))
        .with_producer_epoch(current.1);
    roundtrip(conn, ApiKey::InitProducerId, v, &req)
}

fn add_partitions(
    conn: &mut TcpStream,
    v: i16,
    id: &str,
    pid: i64,
    epoch: i16,
    parts: &[(&str, i32)],
) -> Vec<i16> {
    let topics = parts
        .iter()
        .map(|(t, p)| {
            add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                .with_name(topic(t))
                .with_partitions(vec![*p])
        })
        .collect();
    let req = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(txn_id(id))
        .with_v3_and_below_producer_id(ProducerId(pid))
        .with_v3_and_below_producer_epoch(epoch)
        .with_v3_and_below_topics(topics);
    let r: AddPartitionsToTxnResponse = roundtrip(conn, ApiKey::AddPartitionsToTxn, v, &req);
    r.results_by_topic_v3_and_below
        .iter()
        .flat_map(|t| {
            t.results_by_partition
                .iter()
                .map(|p| p.partition_error_code)
        })
        .collect()
}

fn end_txn(conn: &mut TcpStream, v: i16, id: &str, pid: i64, epoch: i16, commit: bool) -> i16 {
    let req = EndTxnRequest::default()
        .with_transactional_id(txn_id(id))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
        .with_committed(commit);
    let r: EndTxnResponse = roundtrip(conn, ApiKey::EndTxn, v, &req);
    r.error_code
}

/// One transactional batch of `n` records.
fn txn_batch(pid: i64, epoch: i16, seq: i32, n: usize) -> Bytes {
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional: true,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: pid,
            producer_epoch: epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: seq + i as i32,
            timestamp: 1_000,
            key: None,
            value: Some(Bytes::from(format!("v{i}"))),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options).unwrap();
    buf.freeze()
}

fn produce(conn: &mut TcpStream, id: Option<&str>, t: &str, records: Bytes) -> (i16, i64) {
    let req = ProduceRequest::default()
        .with_transactional_id(id.map(txn_id))
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![produce_request::TopicProduceData::default()
            .with_name(topic(t))
            .with_partition_data(vec![
                produce_request::PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(records)),
            ])]);
    let r: ProduceResponse = roundtrip(conn, ApiKey::Produce, 9, &req);
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

fn create(conn: &mut TcpStream, name: &str) {
    let req = CreateTopicsRequest::default().with_topics(vec![
        create_topics_request::CreatableTopic::default()
            .with_name(topic(name))
            .with_num_partitions(1)
            .with_replication_factor(1),
    ]);
    let r: CreateTopicsResponse = roundtrip(conn, ApiKey::CreateTopics, 5, &req);
    assert_eq!(r.topics[0].error_code, 0);
}

fn connect() -> (TestBroker, TcpStream, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path(), 1);
    let conn = TcpStream::connect(broker.addr).unwrap();
    (broker, conn, dir)
}

#[test]
fn fencing_codes_follow_the_request_version() {
    let (_broker, mut conn, _dir) = connect();
    create(&mut conn, "t");
    let first = init(&mut conn, "f", 4, (-1, -1));
    assert_eq!((first.error_code, first.producer_epoch), (0, 0));
    let pid = first.producer_id.0;
    let second = init(&mut conn, "f", 4, (-1, -1));
    assert_eq!((second.producer_id.0, second.producer_epoch), (pid, 1));
    for (v, code) in [
        (0, INVALID_PRODUCER_EPOCH),
        (1, INVALID_PRODUCER_EPOCH),
        (2, PRODUCER_FENCED),
        (3, PRODUCER_FENCED),
    ] {
        assert_eq!(
            add_partitions(&mut conn, v, "f", pid, 0, &[("t", 0)]),
            [code],
            "v{v}"
        );
        assert_eq!(end_txn(&mut conn, v, "f", pid, 0, true), code, "v{v}");
    }
    // KIP-360: a caller naming an epoch that is neither current nor the
    // one before is fenced; naming the one before is a retry of a bump.
    assert_eq!(
        init(&mut conn, "f", 4, (pid, 7)).error_code,
        PRODUCER_FENCED
    );
    assert_eq!(
        init(&mut conn, "f", 3, (pid, 7)).error_code,
        INVALID_PRODUCER_EPOCH
    );
    let retry = init(&mut conn, "f", 4, (pid, 0));
    assert_eq!((retry.error_code, retry.producer_epoch), (0, 1));
    let bump = init(&mut conn, "f", 4, (pid, 1));
    assert_eq!((bump.error_code, bump.producer_epoch), (0, 2));
    // Timeouts are validated.
    let bad = InitProducerIdRequest::default()
        .with_transactional_id(Some(txn_id("f")))
        .with_transaction_timeout_ms(0);
    let r: InitProducerIdResponse = roundtrip(&mut conn, ApiKey::InitProducerId, 2, &bad);
    assert_eq!(r.error_code, INVALID_TRANSACTION_TIMEOUT);
}

#[test]
fn produce_needs_the_partition_in_the_ongoing_transaction() {
    let (_broker, mut conn, _dir) = connect();
    create(&mut conn, "t");
    create(&mut conn, "u");
    let r = init(&mut conn, "p", 4, (-1, -1));
    let pid = r.producer_id.0;
    // Not added yet.
    let (code, _) = produce(&mut conn, Some("p"), "t", txn_batch(pid, 0, 0, 2));
    assert_eq!(code, INVALID_TXN_STATE);
    // A missing partition: nothing is added.
    assert_eq!(
        add_partitions(&mut conn, 3, "p", pid, 0, &[("t", 0), ("nope", 0)]),
        [OPERATION_NOT_ATTEMPTED, UNKNOWN_TOPIC_OR_PARTITION]
    );
    assert_eq!(add_partitions(&mut conn, 3, "p", pid, 0, &[("t", 0)]), [0]);
    let (code, base) = produce(&mut conn, Some("p"), "t", txn_batch(pid, 0, 0, 2));
    assert_eq!((code, base), (0, 0));
    // Another partition of the same producer, not added.
    let (code, _) = produce(&mut conn, Some("p"), "u", txn_batch(pid, 0, 0, 1));
    assert_eq!(code, INVALID_TXN_STATE);
    // Without the transactional id.
    let (code, _) = produce(&mut conn, None, "t", txn_batch(pid, 0, 2, 1));
    assert_ne!(code, 0);
    // A newer producer fences this one: its batches are refused.
    // Its open transaction is aborted at epoch 1, the new one gets 2.
    let newer = init(&mut conn, "p", 4, (-1, -1));
    assert_eq!(newer.producer_epoch, 2);
    let (code, _) = produce(&mut conn, Some("p"), "t", txn_batch(pid, 0, 2, 1));
    assert_eq!(code, INVALID_PRODUCER_EPOCH);
    // Nor can the zombie pass for a retry of a bump.
    assert_eq!(
        init(&mut conn, "p", 4, (pid, 0)).error_code,
        PRODUCER_FENCED
    );
    // EndTxn with no transaction, and retries of a completed one.
    assert_eq!(end_txn(&mut conn, 3, "p", pid, 2, true), INVALID_TXN_STATE);
    assert_eq!(add_partitions(&mut conn, 3, "p", pid, 2, &[("t", 0)]), [0]);
    assert_eq!(end_txn(&mut conn, 3, "p", pid, 2, true), 0);
    assert_eq!(end_txn(&mut conn, 3, "p", pid, 2, true), 0, "a retry");
    assert_eq!(end_txn(&mut conn, 3, "p", pid, 2, false), INVALID_TXN_STATE);
}

fn fetch_committed(conn: &mut TcpStream, t: &str) -> fetch_response::PartitionData {
    let req = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_isolation_level(1)
        .with_topics(vec![fetch_request::FetchTopic::default()
            .with_topic(topic(t))
            .with_partitions(vec![
                fetch_request::FetchPartition::default().with_partition_max_bytes(1 << 20)
            ])]);
    let r: FetchResponse = roundtrip(conn, ApiKey::Fetch, 11, &req);
    r.responses[0].partitions[0].clone()
}

#[test]
fn read_committed_fetch_stops_at_the_lso_and_names_aborted_transactions() {
    let (_broker, mut conn, _dir) = connect();
    create(&mut conn, "t");
    let a = init(&mut conn, "a", 4, (-1, -1)).producer_id.0;
    let c = init(&mut conn, "c", 4, (-1, -1)).producer_id.0;
    assert_eq!(add_partitions(&mut conn, 3, "a", a, 0, &[("t", 0)]), [0]);
    assert_eq!(add_partitions(&mut conn, 3, "c", c, 0, &[("t", 0)]), [0]);
    assert_eq!(
        produce(&mut conn, Some("a"), "t", txn_batch(a, 0, 0, 2)),
        (0, 0)
    );
    assert_eq!(
        produce(&mut conn, Some("c"), "t", txn_batch(c, 0, 0, 2)),
        (0, 2)
    );
    let open = fetch_committed(&mut conn, "t");
    assert_eq!((open.high_watermark, open.last_stable_offset), (4, 0));
    assert!(open.records.unwrap().is_empty());
    assert_eq!(end_txn(&mut conn, 3, "a", a, 0, false), 0); // ABORT at 4
    let half = fetch_committed(&mut conn, "t");
    assert_eq!((half.high_watermark, half.last_stable_offset), (5, 2));
    let aborted = half.aborted_transactions.unwrap();
    assert_eq!(aborted.len(), 1);
    assert_eq!((aborted[0].producer_id.0, aborted[0].first_offset), (a, 0));
    assert_eq!(end_txn(&mut conn, 3, "c", c, 0, true), 0); // COMMIT at 5
    let done = fetch_committed(&mut conn, "t");
    assert_eq!(done.last_stable_offset, 6);
    let all = basin_log::batch::headers(done.records.as_ref().unwrap())
        .map(|(_, h)| (h.base_offset, h.is_control()))
        .collect::<Vec<_>>();
    assert_eq!(all, [(0, false), (2, false), (4, true), (5, true)]);
    // ListOffsets latest: the LSO for read_committed.
    let req = ListOffsetsRequest::default()
        .with_isolation_level(1)
        .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
            .with_name(topic("t"))
            .with_partitions(vec![
                list_offsets_request::ListOffsetsPartition::default().with_timestamp(-1),
            ])]);
    let r: ListOffsetsResponse = roundtrip(&mut conn, ApiKey::ListOffsets, 5, &req);
    assert_eq!(r.topics[0].partitions[0].offset, 6);
}

fn offset_fetch(conn: &mut TcpStream, group: &str) -> (i16, i64) {
    let req = OffsetFetchRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.into())))
        .with_require_stable(true)
        .with_topics(Some(vec![
            offset_fetch_request::OffsetFetchRequestTopic::default()
                .with_name(topic("in"))
                .with_partition_indexes(vec![0]),
        ]));
    let r: OffsetFetchResponse = roundtrip(conn, ApiKey::OffsetFetch, 7, &req);
    let p = &r.topics[0].partitions[0];
    (p.error_code, p.committed_offset)
}

#[test]
fn transactional_offsets_are_unstable_until_the_commit() {
    let (_broker, mut conn, _dir) = connect();
    let pid = init(&mut conn, "o", 4, (-1, -1)).producer_id.0;
    let group = GroupId(StrBytes::from_static_str("g"));
    let add = AddOffsetsToTxnRequest::default()
        .with_transactional_id(txn_id("o"))
        .with_producer_id(ProducerId(pid))
        .with_group_id(group.clone());
    let r: AddOffsetsToTxnResponse = roundtrip(&mut conn, ApiKey::AddOffsetsToTxn, 3, &add);
    assert_eq!(r.error_code, 0);
    let commit = TxnOffsetCommitRequest::default()
        .with_transactional_id(txn_id("o"))
        .with_group_id(group)
        .with_producer_id(ProducerId(pid))
        .with_topics(vec![
            txn_offset_commit_request::TxnOffsetCommitRequestTopic::default()
                .with_name(topic("in"))
                .with_partitions(vec![
                    txn_offset_commit_request::TxnOffsetCommitRequestPartition::default()
                        .with_committed_offset(17),
                ]),
        ]);
    let r: TxnOffsetCommitResponse = roundtrip(&mut conn, ApiKey::TxnOffsetCommit, 3, &commit);
    assert_eq!(r.topics[0].partitions[0].error_code, 0);
    assert_eq!(offset_fetch(&mut conn, "g"), (UNSTABLE_OFFSET_COMMIT, -1));
    assert_eq!(end_txn(&mut conn, 3, "o", pid, 0, true), 0);
    assert_eq!(offset_fetch(&mut conn, "g"), (0, 17));
}
