//! Append and read real Kafka record batches through `PartitionLog`: reads
//! across segments, from the middle of a batch, bounded by `max_bytes`, up to
//! the high watermark or the log end; CRC and size rejection; all codecs;
//! and `offset_for_timestamp`.

mod common;

use basin_log::{LogError, ReadLimit};
use common::*;
use kafka_protocol::records::Compression;

#[test]
fn reads_span_segments_and_return_whole_batches() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_clean(dir.path(), small_config(1024));
    let spans = fill(&log, 30, 5, 1_000);
    assert_eq!(log.log_end_offset(), 150);
    assert!(
        segment_files(dir.path()).len() >= 5,
        "small segment.bytes must roll: {:?}",
        segment_files(dir.path())
    );

    // Every offset, even in the middle of a batch, returns the whole batch
    // holding it when max_bytes is tiny (at least one batch).
    for &(base, last) in &spans {
        for offset in base..=last {
            let res = log.read(offset, 1, ReadLimit::LogEnd).unwrap();
            let headers = whole_batches(&res.records);
            assert_eq!(headers.len(), 1, "offset {offset}");
            assert_eq!(headers[0].base_offset, base, "offset {offset}");
            assert_eq!(headers[0].last_offset(), last, "offset {offset}");
            let records = decode(&res.records);
            assert_eq!(records.first().unwrap().offset, base);
            assert!(records.iter().any(|r| r.offset == offset));
            assert_eq!(res.log_end_offset, 150);
            assert_eq!(res.log_start_offset, 0);
        }
    }

    // Large reads return consecutive whole batches starting at the one
    // holding the offset.
    let res = log.read(12, 1 << 20, ReadLimit::LogEnd).unwrap();
    let headers = whole_batches(&res.records);
    assert_eq!(headers[0].base_offset, 10);
    for w in headers.windows(2) {
        assert_eq!(w[0].next_offset(), w[1].base_offset);
    }

    // Everything reads back in order with the values written.
    let all = read_all(&log, 0);
    assert_eq!(all.len(), 150);
    for (i, (offset, value)) in all.iter().enumerate() {
        assert_eq!(*offset, i as i64);
        let expect = record(i % 5, 0, 40, None).value;
        assert_eq!(value, &expect);
    }
}

#[test]
fn max_bytes_bounds_reads_to_whole_batches() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_clean(dir.path(), small_config(64 * 1024));
    fill(&log, 20, 4, 0);
    let one = log.read(0, 1, ReadLimit::LogEnd).unwrap().records.len();
    for max in [0, 1, one - 1, one, one + 1, 2 * one, 3 * one + 7, 10_000] {
        let res = log.read(0, max, ReadLimit::LogEnd).unwrap();
        let headers = whole_batches(&res.records);
        assert!(!headers.is_empty(), "max_bytes {max} returned nothing");
        assert!(
            res.records.len() <= max.max(one),
            "max_bytes {max} returned {} bytes",
            res.records.len()
        );
        // As many whole batches as fit: one more would not have.
        if res.records.len() < 20 * one {
            assert!(
                res.records.len() + one > max,
                "max_bytes {max} under-filled"
            );
        }
    }
}

#[test]
fn several_batches_in_one_append_get_consecutive_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_clean(dir.path(), small_config(64 * 1024));
    let mut req = batch(3, 0);
    req.extend(batch(2, 10));
    req.extend(batch_with(4, 20, 8, Compression::Gzip, None));
    let info = log.append(&req, 0).unwrap();
    assert_eq!((info.base_offset, info.last_offset), (0, 8));
    assert_eq!(info.log_end_offset, 9);
    let res = log.read(0, 1 << 20, ReadLimit::LogEnd).unwrap();
    let bases: Vec<i64> = whole_batches(&res.records)
        .iter()
        .map(|h| h.base_offset)
        .collect();
    assert_eq!(bases, [0, 3, 5]);
    let offsets: Vec<i64> = decode(&res.records).iter().map(|r| r.offset).collect();
    assert_eq!(offsets, (0..9).collect::<Vec<_>>());
    // What is stored is the caller's bytes with offsets and epochs stamped;
    // the caller's buffer is left alone.
    let mut stamped = req.clone();
    let positions: Vec<usize> = basin_log::batch::headers(&req).map(|(at, _)| at).collect();
    for (at, base) in positions.into_iter().zip([0, 3, 5]) {
        basin_log::batch::stamp(&mut stamped[at..], base, 0);
    }
    assert_eq!(res.records, stamped);
}

