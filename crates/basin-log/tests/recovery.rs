//! Crash recovery of `PartitionLog`: a crash is simulated by dropping the log
//! without `close()`, then the segment files are damaged the way a torn write
//! or bit rot would, and reopening must cut exactly at the last good batch,
//! report the cut, and keep appending at the right offset. Also checks that
//! lost or corrupt index files are rebuilt instead of trusted.

mod common;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;

use basin_log::{PartitionLog, ReadLimit};
use common::*;

fn append_bytes(path: &Path, bytes: &[u8]) {
    let mut f = OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(bytes).unwrap();
}

fn flip_byte(path: &Path, at: u64) {
    let mut data = fs::read(path).unwrap();
    data[at as usize] ^= 0x5a;
    fs::write(path, data).unwrap();
}

/// A crashed log of 20 batches of 5 records over several segments; returns
/// the log end offset and the last segment file.
fn crashed_log(dir: &Path) -> (i64, std::path::PathBuf) {
    let log = open_clean(dir, small_config(1024));
    fill(&log, 20, 5, 0);
    let leo = log.log_end_offset();
    drop(log); // no close(): as if the process died
    let segs = segment_files(dir);
    assert!(segs.len() > 3, "{segs:?}");
    (leo, segs.last().unwrap().clone())
}

fn assert_continues_at(log: &PartitionLog, leo: i64) {
    assert_eq!(log.log_end_offset(), leo);
    let info = log.append(&batch(3, 0), 0).unwrap();
    assert_eq!(info.base_offset, leo);
    assert_eq!(info.log_end_offset, leo + 3);
    let all = read_all(log, 0);
    assert_eq!(all.len() as i64, leo + 3);
}

#[test]
fn a_crash_without_damage_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (leo, _) = crashed_log(dir.path());
    let log = open_clean(dir.path(), small_config(1024));
    assert_continues_at(&log, leo);
}

#[test]
fn garbage_after_the_last_batch_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let (leo, last) = crashed_log(dir.path());
    let good_len = fs::metadata(&last).unwrap().len();
    let garbage: Vec<u8> = (0..200u32).map(|i| (i * 37 % 251) as u8).collect();
    append_bytes(&last, &garbage);

    let (log, cuts) = open_recover(dir.path(), small_config(1024));
    assert_eq!(cuts.len(), 1, "{cuts:?}");
    let cut = &cuts[0];
    assert_eq!(cut.file, last);
    assert_eq!(cut.offset, leo);
    assert_eq!(cut.position, good_len);
    assert_eq!(cut.bytes_removed, garbage.len() as u64);
    assert!(!cut.reason.is_empty());
    assert_eq!(fs::metadata(&last).unwrap().len(), good_len);
    assert_continues_at(&log, leo);
}

#[test]
fn a_torn_half_batch_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let (leo, last) = crashed_log(dir.path());
    let good_len = fs::metadata(&last).unwrap().len();
    // Half of a valid batch (with a plausible base offset), and, separately,
    // a torn header.
    for torn in [batch(5, 0).len() / 2, 30, 3] {
        let mut half = batch(5, 0);
        half[0..8].copy_from_slice(&leo.to_be_bytes());
        half.truncate(torn);
        append_bytes(&last, &half);
        let (log, cuts) = open_recover(dir.path(), small_config(1024));
        assert_eq!(cuts.len(), 1, "torn at {torn}: {cuts:?}");
        assert_eq!(cuts[0].file, last);
        assert_eq!(cuts[0].offset, leo);
        assert_eq!(cuts[0].position, good_len);
        assert_eq!(cuts[0].bytes_removed, torn as u64);
        assert_eq!(log.log_end_offset(), leo);
        drop(log);
    }
    let log = open_clean(dir.path(), small_config(1024));
    assert_continues_at(&log, leo);
}

#[test]
fn a_flipped_byte_in_the_last_batch_cuts_at_the_batch_before() {
    let dir = tempfile::tempdir().unwrap();
    let (leo, last) = crashed_log(dir.path());
    let len = fs::metadata(&last).unwrap().len();
    let last_batch = batch(5, 0).len() as u64;
    // A byte in the records of the last batch.
    flip_byte(&last, len - 10);

    let (log, cuts) = open_recover(dir.path(), small_config(1024));
    assert_eq!(cuts.len(), 1, "{cuts:?}");
    assert_eq!(cuts[0].file, last);
    assert_eq!(cuts[0].offset, leo - 5);
    assert_eq!(cuts[0].position, len - last_batch);
    assert_eq!(cuts[0].bytes_removed, last_batch);
    assert!(cuts[0].reason.contains("CRC"), "{}", cuts[0].reason);
    assert_continues_at(&log, leo - 5);
}

