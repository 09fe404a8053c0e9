//! Retention (by bytes and by record time) and flush policies of
//! `PartitionLog`: only whole old segments are deleted, never the active one,
//! the log start offset moves and reads below it fail; `EveryBatch` and
//! `IntervalMs` flush when they should.

mod common;

use std::fs;
use std::time::{Duration, Instant};

use basin_log::{FlushPolicy, LogError, PartitionLog, ReadLimit};
use common::*;

const DAY: i64 = 24 * 3600 * 1000;
const NOW: i64 = 1_700_000_000_000;

fn segment_sizes(dir: &std::path::Path) -> Vec<u64> {
    segment_files(dir)
        .iter()
        .map(|p| fs::metadata(p).unwrap().len())
        .collect()
}

fn first_base(dir: &std::path::Path) -> i64 {
    segment_files(dir)[0]
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

fn assert_reads_start_at(log: &PartitionLog, start: i64) {
    assert_eq!(log.log_start_offset(), start);
    match log.read(start - 1, 100, ReadLimit::LogEnd) {
        Err(LogError::OffsetOutOfRange { start: s, .. }) => assert_eq!(s, start),
        other => panic!("read below the log start: {other:?}"),
    }
    assert!(matches!(
        log.read(0, 100, ReadLimit::LogEnd),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    let res = log.read(start, 1, ReadLimit::LogEnd).unwrap();
    assert_eq!(whole_batches(&res.records)[0].base_offset, start);
    assert_eq!(res.log_start_offset, start);
    assert_eq!(
        read_all(log, start).len() as i64,
        log.log_end_offset() - start
    );
}

#[test]
fn retention_by_bytes_deletes_the_oldest_segments_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = small_config(1024);
    let log = open_clean(dir.path(), config.clone());
    fill(&log, 30, 5, NOW);
    let sizes = segment_sizes(dir.path());
    assert!(sizes.len() >= 8, "{sizes:?}");
    let total: u64 = sizes.iter().sum();
    assert_eq!(log.size_bytes(), total);

    // Unlimited: nothing goes.
    assert_eq!(log.enforce_retention(NOW).unwrap(), 0);

    let limit = total / 2;
    config.retention_bytes = limit as i64;
    log.set_config(config.clone());
    let deleted = log.enforce_retention(NOW).unwrap();
    assert!(deleted > 0);
    let left = segment_sizes(dir.path());
    assert_eq!(left.len(), sizes.len() - deleted);
    assert_eq!(left[..], sizes[deleted..], "the oldest segments go first");
    let kept: u64 = left.iter().sum();
    assert!(kept >= limit || left.len() == 1);
    // One more deletion would have gone below the limit.
    assert!(
        kept - left[0] < limit,
        "kept {kept} bytes over a {limit} limit"
    );
    assert_eq!(log.size_bytes(), kept);
    assert_reads_start_at(&log, first_base(dir.path()));

    // Even retention.bytes=0 keeps the active segment.
    config.retention_bytes = 0;
    log.set_config(config.clone());
    log.enforce_retention(NOW).unwrap();
    assert_eq!(segment_files(dir.path()).len(), 1);
    let start = first_base(dir.path());
    assert_reads_start_at(&log, start);
    assert_eq!(log.log_end_offset(), 150);
    // Appends go on, and the start offset survives a restart.
    assert_eq!(log.append(&batch(2, NOW), 0).unwrap().base_offset, 150);
    log.close().unwrap();
    drop(log);
    let log = open_clean(dir.path(), config);
    assert_reads_start_at(&log, start);
    assert_eq!(log.log_end_offset(), 152);
}

#[test]
fn retention_by_time_deletes_segments_whose_newest_record_is_old() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = small_config(1024);
    config.retention_ms = DAY;
    let log = open_clean(dir.path(), config.clone());
    // Ten days old, then two days old, then an hour old.
    fill(&log, 8, 5, NOW - 10 * DAY);
    let ancient_end = log.log_end_offset();
    fill(&log, 8, 5, NOW - 2 * DAY);
    let old_end = log.log_end_offset();
    fill(&log, 8, 5, NOW - 3_600_000);
    let segs = segment_files(dir.path());

    // Nothing is old yet as of ten days ago.
    assert_eq!(log.enforce_retention(NOW - 10 * DAY).unwrap(), 0);
    // As of now everything but the last hour goes; segments mixing old and
    // recent records stay.
    let deleted = log.enforce_retention(NOW).unwrap();
    assert!(deleted > 0);
    let start = first_base(dir.path());
    assert!(start <= old_end && start > ancient_end, "start {start}");
    assert_eq!(segment_files(dir.path())[..], segs[deleted..]);
    assert_reads_start_at(&log, start);
    assert_eq!(log.enforce_retention(NOW).unwrap(), 0, "idempotent");

    // When every record is old, the active segment still stays.
    let deleted = log.enforce_retention(NOW + 30 * DAY).unwrap();
    assert!(deleted > 0);
    assert_eq!(segment_files(dir.path()).len(), 1);
    assert_eq!(log.log_end_offset(), 120);
    assert_reads_start_at(&log, first_base(dir.path()));
    assert!(log.high_watermark() >= log.log_start_offset());

    // retention.ms=-1 keeps everything.
    config.retention_ms = -1;
    log.set_config(config);
    fill(&log, 6, 5, 0);
    assert_eq!(log.enforce_retention(NOW).unwrap(), 0);
}

#[test]
fn every_batch_flushes_on_append() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = small_config(1024);
    config.flush = FlushPolicy::EveryBatch;
    let log = open_clean(dir.path(), config.clone());
    fill(&log, 3, 5, 0);
    // Nothing is ever left for the interval flusher.
    let later = Instant::now() + Duration::from_secs(3600);
    assert!(!log.flush_if_due(later).unwrap());
    log.flush().unwrap();
    let rp: i64 = fs::read_to_string(dir.path().join("recovery-point"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(rp, 15);
    // Acknowledged data survives a crash.
    fill(&log, 2, 5, 0);
    drop(log);
    let log = open_clean(dir.path(), config);
    assert_eq!(log.log_end_offset(), 25);
}

#[test]
fn interval_flush_waits_for_its_interval() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = small_config(1024);
    config.flush = FlushPolicy::IntervalMs(1000);
    let log = open_clean(dir.path(), config);
    let rp = || {
        fs::read_to_string(dir.path().join("recovery-point"))
            .ok()
            .map(|s| s.trim().parse::<i64>().unwrap())
    };
    // Nothing written: nothing due.
    let t0 = Instant::now();
    assert!(!log.flush_if_due(t0 + Duration::from_secs(10)).unwrap());

    let before = Instant::now();
    fill(&log, 2, 5, 0);
    let after = Instant::now();
    assert!(!log.flush_if_due(before).unwrap(), "not due yet");
    assert!(!log
        .flush_if_due(after + Duration::from_millis(100))
        .unwrap());
    assert!(!log
        .flush_if_due(before + Duration::from_millis(999))
        .unwrap());
    assert_eq!(rp(), None);
    assert!(log
        .flush_if_due(after + Duration::from_millis(1000))
        .unwrap());
    assert_eq!(rp(), Some(10));
    // Flushed: not due again until the next write.
    assert!(!log.flush_if_due(after + Duration::from_secs(10)).unwrap());

    let before = Instant::now();
    fill(&log, 1, 5, 0);
    let after = Instant::now();
    assert!(!log
        .flush_if_due(before + Duration::from_millis(500))
        .unwrap());
    assert!(log
        .flush_if_due(after + Duration::from_millis(1001))
        .unwrap());
    assert_eq!(rp(), Some(15));
}

#[test]
fn os_flush_policy_never_flushes_on_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_clean(dir.path(), small_config(1024));
    fill(&log, 2, 5, 0);
    assert!(!log
        .flush_if_due(Instant::now() + Duration::from_secs(3600))
        .unwrap());
    assert!(!dir.path().join("recovery-point").exists());
}
