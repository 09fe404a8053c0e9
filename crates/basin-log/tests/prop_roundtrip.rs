//! Property test: arbitrary records (keys, values, headers, timestamps, any
//! codec) encoded with `RecordBatchEncoder`, appended to a `PartitionLog`
//! and read back decode to the same records with the offsets and leader epoch
//! the log assigned; `batch::parse_header`/`validate` agree with the fields
//! the encoder wrote.

mod common;

use basin_log::batch;
use basin_log::{PartitionLog, ReadLimit};
use bytes::Bytes;
use common::{encode, small_config, whole_batches, CODECS};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Compression, Record, RecordBatchDecoder, TimestampType};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Input {
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
    timestamp_delta: i64,
}

fn input() -> impl Strategy<Value = Input> {
    (
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..24)),
        proptest::option::weighted(0.9, proptest::collection::vec(any::<u8>(), 0..300)),
        proptest::collection::vec(
            (
                "[a-zA-Z0-9._-]{0,10}",
                proptest::option::of(proptest::collection::vec(any::<u8>(), 0..16)),
            ),
            0..4,
        ),
        -5_000i64..5_000,
    )
        .prop_map(|(key, value, headers, timestamp_delta)| Input {
            key,
            value,
            headers,
            timestamp_delta,
        })
}

#[derive(Debug, Clone)]
struct BatchInput {
    records: Vec<Input>,
    base_timestamp: i64,
    codec: Compression,
    leader_epoch: i32,
}

fn batch_input() -> impl Strategy<Value = BatchInput> {
    (
        proptest::collection::vec(input(), 1..12),
        0i64..4_000_000_000_000,
        proptest::sample::select(CODECS.to_vec()),
        0i32..5,
    )
        .prop_map(
            |(records, base_timestamp, codec, leader_epoch)| BatchInput {
                records,
                base_timestamp,
                codec,
                leader_epoch,
            },
        )
}

fn to_records(b: &BatchInput) -> Vec<Record> {
    b.records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut headers = IndexMap::new();
            for (k, v) in &r.headers {
                headers.insert(StrBytes::from_string(k.clone()), v.clone().map(Bytes::from));
            }
            Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: i as i32 - 1,
                timestamp: b.base_timestamp + r.timestamp_delta,
                key: r.key.clone().map(Bytes::from),
                value: r.value.clone().map(Bytes::from),
                headers,
            }
        })
        .collect()
}

fn check_header(bytes: &[u8], records: &[Record], codec: Compression) {
    let h = batch::parse_header(bytes, 0).expect("encoder output parses");
    let v = batch::validate(bytes, 0).expect("encoder output validates");
    assert_eq!(h, v);
    let n = records.len() as i32;
    assert_eq!(h.base_offset, 0);
    assert_eq!(h.size, bytes.len());
    assert_eq!(batch::peek_size(bytes), Some(bytes.len()));
    assert_eq!(h.magic, 2);
    assert_eq!(h.leader_epoch, -1);
    assert_eq!(h.compression(), codec as i16);
    assert_eq!(h.record_count, n);
    assert_eq!(h.last_offset_delta, n - 1);
    assert_eq!(h.last_offset(), i64::from(n - 1));
    assert_eq!(
        h.base_timestamp,
        records.iter().map(|r| r.timestamp).min().unwrap()
    );
    assert_eq!(
        h.max_timestamp,
        records.iter().map(|r| r.timestamp).max().unwrap()
    );
    assert_eq!(
        (h.producer_id, h.producer_epoch, h.base_sequence),
        (-1, -1, -1)
    );
    assert!(!h.has_producer_id());
    assert!(!h.is_transactional() && !h.is_control());
    assert_eq!(h.last_sequence(), -1);
    let mut buf = Bytes::copy_from_slice(bytes);
    let info = &RecordBatchDecoder::decode_batch_info(&mut buf).unwrap()[0];
    assert_eq!(info.record_count, h.record_count);
    assert_eq!(info.min_timestamp, h.base_timestamp);
    assert_eq!(info.partition_leader_epoch, h.leader_epoch);
    assert_eq!(batch::headers(bytes).collect::<Vec<_>>(), [(0, h)]);
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        failure_persistence: None,
        rng_algorithm: proptest::test_runner::RngAlgorithm::ChaCha,
        rng_seed: proptest::test_runner::RngSeed::Fixed(20_250_615),
        ..ProptestConfig::default()
    })]

    #[test]
    fn records_round_trip_through_the_log(
        batches in proptest::collection::vec(batch_input(), 1..5),
        segment_bytes in prop_oneof![Just(1024u64), Just(1 << 20)],
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = PartitionLog::open(dir.path(), small_config(segment_bytes)).unwrap();
        let mut expected = Vec::new();
        for b in &batches {
            let records = to_records(b);
            let bytes = encode(&records, b.codec);
            check_header(&bytes, &records, b.codec);
            let info = log.append(&bytes, b.leader_epoch).unwrap();
            prop_assert_eq!(info.last_offset - info.base_offset + 1, records.len() as i64);
            for mut r in records {
                r.offset += info.base_offset;
                r.partition_leader_epoch = b.leader_epoch;
                expected.push(r);
            }
        }
        prop_assert_eq!(log.log_end_offset(), expected.len() as i64);

        // Read everything back, batch by batch from wherever the last read ended.
        let mut got = Vec::new();
        let mut next = 0;
        while next < log.log_end_offset() {
            let res = log.read(next, 1, ReadLimit::LogEnd).unwrap();
            let headers = whole_batches(&res.records);
            prop_assert_eq!(headers.len(), 1);
            prop_assert_eq!(headers[0].base_offset, next);
            let mut buf = Bytes::from(res.records);
            let set = RecordBatchDecoder::decode(&mut buf).unwrap();
            got.extend(set.records);
            next = headers[0].next_offset();
        }
        prop_assert_eq!(&got, &expected);

        // And again after a crash and recovery.
        drop(log);
        let (log, cuts) = PartitionLog::open(dir.path(), small_config(segment_bytes)).unwrap();
        prop_assert!(cuts.is_empty());
        let res = log.read(0, 1 << 24, ReadLimit::LogEnd).unwrap();
        let mut buf = Bytes::from(res.records);
        let first: Vec<Record> = RecordBatchDecoder::decode_all(&mut buf)
            .unwrap()
            .into_iter()
            .flat_map(|s| s.records)
            .collect();
        prop_assert!(!first.is_empty());
        prop_assert_eq!(&first[..], &expected[..first.len()]);
    }
}