#[test]
fn corruption_in_an_earlier_segment_drops_everything_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _) = crashed_log(dir.path());
    let segs = segment_files(dir.path());
    let victim = &segs[1];
    flip_byte(victim, 70); // inside the first batch's records
    let first_base: i64 = victim
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();

    let (log, cuts) = open_recover(dir.path(), small_config(1024));
    assert_eq!(cuts.len(), 1, "{cuts:?}");
    assert_eq!(&cuts[0].file, victim);
    assert_eq!(cuts[0].offset, first_base);
    assert_eq!(cuts[0].position, 0);
    assert_eq!(segment_files(dir.path()), segs[..2].to_vec());
    assert_continues_at(&log, first_base);
}

#[test]
fn lost_index_files_are_rebuilt_after_a_clean_close() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_clean(dir.path(), small_config(1024));
    fill(&log, 20, 5, 0);
    let before = read_all(&log, 0);
    log.close().unwrap();
    drop(log);
    let indexes = files_with_ext(dir.path(), "index");
    let timeindexes = files_with_ext(dir.path(), "timeindex");
    assert_eq!(indexes.len(), segment_files(dir.path()).len());
    for p in indexes.iter().chain(&timeindexes) {
        fs::remove_file(p).unwrap();
    }
    let log = open_clean(dir.path(), small_config(1024));
    assert_eq!(read_all(&log, 0), before);
    for offset in (0..100).step_by(7) {
        let res = log.read(offset, 1, ReadLimit::LogEnd).unwrap();
        let h = whole_batches(&res.records);
        assert!(h[0].base_offset <= offset && offset <= h[0].last_offset());
        assert_eq!(
            log.offset_for_timestamp(offset).unwrap(),
            Some((offset, offset))
        );
    }
    // Closing again writes them back.
    log.close().unwrap();
    assert_eq!(
        files_with_ext(dir.path(), "index").len(),
        segment_files(dir.path()).len()
    );
}

#[test]
fn garbage_index_files_are_rebuilt_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_clean(dir.path(), small_config(1024));
    fill(&log, 20, 5, 0);
    let before = read_all(&log, 0);
    let leo = log.log_end_offset();
    log.close().unwrap();
    drop(log);
    for p in files_with_ext(dir.path(), "index") {
        fs::write(&p, b"not an index").unwrap();
    }
    for p in files_with_ext(dir.path(), "timeindex") {
        fs::write(&p, [0xffu8; 7]).unwrap();
    }
    let log = open_clean(dir.path(), small_config(1024));
    assert_eq!(log.log_end_offset(), leo);
    assert_eq!(read_all(&log, 0), before);
    assert_eq!(log.offset_for_timestamp(42).unwrap(), Some((42, 42)));
}

#[test]
fn an_index_pointing_into_the_middle_of_a_batch_does_not_cost_data() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_clean(dir.path(), small_config(1024));
    fill(&log, 20, 5, 0);
    let before = read_all(&log, 0);
    let leo = log.log_end_offset();
    log.close().unwrap();
    drop(log);
    // Well-formed (sorted, inside the file) but wrong: the second entry points
    // into the middle of the first batch.
    for p in files_with_ext(dir.path(), "index") {
        let mut entry = Vec::new();
        for (rel, pos) in [(0u32, 0u32), (1, 100)] {
            entry.extend(rel.to_be_bytes());
            entry.extend(pos.to_be_bytes());
        }
        fs::write(&p, entry).unwrap();
    }
    let (log, cuts) = open_recover(dir.path(), small_config(1024));
    assert!(
        cuts.is_empty(),
        "a bad index must not truncate the log: {cuts:?}"
    );
    assert_eq!(log.log_end_offset(), leo);
    assert_eq!(read_all(&log, 0), before);
}

#[test]
fn indexes_survive_repeated_clean_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_clean(dir.path(), small_config(4096));
    fill(&log, 20, 5, 0);
    log.close().unwrap();
    drop(log);
    let sizes = |dir: &Path| -> Vec<u64> {
        files_with_ext(dir, "index")
            .iter()
            .chain(&files_with_ext(dir, "timeindex"))
            .map(|p| fs::metadata(p).unwrap().len())
            .collect()
    };
    let first = sizes(dir.path());
    assert!(
        first.iter().any(|&s| s > 16),
        "expected several entries: {first:?}"
    );
    for _ in 0..3 {
        let log = open_clean(dir.path(), small_config(4096));
        log.close().unwrap();
        drop(log);
        assert_eq!(
            sizes(dir.path()),
            first,
            "a restart must not lose index entries"
        );
    }
}