#[test]
fn high_watermark_bounds_consumer_reads_but_not_follower_reads() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_clean(dir.path(), small_config(1024));
    fill(&log, 12, 5, 0);
    assert_eq!(log.high_watermark(), 0);

    // Nothing is committed yet.
    let res = log.read(0, 1 << 20, ReadLimit::HighWatermark).unwrap();
    assert!(res.records.is_empty());
    assert_eq!(res.high_watermark, 0);
    assert!(!log
        .read(0, 1 << 20, ReadLimit::LogEnd)
        .unwrap()
        .records
        .is_empty());

    log.set_high_watermark(25);
    assert_eq!(log.high_watermark(), 25);
    for offset in 0..25 {
        let res = log.read(offset, 1 << 20, ReadLimit::HighWatermark).unwrap();
        let headers = whole_batches(&res.records);
        assert!(!headers.is_empty(), "offset {offset} below the HW");
        assert!(
            headers.last().unwrap().last_offset() < 25,
            "read from {offset} went past the HW: {headers:?}"
        );
    }
    for offset in 25..=60 {
        let res = log.read(offset, 1 << 20, ReadLimit::HighWatermark).unwrap();
        assert!(res.records.is_empty(), "offset {offset} is past the HW");
        assert_eq!(res.high_watermark, 25);
        assert_eq!(res.log_end_offset, 60);
        let res = log.read(offset, 1 << 20, ReadLimit::LogEnd).unwrap();
        assert_eq!(res.records.is_empty(), offset == 60, "offset {offset}");
    }

    // The HW never moves back and never passes the log end.
    log.set_high_watermark(10);
    assert_eq!(log.high_watermark(), 25);
    log.set_high_watermark(1_000);
    assert_eq!(log.high_watermark(), 60);
}

#[test]
fn out_of_range_offsets_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_clean(dir.path(), small_config(1024));
    // Even an empty log reads at its end and errors past it.
    assert!(log
        .read(0, 100, ReadLimit::LogEnd)
        .unwrap()
        .records
        .is_empty());
    fill(&log, 4, 5, 0);
    for offset in [-1, 21, 22, 1_000, i64::MAX, i64::MIN] {
        for limit in [ReadLimit::LogEnd, ReadLimit::HighWatermark] {
            match log.read(offset, 100, limit) {
                Err(LogError::OffsetOutOfRange {
                    offset: o,
                    start,
                    end,
                }) => {
                    assert_eq!((o, start, end), (offset, 0, 20));
                }
                other => panic!("offset {offset}: expected OffsetOutOfRange, got {other:?}"),
            }
        }
    }
    assert!(log
        .read(20, 100, ReadLimit::LogEnd)
        .unwrap()
        .records
        .is_empty());
}

#[test]
fn corrupt_batches_are_rejected_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_clean(dir.path(), small_config(64 * 1024));
    fill(&log, 2, 3, 0);
    let size_before = log.size_bytes();
    let good = batch(3, 100);
    // Every byte covered by the CRC (attributes to the end) and the CRC itself.
    for at in 17..good.len() {
        let mut bad = good.clone();
        bad[at] ^= 0x01;
        match log.append(&bad, 0) {
            Err(LogError::CorruptBatch { .. }) => {}
            other => panic!("flip at byte {at}: expected CorruptBatch, got {other:?}"),
        }
    }
    // A valid batch followed by a corrupt one: the whole request is refused.
    let mut req = good.clone();
    let mut bad = good.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0x80;
    req.extend(bad);
    assert!(matches!(
        log.append(&req, 0),
        Err(LogError::CorruptBatch { .. })
    ));
    // Magic byte.
    let mut bad = good.clone();
    bad[16] = 1;
    assert!(matches!(
        log.append(&bad, 0),
        Err(LogError::UnsupportedMagic(1))
    ));
    // Truncated, empty and length-lying inputs.
    for bad in [&good[..good.len() - 1], &good[..30], &good[..5], &[][..]] {
        assert!(
            matches!(log.append(bad, 0), Err(LogError::CorruptBatch { .. })),
            "{} bytes",
            bad.len()
        );
    }
    let mut longer = good.clone();
    longer.push(0);
    assert!(matches!(
        log.append(&longer, 0),
        Err(LogError::CorruptBatch { .. })
    ));
    assert_eq!(log.log_end_offset(), 6);
    assert_eq!(log.size_bytes(), size_before);
    // The good batch itself still goes in.
    assert_eq!(log.append(&good.clone(), 0).unwrap().base_offset, 6);
}

