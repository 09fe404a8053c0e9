//! Log compaction: closed segments keep only the latest record per key, with
//! offsets unchanged, and the compacted log reopens and reads correctly.

use std::collections::HashMap;

use basin_log::{LogConfig, PartitionLog, ReadLimit};
use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

fn batch(key: &str, value: Option<&str>, compression: Compression) -> Vec<u8> {
    let record = Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: 0,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: 1_700_000_000_000,
        key: Some(Bytes::from(key.to_string())),
        value: value.map(|v| Bytes::from(v.to_string())),
        headers: Default::default(),
    };
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        [&record],
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .unwrap();
    buf.to_vec()
}

fn all_records(log: &PartitionLog) -> Vec<(i64, String, Option<String>)> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let read = log.read(offset, 1 << 20, ReadLimit::LogEnd).unwrap();
        let mut bytes = Bytes::from(read.records);
        assert!(!bytes.is_empty(), "no data at {offset}");
        while !bytes.is_empty() {
            for r in RecordBatchDecoder::decode(&mut bytes).unwrap().records {
                let text = |b: Option<Bytes>| b.map(|b| String::from_utf8(b.to_vec()).unwrap());
                offset = r.offset + 1;
                out.push((r.offset, text(r.key).unwrap(), text(r.value)));
            }
        }
    }
    out
}

fn compacted_config() -> LogConfig {
    LogConfig::from_entries([("cleanup.policy", "compact"), ("segment.bytes", "2048")]).unwrap()
}

#[test]
fn compaction_keeps_latest_record_per_key_with_original_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = PartitionLog::open(dir.path(), compacted_config()).unwrap();
    let mut expected: HashMap<String, (i64, String)> = HashMap::new();
    for i in 0..200 {
        let key = format!("k{}", i % 7);
        let value = format!("v{i}");
        let compression = if i % 2 == 0 {
            Compression::None
        } else {
            Compression::Gzip
        };
        let info = log
            .append(&batch(&key, Some(&value), compression), 0)
            .unwrap();
        expected.insert(key, (info.base_offset, value));
    }
    let before = all_records(&log);
    assert_eq!(before.len(), 200);
    let stats = log.compact().unwrap();
    assert!(
        stats.segments_rewritten > 0 && stats.records_removed > 0,
        "{stats:?}"
    );
    assert!(stats.bytes_after < stats.bytes_before);
    let after = all_records(&log);
    assert!(after.len() < before.len());
    // Every surviving record is byte-for-byte the one at that offset before.
    let by_offset: HashMap<i64, _> = before.iter().map(|r| (r.0, r)).collect();
    for r in &after {
        assert_eq!(by_offset[&r.0], r, "record at offset {} changed", r.0);
    }
    // The latest value of every key is still readable.
    let mut latest: HashMap<String, (i64, String)> = HashMap::new();
    for (offset, key, value) in &after {
        latest.insert(key.clone(), (*offset, value.clone().unwrap()));
    }
    assert_eq!(latest, expected);
    assert_eq!(
        log.compact().unwrap().segments_rewritten,
        0,
        "nothing new to compact"
    );
    // Appends continue after the original log end, and a reopen reads the same.
    let end = log.log_end_offset();
    assert_eq!(
        log.append(&batch("k0", Some("new"), Compression::None), 0)
            .unwrap()
            .base_offset,
        end
    );
    drop(log);
    let (reopened, cuts) = PartitionLog::open(dir.path(), compacted_config()).unwrap();
    assert!(cuts.is_empty(), "{cuts:?}");
    let again = all_records(&reopened);
    assert_eq!(&again[..after.len()], &after[..]);
    // A read from an offset removed by compaction lands on the next kept record.
    let gap = (0..end).find(|o| !after.iter().any(|r| r.0 == *o)).unwrap();
    let read = reopened.read(gap, 1 << 20, ReadLimit::LogEnd).unwrap();
    let first = RecordBatchDecoder::decode(&mut Bytes::from(read.records))
        .unwrap()
        .records[0]
        .offset;
    assert!(first > gap);
}

#[test]
fn delete_policy_logs_are_not_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig::from_entries([("segment.bytes", "2048")]).unwrap();
    let (log, _) = PartitionLog::open(dir.path(), config).unwrap();
    for i in 0..100 {
        log.append(&batch("same", Some(&format!("v{i}")), Compression::None), 0)
            .unwrap();
    }
    assert_eq!(log.compact().unwrap().segments_rewritten, 0);
    assert_eq!(all_records(&log).len(), 100);
}

/// A transactional batch of one record from producer 9.
fn txn_record(key: &str, seq: i32) -> Vec<u8> {
    let record = Record {
        transactional: true,
        producer_id: 9,
        producer_epoch: 0,
        sequence: seq,
        ..RecordBatchDecoder::decode(&mut Bytes::from(batch(key, Some("txn"), Compression::None)))
            .unwrap()
            .records
            .remove(0)
    };
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, [&record], &options).unwrap();
    buf.to_vec()
}

#[test]
fn compaction_keeps_transactions_and_their_markers_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = PartitionLog::open(dir.path(), compacted_config()).unwrap();
    // An aborted transaction writing k0, then plain records overwriting k0
    // many times, so that the first segments are closed and compacted.
    log.append(&txn_record("k0", 0), 0).unwrap();
    log.append(&txn_record("k1", 1), 0).unwrap();
    let abort = log
        .append_marker(9, 0, basin_log::ControlType::Abort, 0, 0)
        .unwrap();
    for i in 0..100 {
        log.append(&batch("k0", Some(&format!("v{i}")), Compression::None), 0)
            .unwrap();
    }
    log.set_high_watermark(log.log_end_offset());
    let before = log.read(0, 1 << 20, ReadLimit::LastStable).unwrap().aborted;
    let stats = log.compact().unwrap();
    assert!(stats.segments_rewritten > 0, "{stats:?}");
    let after = all_records(&log);
    // The transaction's records and its marker keep their offsets.
    assert_eq!(
        &after[..3].iter().map(|r| r.0).collect::<Vec<_>>(),
        &[0, 1, abort.base_offset]
    );
    assert_eq!(
        log.read(0, 1 << 20, ReadLimit::LastStable).unwrap().aborted,
        before
    );
    assert_eq!(before.len(), 1);
    // Plain duplicates of k0 in closed segments are gone.
    assert!(after.len() < 103, "{}", after.len());
}
