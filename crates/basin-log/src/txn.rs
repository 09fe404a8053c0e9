//! Transactions in a partition log (Kafka's KIP-98): control batches that
//! end a transaction, and the aborted-transaction index that lets
//! `read_committed` consumers drop the records of aborted transactions.
//!
//! A control batch is a v2 batch with the control attribute bit set and one
//! record whose key is `version i16 (0) | type i16` (0 = ABORT, 1 = COMMIT)
//! and whose value is `version i16 (0) | coordinator epoch i32`.
//!
//! The aborted-transaction index of a segment is the `.txnindex` file beside
//! it, in Kafka's format: 34-byte entries `version i16 (0) | producer id i64 |
//! first offset i64 | last offset i64 | last stable offset i64`, one per
//! transaction whose ABORT marker is in that segment (`last offset` is the
//! marker's offset). Entries are appended as markers are written; recovery
//! rebuilds them from the log.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use crate::error::{IoContext, LogError, Result};

/// Size of one `.txnindex` entry.
pub const TXN_ENTRY_LEN: usize = 34;
const TXN_ENTRY_VERSION: i16 = 0;
const CONTROL_VERSION: i16 = 0;

/// How a transaction ended, as written in its control record's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlType {
    Abort,
    Commit,
}

impl ControlType {
    fn code(self) -> i16 {
        match self {
            ControlType::Abort => 0,
            ControlType::Commit => 1,
        }
    }

    fn from_code(code: i16) -> Option<ControlType> {
        match code {
            0 => Some(ControlType::Abort),
            1 => Some(ControlType::Commit),
            _ => None,
        }
    }
}

/// One aborted transaction of one producer in one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    /// Offset of the transaction's first batch in this partition.
    pub first_offset: i64,
    /// Offset of its ABORT marker.
    pub last_offset: i64,
    /// The partition's last stable offset once the marker was written.
    pub last_stable_offset: i64,
}

impl AbortedTxn {
    fn encode(&self) -> [u8; TXN_ENTRY_LEN] {
        let mut out = [0u8; TXN_ENTRY_LEN];
        out[0..2].copy_from_slice(&TXN_ENTRY_VERSION.to_be_bytes());
        out[2..10].copy_from_slice(&self.producer_id.to_be_bytes());
        out[10..18].copy_from_slice(&self.first_offset.to_be_bytes());
        out[18..26].copy_from_slice(&self.last_offset.to_be_bytes());
        out[26..34].copy_from_slice(&self.last_stable_offset.to_be_bytes());
        out
    }

    fn decode(raw: &[u8]) -> Option<AbortedTxn> {
        let i64_at = |at: usize| i64::from_be_bytes(raw[at..at + 8].try_into().expect("8 bytes"));
        let version = i16::from_be_bytes([raw[0], raw[1]]);
        let entry = AbortedTxn {
            producer_id: i64_at(2),
            first_offset: i64_at(10),
            last_offset: i64_at(18),
            last_stable_offset: i64_at(26),
        };
        (version == TXN_ENTRY_VERSION && entry.first_offset <= entry.last_offset).then_some(entry)
    }

    /// True when the transaction overlaps offsets `[from, upper)`.
    pub fn overlaps(&self, from: i64, upper: i64) -> bool {
        self.last_offset >= from && self.first_offset < upper
    }
}

/// Write a whole `.txnindex` file.
pub(crate) fn write_index(path: &Path, entries: &[AbortedTxn]) -> Result<()> {
    let bytes: Vec<u8> = entries.iter().flat_map(|e| e.encode()).collect();
    fs::write(path, bytes).at(path)
}

/// Append one entry to a `.txnindex` file.
pub(crate) fn append_index(path: &Path, entry: &AbortedTxn) -> Result<()> {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .at(path)?;
    file.write_all(&entry.encode()).at(path)
}

/// Load a `.txnindex` file; `None` when missing or malformed (then the
/// caller rebuilds it from the log).
pub(crate) fn load_index(path: &Path) -> Option<Vec<AbortedTxn>> {
    let raw = fs::read(path).ok()?;
    if raw.len() % TXN_ENTRY_LEN != 0 {
        return None;
    }
    raw.chunks_exact(TXN_ENTRY_LEN)
        .map(AbortedTxn::decode)
        .collect()
}

/// Encode the control batch (base offset 0, stamped on append) that ends
/// `producer_id`'s transaction.
pub fn control_batch(
    producer_id: i64,
    producer_epoch: i16,
    marker: ControlType,
    coordinator_epoch: i32,
    timestamp: i64,
) -> Vec<u8> {
    let mut key = Vec::with_capacity(4);
    key.extend_from_slice(&CONTROL_VERSION.to_be_bytes());
    key.extend_from_slice(&marker.code().to_be_bytes());
    let mut value = Vec::with_capacity(6);
    value.extend_from_slice(&CONTROL_VERSION.to_be_bytes());
    value.extend_from_slice(&coordinator_epoch.to_be_bytes());
    let record = Record {
        transactional: true,
        control: true,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id,
        producer_epoch,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp,
        key: Some(Bytes::from(key)),
        value: Some(Bytes::from(value)),
        headers: Default::default(),
    };
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, [&record], &options).expect("a control record encodes");
    buf.to_vec()
}

/// The marker type of a stored control batch (`batch` is the whole batch).
pub fn control_type(batch: &[u8], position: usize) -> Result<ControlType> {
    let corrupt = |reason: String| LogError::CorruptBatch { position, reason };
    let set = RecordBatchDecoder::decode(&mut Bytes::copy_from_slice(batch))
        .map_err(|e| corrupt(format!("undecodable control batch: {e}")))?;
    let key = set
        .records
        .first()
        .and_then(|r| r.key.as_ref())
        .filter(|k| k.len() >= 4)
        .ok_or_else(|| corrupt("control batch without a control record key".into()))?;
    let code = i16::from_be_bytes([key[2], key[3]]);
    ControlType::from_code(code).ok_or_else(|| corrupt(format!("unknown control type {code}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch;

    #[test]
    fn control_batches_round_trip_their_type() {
        for marker in [ControlType::Abort, ControlType::Commit] {
            let raw = control_batch(7, 3, marker, 0, 1_000);
            let h = batch::validate(&raw, 0).unwrap();
            assert!(h.is_control() && h.is_transactional());
            assert_eq!((h.producer_id, h.producer_epoch), (7, 3));
            assert_eq!(h.record_count, 1);
            assert_eq!(control_type(&raw, 0).unwrap(), marker);
        }
    }

    #[test]
    fn index_files_round_trip_and_reject_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.txnindex");
        assert!(load_index(&path).is_none(), "missing file");
        let a = AbortedTxn {
            producer_id: 1,
            first_offset: 5,
            last_offset: 9,
            last_stable_offset: 10,
        };
        let b = AbortedTxn {
            producer_id: 2,
            first_offset: 7,
            last_offset: 12,
            last_stable_offset: 13,
        };
        write_index(&path, &[a]).unwrap();
        append_index(&path, &b).unwrap();
        assert_eq!(load_index(&path).unwrap(), vec![a, b]);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 68);
        std::fs::write(&path, [0u8; 35]).unwrap();
        assert!(load_index(&path).is_none(), "torn entry");
        assert!(a.overlaps(9, 10) && a.overlaps(0, 6) && !a.overlaps(10, 20) && !a.overlaps(0, 5));
    }
}
