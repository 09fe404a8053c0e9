//! Kafka record batch (format v2) headers: parsing, validation and in-place
//! stamping of the offset and leader epoch, without touching the records.
//!
//! Layout of the 61-byte header (big endian):
//! `baseOffset i64 | batchLength i32 | partitionLeaderEpoch i32 | magic i8 |
//! crc u32 | attributes i16 | lastOffsetDelta i32 | baseTimestamp i64 |
//! maxTimestamp i64 | producerId i64 | producerEpoch i16 | baseSequence i32 |
//! recordCount i32`. The CRC-32C covers everything from `attributes` to the
//! end of the batch, so the offset and the leader epoch can be rewritten
//! without recomputing it.

use crate::error::{LogError, Result};

/// Size of the fixed v2 batch header.
pub const HEADER_LEN: usize = 61;
/// Bytes before `batchLength` counts: baseOffset and batchLength themselves.
pub const LOG_OVERHEAD: usize = 12;
const CRC_START: usize = 21;
const ATTR_TRANSACTIONAL: i16 = 0x10;
const ATTR_CONTROL: i16 = 0x20;

/// The decoded header of one record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// Total size of the batch in bytes, header included.
    pub size: usize,
    pub leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

impl BatchHeader {
    /// Offset of the last record of the batch.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    /// Offset after the batch.
    pub fn next_offset(&self) -> i64 {
        self.last_offset() + 1
    }

    /// Compression codec id from the attributes (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
    pub fn compression(&self) -> i16 {
        self.attributes & 0x07
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }

    /// True when the batch carries idempotent-producer identity.
    pub fn has_producer_id(&self) -> bool {
        self.producer_id >= 0
    }

    /// Sequence number of the last record.
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence < 0 {
            return -1;
        }
        // Sequences wrap at i32::MAX as in Kafka.
        ((i64::from(self.base_sequence) + i64::from(self.last_offset_delta))
            % (i64::from(i32::MAX) + 1)) as i32
    }
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn be_i64(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Size of the batch starting at `buf[0]` from its length prefix, if the
/// first 12 bytes are present. Does not validate the rest.
pub fn peek_size(buf: &[u8]) -> Option<usize> {
    if buf.len() < LOG_OVERHEAD {
        return None;
    }
    let len = be_i32(buf, 8);
    (len >= 0).then(|| LOG_OVERHEAD + len as usize)
}

/// Parse the header at the start of `buf` (at least `HEADER_LEN` bytes).
/// `position` is only used in error messages.
pub fn parse_header(buf: &[u8], position: usize) -> Result<BatchHeader> {
    let corrupt = |reason: String| LogError::CorruptBatch { position, reason };
    if buf.len() < HEADER_LEN {
        return Err(corrupt(format!(
            "truncated header: {} of {HEADER_LEN} bytes",
            buf.len()
        )));
    }
    let magic = buf[16] as i8;
    if magic != 2 {
        return Err(LogError::UnsupportedMagic(magic));
    }
    let batch_len = be_i32(buf, 8);
    if batch_len < (HEADER_LEN - LOG_OVERHEAD) as i32 {
        return Err(corrupt(format!(
            "batch length {batch_len} is smaller than a header"
        )));
    }
    let header = BatchHeader {
        base_offset: be_i64(buf, 0),
        size: LOG_OVERHEAD + batch_len as usize,
        leader_epoch: be_i32(buf, 12),
        magic,
        crc: u32::from_be_bytes(buf[17..21].try_into().expect("4 bytes")),
        attributes: be_i16(buf, 21),
        last_offset_delta: be_i32(buf, 23),
        base_timestamp: be_i64(buf, 27),
        max_timestamp: be_i64(buf, 35),
        producer_id: be_i64(buf, 43),
        producer_epoch: be_i16(buf, 51),
        base_sequence: be_i32(buf, 53),
        record_count: be_i32(buf, 57),
    };
    if header.last_offset_delta < 0 || header.record_count < 0 {
        return Err(corrupt(format!(
            "negative lastOffsetDelta {} or record count {}",
            header.last_offset_delta, header.record_count
        )));
    }
    Ok(header)
}

/// Parse and fully check one complete batch: header, length and CRC-32C.
pub fn validate(batch: &[u8], position: usize) -> Result<BatchHeader> {
    let header = parse_header(batch, position)?;
    if batch.len() != header.size {
        return Err(LogError::CorruptBatch {
            position,
            reason: format!(
                "batch length says {} bytes, {} present",
                header.size,
                batch.len()
            ),
        });
    }
    let actual = crc32c::crc32c(&batch[CRC_START..]);
    if actual != header.crc {
        return Err(LogError::CorruptBatch {
            position,
            reason: format!(
                "CRC-32C mismatch: stored {:#010x}, computed {actual:#010x}",
                header.crc
            ),
        });
    }
    // Every record has its own offset, so a batch holds at most
    // lastOffsetDelta + 1 records: exactly that many as produced (checked by
    // `PartitionLog::append`), fewer after compaction, which keeps offsets.
    // In i64: lastOffsetDelta may be i32::MAX.
    if i64::from(header.record_count) > i64::from(header.last_offset_delta) + 1 {
        return Err(LogError::CorruptBatch {
            position,
            reason: format!(
                "record count {} disagrees with lastOffsetDelta {}",
                header.record_count, header.last_offset_delta
            ),
        });
    }
    if header.compression() > 4 {
        return Err(LogError::CorruptBatch {
            position,
            reason: format!("unknown compression codec {}", header.compression()),
        });
    }
    Ok(header)
}

/// Bytes at the start of a batch that stamping touches: baseOffset,
/// batchLength and partitionLeaderEpoch (the CRC covers none of them).
pub const STAMPED_LEN: usize = 16;

/// Rewrite the base offset and leader epoch of a batch in place. Neither is
/// covered by the CRC.
pub fn stamp(batch: &mut [u8], base_offset: i64, leader_epoch: i32) {
    batch[0..8].copy_from_slice(&base_offset.to_be_bytes());
    batch[12..16].copy_from_slice(&leader_epoch.to_be_bytes());
}

/// The first `STAMPED_LEN` bytes of `batch` as `stamp` would leave them,
/// without touching `batch`: an append writes them in front of the rest.
pub fn stamped_prefix(batch: &[u8], base_offset: i64, leader_epoch: i32) -> [u8; STAMPED_LEN] {
    let mut prefix = [0u8; STAMPED_LEN];
    prefix.copy_from_slice(&batch[..STAMPED_LEN]);
    stamp(&mut prefix, base_offset, leader_epoch);
    prefix
}

/// Iterate over the complete batches in `buf`, yielding `(position, header)`.
/// Stops at the first incomplete or invalid header; CRCs are not checked.
pub fn headers(buf: &[u8]) -> impl Iterator<Item = (usize, BatchHeader)> + '_ {
    let mut pos = 0usize;
    std::iter::from_fn(move || {
        let size = peek_size(&buf[pos..])?;
        if pos + size > buf.len() || size < HEADER_LEN {
            return None;
        }
        let header = parse_header(&buf[pos..pos + size], pos).ok()?;
        let at = pos;
        pos += size;
        Some((at, header))
    })
}
