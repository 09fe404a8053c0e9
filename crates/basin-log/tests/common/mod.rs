//! Shared helpers for the basin-log integration tests: real Kafka v2 record
//! batches built with `kafka_protocol`'s `RecordBatchEncoder`, decoding of
//! what a read returns, and small-segment log configurations.

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};

use basin_log::batch::{self, BatchHeader};
use basin_log::{CleanupPolicy, FlushPolicy, LogConfig, PartitionLog, Truncation};
use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// All codecs a producer may use.
pub const CODECS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

/// Idempotent-producer identity of a batch.
#[derive(Debug, Clone, Copy)]
pub struct Producer {
    pub id: i64,
    pub epoch: i16,
    pub base_sequence: i32,
}

/// A record at relative offset `i` of a batch, with a key, a value of
/// `value_len` bytes and one header.
pub fn record(i: usize, timestamp: i64, value_len: usize, producer: Option<Producer>) -> Record {
    let (producer_id, producer_epoch, sequence) = match producer {
        Some(p) => (p.id, p.epoch, p.base_sequence + i as i32),
        // The encoder groups records whose `offset - sequence` agree into one
        // batch; `i - 1` makes the batch's base sequence -1 (no producer).
        None => (-1, -1, i as i32 - 1),
    };
    let mut headers = IndexMap::new();
    headers.insert(
        StrBytes::from_string(format!("h{i}")),
        Some(Bytes::from(format!("header value {i}"))),
    );
    Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id,
        producer_epoch,
        timestamp_type: TimestampType::Creation,
        offset: i as i64,
        sequence,
        timestamp,
        key: Some(Bytes::from(format!("key-{i}"))),
        value: Some(Bytes::from(
            (0..value_len)
                .map(|b| b"abcdefghijklmnopqrstuvwxyz"[(b + i) % 26])
                .collect::<Vec<u8>>(),
        )),
        headers,
    }
}

/// Encode `records` as exactly one v2 batch.
pub fn encode(records: &[Record], compression: Compression) -> Vec<u8> {
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .expect("records encode");
    let bytes = buf.to_vec();
    assert_eq!(
        batch::headers(&bytes).count(),
        1,
        "helper must produce one batch"
    );
    bytes
}

/// A batch of `n` records with timestamps `first_ts`, `first_ts + 1`, ...
pub fn batch(n: usize, first_ts: i64) -> Vec<u8> {
    batch_with(n, first_ts, 40, Compression::None, None)
}

/// A batch with full control over its shape.
pub fn batch_with(
    n: usize,
    first_ts: i64,
    value_len: usize,
    compression: Compression,
    producer: Option<Producer>,
) -> Vec<u8> {
    let records: Vec<Record> = (0..n)
        .map(|i| record(i, first_ts + i as i64, value_len, producer))
        .collect();
    encode(&records, compression)
}

/// A batch from an idempotent producer.
pub fn idempotent(id: i64, epoch: i16, base_sequence: i32, n: usize) -> Vec<u8> {
    batch_with(
        n,
        1_000,
        16,
        Compression::None,
        Some(Producer {
            id,
            epoch,
            base_sequence,
        }),
    )
}

/// Decode every batch in `bytes` into records.
pub fn decode(bytes: &[u8]) -> Vec<Record> {
    let mut buf = Bytes::copy_from_slice(bytes);
    RecordBatchDecoder::decode_all(&mut buf)
        .expect("read bytes decode")
        .into_iter()
        .flat_map(|set| set.records)
        .collect()
}

/// Headers of every batch in `bytes`, checking that they are whole batches
/// with valid CRCs that exactly fill the buffer.
pub fn whole_batches(bytes: &[u8]) -> Vec<BatchHeader> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let size = batch::peek_size(&bytes[pos..]).expect("length prefix");
        assert!(
            pos + size <= bytes.len(),
            "partial batch at {pos} in a read result"
        );
        out.push(batch::validate(&bytes[pos..pos + size], pos).expect("valid batch"));
        pos += size;
    }
    out
}

/// A config with small segments and a dense index, nothing deleted, no fsync.
pub fn small_config(segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        retention_bytes: -1,
        retention_ms: -1,
        index_interval_bytes: 128,
        max_message_bytes: 1024 * 1024,
        flush: FlushPolicy::Os,
        cleanup: CleanupPolicy::Delete,
    }
}

/// Open a log, asserting that recovery cut nothing.
pub fn open_clean(dir: &Path, config: LogConfig) -> PartitionLog {
    let (log, cuts) = PartitionLog::open(dir, config).expect("log opens");
    assert!(cuts.is_empty(), "unexpected recovery truncation: {cuts:?}");
    log
}

/// Open a log and return what recovery cut.
pub fn open_recover(dir: &Path, config: LogConfig) -> (PartitionLog, Vec<Truncation>) {
    PartitionLog::open(dir, config).expect("log opens")
}

/// Segment `.log` files in `dir`, in offset order.
pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    files_with_ext(dir, "log")
}

/// Files in `dir` with extension `ext`, sorted by name.
pub fn files_with_ext(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .expect("dir lists")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    files.sort();
    files
}

/// Append `n` records per batch, `batches` times, returning each batch's
/// `(base_offset, last_offset)`. Timestamps are `ts0 + offset`.
pub fn fill(log: &PartitionLog, batches: usize, n: usize, ts0: i64) -> Vec<(i64, i64)> {
    (0..batches)
        .map(|_| {
            let leo = log.log_end_offset();
            let b = batch(n, ts0 + leo);
            let info = log.append(&b, 0).expect("append");
            assert!(!info.duplicate);
            assert_eq!(info.base_offset, leo);
            (info.base_offset, info.last_offset)
        })
        .collect()
}

/// Every record's offset and value read from `from` to the log end, one
/// read at a time, checking that offsets are dense.
pub fn read_all(log: &PartitionLog, from: i64) -> Vec<(i64, Option<Bytes>)> {
    let mut out = Vec::new();
    let mut next = from;
    loop {
        let res = log
            .read(next, 64 * 1024, basin_log::ReadLimit::LogEnd)
            .expect("read");
        if res.records.is_empty() {
            assert_eq!(next, res.log_end_offset, "read stopped before the log end");
            return out;
        }
        whole_batches(&res.records);
        for r in decode(&res.records) {
            if r.offset >= next {
                assert_eq!(r.offset, next, "offsets must be dense");
                out.push((r.offset, r.value.clone()));
                next += 1;
            }
        }
    }
}
