//! Log compaction for topics with `cleanup.policy=compact`: in every closed
//! segment, keep only the latest record of each key (as Kafka's log cleaner
//! does), so a changelog topic such as `__consumer_offsets` stays as small as
//! its live key set. The active segment is never rewritten; offsets of kept
//! records never change (a compacted log has gaps in its offsets).
//! Transactional batches and their control markers are kept whole and do not
//! supersede other records, so compaction never changes what a
//! `read_committed` reader sees of a transaction.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
};

use crate::batch;
use crate::error::{IoContext, LogError, Result};
use crate::segment::Segment;

/// What one compaction pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CompactionStats {
    pub segments_rewritten: usize,
    pub records_removed: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

/// A batch's raw bytes, its records and its compression.
type DecodedBatch = (Vec<u8>, Vec<Record>, Compression);

/// Every batch of a segment, decoded, with its raw bytes.
fn decoded_batches(seg: &Segment) -> Result<Vec<DecodedBatch>> {
    let raw = seg.read_all()?;
    let mut out = Vec::new();
    for (at, h) in batch::headers(&raw) {
        let bytes = raw[at..at + h.size].to_vec();
        let set = RecordBatchDecoder::decode(&mut Bytes::from(bytes.clone())).map_err(|e| {
            LogError::CorruptBatch {
                position: at,
                reason: format!("cannot decode for compaction: {e}"),
            }
        })?;
        out.push((bytes, set.records, set.compression));
    }
    Ok(out)
}

/// The offset of the latest record of every key across `segments`.
pub(crate) fn latest_offsets<'a>(
    segments: impl Iterator<Item = &'a Segment>,
) -> Result<HashMap<Bytes, i64>> {
    let mut latest = HashMap::new();
    for seg in segments {
        for (_, records, _) in decoded_batches(seg)? {
            for r in records.iter().filter(|r| !r.control && !r.transactional) {
                if let Some(key) = &r.key {
                    latest.insert(key.clone(), r.offset);
                }
            }
        }
    }
    Ok(latest)
}

fn keep(r: &Record, latest: &HashMap<Bytes, i64>) -> bool {
    match &r.key {
        Some(key) => latest.get(key) == Some(&r.offset),
        None => true,
    }
}

/// Rewrite `seg` keeping only the latest record per key; returns the bytes
/// of the cleaned segment and how many records were dropped, or `None` when
/// nothing would change.
pub(crate) fn clean_segment(
    seg: &Segment,
    latest: &HashMap<Bytes, i64>,
) -> Result<Option<(Vec<u8>, u64)>> {
    let mut out = Vec::with_capacity(seg.size as usize);
    let mut removed = 0u64;
    for (bytes, records, compression) in decoded_batches(seg)? {
        if records.iter().any(|r| r.transactional || r.control) {
            out.extend_from_slice(&bytes);
            continue;
        }
        let kept: Vec<&Record> = records.iter().filter(|r| keep(r, latest)).collect();
        removed += (records.len() - kept.len()) as u64;
        if kept.len() == records.len() {
            out.extend_from_slice(&bytes);
        } else if !kept.is_empty() {
            let mut buf = BytesMut::new();
            let options = RecordEncodeOptions {
                version: 2,
                compression,
            };
            RecordBatchEncoder::encode(&mut buf, kept, &options).map_err(|e| {
                LogError::CorruptBatch {
                    position: 0,
                    reason: format!("cannot re-encode: {e}"),
                }
            })?;
            out.extend_from_slice(&buf);
        }
    }
    Ok((removed > 0).then_some((out, removed)))
}

/// Replace a segment's file with cleaned bytes, atomically (write, fsync,
/// rename); stale index files are removed so the reopen rebuilds them.
pub(crate) fn replace_file(dir: &Path, seg: &Segment, cleaned: &[u8]) -> Result<()> {
    let tmp = seg.path.with_extension("cleaned");
    fs::write(&tmp, cleaned).at(&tmp)?;
    fs::File::open(&tmp).and_then(|f| f.sync_all()).at(&tmp)?;
    for ext in ["index", "timeindex"] {
        let _ = fs::remove_file(seg.path.with_extension(ext));
    }
    fs::rename(&tmp, &seg.path).at(&seg.path)?;
    fs::File::open(dir).and_then(|d| d.sync_all()).at(dir)
}