#[test]
fn max_timestamp_survives_a_clean_restart() {
    let dir = tempfile::tempdir().unwrap();
    let now = 1_700_000_000_000i64;
    let day = 24 * 3600 * 1000;
    let mut config = small_config(1024);
    config.retention_ms = day;
    let log = open_clean(dir.path(), config.clone());
    // The first segment's newest record is in its first batch; its second
    // batch is older (producer clocks are not monotonic).
    log.append(&batch(5, now - 60_000), 0).unwrap();
    log.append(&batch(5, now - 10 * day), 0).unwrap();
    assert_eq!(segment_files(dir.path()).len(), 1);
    fill(&log, 6, 5, now - 30_000);
    assert!(segment_files(dir.path()).len() > 2);
    assert_eq!(
        log.offset_for_timestamp(now - 60_000).unwrap(),
        Some((0, now - 60_000))
    );
    assert_eq!(log.enforce_retention(now).unwrap(), 0);
    let max = log.max_timestamp();
    log.close().unwrap();
    drop(log);

    let log = open_clean(dir.path(), config);
    assert_eq!(log.max_timestamp(), max);
    assert_eq!(
        log.offset_for_timestamp(now - 60_000).unwrap(),
        Some((0, now - 60_000))
    );
    // Time retention must not see the first segment as older than it is.
    assert_eq!(log.enforce_retention(now).unwrap(), 0);
    assert_eq!(log.log_start_offset(), 0);
}

/// A batch whose records have the given keys, at relative offsets 0, 1, ...
fn keyed(keys: &[String], codec: kafka_protocol::records::Compression) -> Vec<u8> {
    let records: Vec<_> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let mut r = record(i, 1_000 + i as i64, 20, None);
            r.key = Some(bytes::Bytes::from(k.clone()));
            r
        })
        .collect();
    encode(&records, codec)
}

#[test]
fn compacted_batches_with_offset_gaps_survive_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = small_config(1024);
    config.cleanup = basin_log::CleanupPolicy::Compact;
    let log = open_clean(dir.path(), config.clone());
    // Each batch loses its middle records to later batches: compaction
    // leaves batches whose record count is below lastOffsetDelta + 1.
    for (i, codec) in CODECS.into_iter().enumerate() {
        let k = |c: &str| format!("{c}{i}");
        let first = ["a", "b", "c", "d", "e"].map(k);
        let later = ["b", "d"].map(k);
        log.append(&keyed(&first, codec), 0).unwrap();
        log.append(&keyed(&later, codec), 0).unwrap();
    }
    fill(&log, 6, 1, 0); // keys "key-0": roll the segments above
    let stats = log.compact().unwrap();

    assert!(stats.records_removed > 0, "{stats:?}");
    let before = read_all_sparse(&log);
    // Compaction itself kept the survivors: "a", "c" and "e" of each first batch.
    for i in 0..CODECS.len() {
        let base = i as i64 * 7;
        let kept: Vec<_> = before
            .iter()
            .filter(|(o, _)| (base..base + 5).contains(o))
            .map(|(o, k)| (*o - base, k.clone().unwrap()))
            .collect();
        let expect: Vec<(i64, bytes::Bytes)> = [(0, "a"), (2, "c"), (4, "e")]
            .into_iter()
            .map(|(o, c)| (o, bytes::Bytes::from(format!("{c}{i}"))))
            .collect();
        assert_eq!(kept, expect, "batch at {base}");
    }
    let leo = log.log_end_offset();
    drop(log); // crash: every segment is validated on open
    let (log, cuts) = open_recover(dir.path(), config);
    assert!(cuts.is_empty(), "recovery cut compacted data: {cuts:?}");
    assert_eq!(log.log_end_offset(), leo);
    assert_eq!(read_all_sparse(&log), before);
}

/// Every record's offset and key, following batches (offsets may have gaps).
fn read_all_sparse(log: &PartitionLog) -> Vec<(i64, Option<bytes::Bytes>)> {
    let mut out = Vec::new();
    let mut next = log.log_start_offset();
    while next < log.log_end_offset() {
        let res = log.read(next, 1 << 20, ReadLimit::LogEnd).unwrap();
        let headers = whole_batches(&res.records);
        out.extend(decode(&res.records).into_iter().map(|r| (r.offset, r.key)));
        next = headers.last().unwrap().next_offset();
    }
    out
}