#[test]
fn oversized_batches_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = small_config(64 * 1024);
    config.max_message_bytes = 500;
    let log = open_clean(dir.path(), config);
    let big = batch_with(2, 0, 600, Compression::None, None);
    match log.append(&big, 0) {
        Err(LogError::BatchTooLarge { size, max }) => {
            assert_eq!((size, max), (big.len(), 500));
        }
        other => panic!("expected BatchTooLarge, got {other:?}"),
    }
    assert_eq!(log.log_end_offset(), 0);
    log.append(&batch_with(2, 0, 10, Compression::None, None), 0)
        .unwrap();
}

#[test]
fn every_codec_is_stored_and_read_back_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_clean(dir.path(), small_config(4096));
    let mut written = Vec::new();
    for round in 0..2 {
        for codec in CODECS {
            let original = batch_with(7, 5_000 + round * 100, 300, codec, None);
            let info = log.append(&original, 3).unwrap();
            // The log holds the batch with only the base offset and the
            // leader epoch rewritten.
            let mut stamped = original.clone();
            basin_log::batch::stamp(&mut stamped, info.base_offset, 3);
            let header = basin_log::batch::validate(&stamped, 0).unwrap();
            assert_eq!(header.compression(), codec as i16);
            written.push((info.base_offset, stamped, codec));
        }
    }
    for (base, stamped, codec) in &written {
        let res = log.read(*base, 1, ReadLimit::LogEnd).unwrap();
        assert_eq!(&res.records, stamped, "{codec:?} batch at {base}");
        let records = decode(&res.records);
        assert_eq!(records.len(), 7);
        for (i, r) in records.iter().enumerate() {
            assert_eq!(r.offset, base + i as i64);
            assert_eq!(r.partition_leader_epoch, 3);
            let expect = record(i, 0, 300, None);
            assert_eq!(
                (&r.key, &r.value, &r.headers),
                (&expect.key, &expect.value, &expect.headers)
            );
        }
    }
}

/// Expected answer to `offset_for_timestamp(t)`: the first record with a
/// timestamp at or after `t`.
fn first_at_or_after(stamps: &[(i64, i64)], t: i64) -> Option<(i64, i64)> {
    stamps.iter().copied().find(|&(_, ts)| ts >= t)
}

#[test]
fn offset_for_timestamp_finds_the_first_record_at_or_after() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_clean(dir.path(), small_config(1024));
    // (offset, timestamp) of every record; timestamps rise by 10 per record
    // with gaps between batches, across segments and codecs.
    let mut stamps = Vec::new();
    let mut ts = 1_700_000_000_000i64;
    for b in 0..24 {
        let codec = CODECS[b % CODECS.len()];
        let n = 1 + b % 4;
        let records: Vec<_> = (0..n)
            .map(|i| record(i, ts + 10 * i as i64, 60, None))
            .collect();
        let bytes = encode(&records, codec);
        let info = log.append(&bytes, 0).unwrap();
        for i in 0..n {
            stamps.push((info.base_offset + i as i64, ts + 10 * i as i64));
        }
        ts += 10 * n as i64 + 1_000;
    }
    assert!(segment_files(dir.path()).len() > 3);
    let check = |log: &basin_log::PartitionLog| {
        let first = stamps[0].1;
        let last = stamps.last().unwrap().1;
        let mut queries = vec![i64::MIN, -1, 0, first - 1, last, last + 1, i64::MAX];
        for &(_, t) in &stamps {
            queries.extend([t - 1, t, t + 1, t + 5]);
        }
        for t in queries {
            assert_eq!(
                log.offset_for_timestamp(t).unwrap(),
                first_at_or_after(&stamps, t),
                "timestamp {t}"
            );
        }
        assert_eq!(log.max_timestamp(), last);
    };
    check(&log);
    // Same answers after a clean restart (indexes loaded) and after a crash
    // (indexes rebuilt).
    log.close().unwrap();
    drop(log);
    let log = open_clean(dir.path(), small_config(1024));
    check(&log);
    drop(log);
    let log = open_clean(dir.path(), small_config(1024));
    check(&log);
}

