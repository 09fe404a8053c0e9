//! Body of the `record_batch` fuzz target, shared with basin-log's stable
//! `fuzz_smoke` test (which includes this file by path): arbitrary bytes fed
//! to the batch parser and to `PartitionLog` must never panic, and whatever a
//! log accepts must read back as whole batches holding the offsets asked for,
//! also after a restart. Depends only on `basin_log` and `crc32c`.

use std::path::Path;

use basin_log::batch::{self, HEADER_LEN};
use basin_log::{CleanupPolicy, FlushPolicy, LogConfig, PartitionLog, ReadLimit};

/// Recompute the CRC-32C of every complete batch in `data`, so that mutated
/// inputs get past the checksum and reach what lies behind it.
pub fn fix_crcs(data: &mut [u8]) {
    let mut pos = 0;
    while let Some(size) = batch::peek_size(&data[pos..]) {
        if size < HEADER_LEN || pos + size > data.len() {
            break;
        }
        let crc = crc32c::crc32c(&data[pos + 21..pos + size]);
        data[pos + 17..pos + 21].copy_from_slice(&crc.to_be_bytes());
        pos += size;
    }
}

/// Check the structure of a read result: whole batches, valid CRCs, the first
/// one holding `offset`, offsets increasing, nothing at or past `end`'s batch.
fn check_read(bytes: &[u8], offset: i64, log_end: i64) {
    if bytes.is_empty() {
        return;
    }
    let mut pos = 0;
    let mut prev_next = None;
    while pos < bytes.len() {
        let size = batch::peek_size(&bytes[pos..]).expect("read returns whole batches");
        assert!(pos + size <= bytes.len(), "partial batch in a read");
        let h = batch::validate(&bytes[pos..pos + size], pos).expect("stored batch validates");
        if pos == 0 {
            assert!(
                h.base_offset <= offset && offset <= h.last_offset(),
                "read at {offset} returned a batch for [{}, {}]",
                h.base_offset,
                h.last_offset()
            );
        }
        if let Some(next) = prev_next {
            assert_eq!(h.base_offset, next, "batches in a read are consecutive");
        }
        assert!(h.last_offset() < log_end);
        prev_next = Some(h.next_offset());
        pos += size;
    }
}

fn config(mode: u8) -> LogConfig {
    LogConfig {
        segment_bytes: if mode & 0x08 != 0 { 1024 } else { 64 * 1024 },
        retention_bytes: -1,
        retention_ms: -1,
        index_interval_bytes: 64,
        max_message_bytes: 256 * 1024,
        flush: FlushPolicy::Os,
        cleanup: CleanupPolicy::Delete,
    }
}

fn read_everything(log: &PartitionLog) {
    let (start, end) = (log.log_start_offset(), log.log_end_offset());
    let mut probes = vec![start, end, start + (end - start) / 2, end - 1];
    probes.retain(|o| (start..=end).contains(o));
    for offset in probes {
        for max in [0, 100, 1 << 20] {
            let res = log
                .read(offset, max, ReadLimit::LogEnd)
                .unwrap_or_else(|e| panic!("read at {offset} in [{start}, {end}]: {e}"));
            assert_eq!(res.records.is_empty(), offset == end);
            check_read(&res.records, offset, end);
            let res = log.read(offset, max, ReadLimit::HighWatermark).unwrap();
            check_read(&res.records, offset, end);
            if let Some((_, h)) = batch::headers(&res.records).next() {
                assert!(h.base_offset < res.high_watermark, "read past the HW");
            };
        }
    }
    assert!(log.read(end + 1, 10, ReadLimit::LogEnd).is_err());
}

/// Run one input in a fresh log under `dir` (which must not exist yet).
///
/// The first byte picks a mode: bit 0 fixes CRCs, bit 1 appends batch by
/// batch rather than as one request, bit 2 closes cleanly before reopening
/// (else the log is dropped as in a crash), bit 3 uses tiny segments, bits
/// 4..7 pick the leader epoch. Returns whether the log took any batch.
pub fn run(data: &[u8], dir: &Path) -> bool {
    // The parsers on the raw input.
    let _ = batch::peek_size(data);
    let _ = batch::parse_header(data, 0);
    if let Ok(h) = batch::validate(data, 0) {
        assert_eq!(h.size, data.len());
        let _ = (h.last_offset(), h.next_offset(), h.last_sequence());
    }
    for (pos, h) in batch::headers(data) {
        assert!(pos + h.size <= data.len());
    }

    let Some((&mode, rest)) = data.split_first() else {
        return false;
    };
    let mut input = rest.to_vec();
    if mode & 0x01 != 0 {
        fix_crcs(&mut input);
    }
    let epoch = i32::from(mode >> 4) - 1;
    let (log, cuts) = PartitionLog::open(dir, config(mode)).expect("a fresh log opens");
    assert!(cuts.is_empty());

    // Append as one request, or batch by batch as far as the input splits.
    let requests: Vec<Vec<u8>> = if mode & 0x02 != 0 {
        let mut out = Vec::new();
        let mut pos = 0;
        while let Some(size) = batch::peek_size(&input[pos..]) {
            if size == 0 || pos + size > input.len() {
                break;
            }
            out.push(input[pos..pos + size].to_vec());
            pos += size;
        }
        out.push(input[pos..].to_vec());
        out
    } else {
        vec![input.clone()]
    };
    for request in requests {
        let before = log.log_end_offset();
        match log.append(&request, epoch) {
            Ok(info) => {
                assert_eq!(info.log_end_offset, log.log_end_offset());
                if !info.duplicate {
                    assert_eq!(info.base_offset, before);
                    assert!(info.last_offset >= info.base_offset);
                    assert_eq!(info.log_end_offset, info.last_offset + 1);
                }
            }
            Err(_) => assert_eq!(log.log_end_offset(), before, "a refused append wrote"),
        }
        // The same bytes again: a duplicate or a new append, never a panic.
        let _ = log.append(&request, epoch);
    }

    let end = log.log_end_offset();
    read_everything(&log);
    log.set_high_watermark(end / 2);
    read_everything(&log);
    let ts = i64::from_le_bytes(
        data.iter()
            .copied()
            .chain(std::iter::repeat(0))
            .take(8)
            .collect::<Vec<u8>>()
            .try_into()
            .expect("8 bytes"),
    );
    let _ = log.offset_for_timestamp(ts);
    let _ = log.offset_for_timestamp(log.max_timestamp());
    let _ = log.end_offset_for_epoch(epoch);
    let _ = log.epoch_entries();

    // Restart, cleanly or not: nothing that was accepted is lost.
    if mode & 0x04 != 0 {
        log.close().expect("close");
    }
    drop(log);
    let (log, cuts) = PartitionLog::open(dir, config(mode)).expect("reopen");
    assert!(cuts.is_empty(), "undamaged log was cut: {cuts:?}");
    assert_eq!(log.log_end_offset(), end);
    read_everything(&log);

    // Truncate half way and append again.
    log.truncate_to(end / 2).expect("truncate");
    assert!(log.log_end_offset() <= end / 2);
    assert!(log.high_watermark() <= log.log_end_offset());
    read_everything(&log);
    let _ = log.append(&input, epoch);
    let _ = log.enforce_retention(i64::MAX);
    read_everything(&log);
    drop(log);
    let _ = std::fs::remove_dir_all(dir);
    end > 0
}