/// Overwrite a batch's lastOffsetDelta and record count, fixing its CRC: a
/// producer can send any header with a valid checksum.
fn claim_records(batch: &mut [u8], count: i32) {
    batch[23..27].copy_from_slice(&(count - 1).to_be_bytes());
    batch[57..61].copy_from_slice(&count.to_be_bytes());
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}

#[test]
fn batches_claiming_huge_record_counts_do_not_break_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_clean(dir.path(), small_config(64 * 1024));
    let mut bases = Vec::new();
    for (i, codec) in CODECS.into_iter().enumerate() {
        // Three records whose header claims i32::MAX.
        let ts = 10_000 * (i as i64 + 1);
        let mut b = batch_with(3, ts, 10, codec, None);
        claim_records(&mut b, i32::MAX);
        let info = log.append(&b, 0).unwrap();
        assert_eq!(info.last_offset - info.base_offset, i64::from(i32::MAX) - 1);
        bases.push((info.base_offset, ts));
    }
    for &(base, ts) in &bases {
        // Reads find the batch that holds the offset, at its start and end.
        for offset in [base, base + 1, base + i64::from(i32::MAX) - 1] {
            let res = log.read(offset, 1, ReadLimit::LogEnd).unwrap();
            assert_eq!(
                whole_batches(&res.records)[0].base_offset,
                base,
                "offset {offset}"
            );
        }
        // Timestamp lookups walk the three real records, never the claim.
        assert_eq!(
            log.offset_for_timestamp(ts + 1).unwrap(),
            Some((base + 1, ts + 1))
        );
        assert_eq!(
            log.offset_for_timestamp(ts + 2).unwrap(),
            Some((base + 2, ts + 2))
        );
    }
    // One request whose batches together take more offsets than a segment
    // can index is refused.
    let leo = log.log_end_offset();
    let mut req = batch(3, 0);
    claim_records(&mut req, i32::MAX);
    req.extend(batch(3, 0));
    assert!(matches!(
        log.append(&req, 0),
        Err(LogError::CorruptBatch { .. })
    ));
    assert_eq!(log.log_end_offset(), leo);
    // Everything is still there after a restart.
    log.close().unwrap();
    drop(log);
    let log = open_clean(dir.path(), small_config(64 * 1024));
    assert_eq!(log.log_end_offset(), leo);
    for &(base, ts) in &bases {
        let res = log.read(base + 7, 1, ReadLimit::LogEnd).unwrap();
        assert_eq!(whole_batches(&res.records)[0].base_offset, base);
        assert_eq!(log.offset_for_timestamp(ts).unwrap(), Some((base, ts)));
    }
}

#[test]
fn record_counts_must_match_the_offset_range_for_every_codec() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_clean(dir.path(), small_config(64 * 1024));
    for codec in CODECS {
        for (delta, count) in [
            (2, 2),
            (2, 4),
            (0, 0),
            (5, 3),
            (i32::MAX, i32::MAX),
            (i32::MAX, 0),
        ] {
            let mut b = batch_with(3, 0, 10, codec, None);
            b[23..27].copy_from_slice(&i32::to_be_bytes(delta));
            b[57..61].copy_from_slice(&i32::to_be_bytes(count));
            let crc = crc32c::crc32c(&b[21..]);
            b[17..21].copy_from_slice(&crc.to_be_bytes());
            assert!(
                matches!(log.append(&b, 0), Err(LogError::CorruptBatch { .. })),
                "{codec:?}: lastOffsetDelta {delta} with {count} records"
            );
        }
    }
    assert_eq!(log.log_end_offset(), 0);
}
