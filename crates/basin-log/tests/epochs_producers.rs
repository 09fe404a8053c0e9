//! Leader epochs and idempotent-producer state of `PartitionLog`: epochs are
//! stamped into every stored batch and answer `OffsetForLeaderEpoch`;
//! retried producer batches are de-duplicated, out-of-order and fenced ones
//! refused, also after a clean restart and after a crash.

mod common;

use basin_log::{LogError, PartitionLog, ReadLimit};
use common::*;

fn stored_epochs(log: &PartitionLog) -> Vec<(i64, i32)> {
    let mut out = Vec::new();
    let mut next = log.log_start_offset();
    while next < log.log_end_offset() {
        let res = log.read(next, 1 << 20, ReadLimit::LogEnd).unwrap();
        let mut pos = 0;
        for h in whole_batches(&res.records) {
            let raw = &res.records[pos..pos + h.size];
            let epoch = i32::from_be_bytes(raw[12..16].try_into().unwrap());
            assert_eq!(epoch, h.leader_epoch);
            out.push((h.base_offset, epoch));
            pos += h.size;
            next = h.next_offset();
        }
    }
    out
}

#[test]
fn leader_epochs_are_stamped_and_answer_offset_for_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_clean(dir.path(), small_config(1024));
    assert_eq!(log.latest_epoch(), -1);
    assert_eq!(log.end_offset_for_epoch(0), (-1, -1));
    // Epoch 0: offsets 0..15, epoch 1: 15..25, epoch 3: 25..40.
    for (epoch, batches) in [(0, 3), (1, 2), (3, 3)] {
        for _ in 0..batches {
            // The producer's own partitionLeaderEpoch (-1) is overwritten.
            let b = batch(5, 0);
            assert_eq!(b[12..16], (-1i32).to_be_bytes());
            log.append(&b, epoch).unwrap();
        }
    }
    assert_eq!(log.log_end_offset(), 40);
    assert_eq!(log.latest_epoch(), 3);
    assert_eq!(log.epoch_entries(), [(0, 0), (1, 15), (3, 25)]);
    let expect: Vec<(i64, i32)> = (0..8)
        .map(|b| (b * 5, [0, 0, 0, 1, 1, 3, 3, 3][b as usize]))
        .collect();
    assert_eq!(stored_epochs(&log), expect);

    assert_eq!(log.end_offset_for_epoch(-1), (-1, -1));
    assert_eq!(log.end_offset_for_epoch(0), (0, 15));
    assert_eq!(log.end_offset_for_epoch(1), (1, 25));
    assert_eq!(log.end_offset_for_epoch(2), (1, 25));
    assert_eq!(log.end_offset_for_epoch(3), (3, 40));
    assert_eq!(log.end_offset_for_epoch(7), (3, 40));

    // A follower that diverged in epoch 3 truncates to its start: epoch 3 goes.
    log.truncate_to(25).unwrap();
    assert_eq!(log.log_end_offset(), 25);
    assert_eq!(log.latest_epoch(), 1);
    assert_eq!(log.epoch_entries(), [(0, 0), (1, 15)]);
    assert_eq!(log.end_offset_for_epoch(3), (1, 25));
    assert_eq!(stored_epochs(&log), expect[..5].to_vec());

    // Truncating into epoch 1 keeps it but ends it earlier.
    log.truncate_to(20).unwrap();
    assert_eq!(log.epoch_entries(), [(0, 0), (1, 15)]);
    assert_eq!(log.end_offset_for_epoch(1), (1, 20));
    // Truncating to epoch 1's start removes it.
    log.truncate_to(15).unwrap();
    assert_eq!(log.epoch_entries(), [(0, 0)]);
    assert_eq!(log.end_offset_for_epoch(5), (0, 15));

    // New leader epoch 4 starts at the truncated end; epochs persist.
    log.append(&batch(5, 0), 4).unwrap();
    assert_eq!(log.epoch_entries(), [(0, 0), (4, 15)]);
    log.close().unwrap();
    drop(log);
    let log = open_clean(dir.path(), small_config(1024));
    assert_eq!(log.epoch_entries(), [(0, 0), (4, 15)]);
    assert_eq!(log.end_offset_for_epoch(3), (0, 15));
    assert_eq!(log.end_offset_for_epoch(4), (4, 20));
    assert_eq!(read_all(&log, 0).len(), 20);
}

#[test]
fn truncate_to_the_middle_of_a_batch_removes_the_batch_and_later_segments() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_clean(dir.path(), small_config(1024));
    fill(&log, 2, 5, 0);
    // Epoch 2 starts with the batch 10..15.
    for _ in 0..8 {
        log.append(&batch(5, 0), 2).unwrap();
    }
    log.set_high_watermark(50);
    let segs = segment_files(dir.path()).len();
    log.truncate_to(12).unwrap();
    assert_eq!(log.log_end_offset(), 10);
    assert_eq!(log.high_watermark(), 10, "the HW never passes the log end");
    assert_eq!(log.epoch_entries(), [(0, 0)], "epoch 2 has no data left");
    assert_eq!(log.end_offset_for_epoch(2), (0, 10));
    assert!(segment_files(dir.path()).len() < segs);
    let info = log.append(&batch(2, 0), 0).unwrap();
    assert_eq!(info.base_offset, 10);
    assert_eq!(read_all(&log, 0).len(), 12);
    // And it survives a crash.
    drop(log);
    let log = open_clean(dir.path(), small_config(1024));
    assert_eq!(log.log_end_offset(), 12);
}

#[test]
fn retried_batches_are_acknowledged_not_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_clean(dir.path(), small_config(64 * 1024));
    log.append(&batch(2, 0), 0).unwrap(); // offsets 0..2, no producer
    let first = log.append(&idempotent(7, 0, 0, 3), 0).unwrap();
    assert_eq!((first.base_offset, first.last_offset), (2, 4));
    assert!(!first.duplicate);
    let size = log.size_bytes();

    let again = log.append(&idempotent(7, 0, 0, 3), 0).unwrap();
    assert!(again.duplicate);
    assert_eq!((again.base_offset, again.last_offset), (2, 4));
    assert_eq!(again.log_end_offset, 5);
    assert_eq!(log.log_end_offset(), 5);
    assert_eq!(log.size_bytes(), size);

    // The next sequence appends; another producer is independent.
    assert!(!log.append(&idempotent(7, 0, 3, 2), 0).unwrap().duplicate);
    assert!(!log.append(&idempotent(8, 0, 0, 1), 0).unwrap().duplicate);
    assert_eq!(log.log_end_offset(), 8);
    // A retry of an older (but recent) batch is still recognised.
    let old = log.append(&idempotent(7, 0, 0, 3), 0).unwrap();
    assert!(old.duplicate);
    assert_eq!(old.base_offset, 2);
    assert_eq!(log.log_end_offset(), 8);
    // Batches without a producer id are never de-duplicated.
    assert!(!log.append(&batch(2, 0), 0).unwrap().duplicate);
    assert!(!log.append(&batch(2, 0), 0).unwrap().duplicate);
    assert_eq!(log.log_end_offset(), 12);
}

#[test]
fn sequence_gaps_and_stale_epochs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_clean(dir.path(), small_config(64 * 1024));
    log.append(&idempotent(7, 2, 0, 3), 0).unwrap();
    let leo = log.log_end_offset();

    // Gap: 3 is next, 5 is not.
    match log.append(&idempotent(7, 2, 5, 1), 0) {
        Err(LogError::OutOfOrderSequence {
            producer_id,
            expected,
            got,
        }) => assert_eq!((producer_id, expected, got), (7, 3, 5)),
        other => panic!("expected OutOfOrderSequence, got {other:?}"),
    }
    // Overlapping but not an exact retry.
    assert!(matches!(
        log.append(&idempotent(7, 2, 1, 3), 0),
        Err(LogError::OutOfOrderSequence { .. })
    ));
    // Older epoch: fenced.
    match log.append(&idempotent(7, 1, 3, 1), 0) {
        Err(LogError::ProducerFenced {
            producer_id,
            epoch,
            current,
        }) => assert_eq!((producer_id, epoch, current), (7, 1, 2)),
        other => panic!("expected ProducerFenced, got {other:?}"),
    }
    // A new epoch must start at sequence 0.
    assert!(matches!(
        log.append(&idempotent(7, 3, 3, 1), 0),
        Err(LogError::OutOfOrderSequence { expected: 0, .. })
    ));
    assert_eq!(log.log_end_offset(), leo);

    // Bumping the epoch with sequence 0 works, and fences the old epoch.
    log.append(&idempotent(7, 3, 0, 1), 0).unwrap();
    assert!(matches!(
        log.append(&idempotent(7, 2, 3, 1), 0),
        Err(LogError::ProducerFenced { current: 3, .. })
    ));
    // A request mixing a new batch with a bad one writes nothing.
    let mut req = idempotent(7, 3, 1, 1);
    req.extend(idempotent(7, 3, 9, 1));
    assert!(log.append(&req, 0).is_err());
    assert_eq!(log.log_end_offset(), leo + 1);
}

#[test]
fn only_the_last_five_batches_are_remembered() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_clean(dir.path(), small_config(64 * 1024));
    for i in 0..7 {
        log.append(&idempotent(9, 0, i * 2, 2), 0).unwrap();
    }
    let leo = log.log_end_offset();
    for i in 2..7 {
        let info = log.append(&idempotent(9, 0, i * 2, 2), 0).unwrap();
        assert!(info.duplicate, "batch {i}");
        assert_eq!(info.base_offset, i64::from(i) * 2);
    }
    // Too old to recognise: refused, never written twice.
    assert!(log.append(&idempotent(9, 0, 0, 2), 0).is_err());
    assert_eq!(log.log_end_offset(), leo);
}

/// Producer 7 writes batches of 3 over several segments, interleaved with
/// other data; returns the `(base_sequence, base_offset)` of each.
fn produce(log: &PartitionLog) -> Vec<(i32, i64)> {
    let mut out = Vec::new();
    for i in 0..8 {
        log.append(&batch(4, 0), 0).unwrap();
        let info = log.append(&idempotent(7, 1, i * 3, 3), 0).unwrap();
        out.push((i * 3, info.base_offset));
    }
    out
}

fn assert_dedup(log: &PartitionLog, sent: &[(i32, i64)]) {
    let leo = log.log_end_offset();
    for &(seq, base) in &sent[sent.len() - 5..] {
        let info = log.append(&idempotent(7, 1, seq, 3), 0).unwrap();
        assert!(info.duplicate, "sequence {seq}");
        assert_eq!(info.base_offset, base, "sequence {seq}");
        assert_eq!(info.last_offset, base + 2);
    }
    assert!(matches!(
        log.append(&idempotent(7, 1, 100, 1), 0),
        Err(LogError::OutOfOrderSequence { expected: 24, .. })
    ));
    assert!(matches!(
        log.append(&idempotent(7, 0, 24, 1), 0),
        Err(LogError::ProducerFenced { .. })
    ));
    assert_eq!(log.log_end_offset(), leo);
}

#[test]
fn deduplication_survives_a_clean_restart() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_clean(dir.path(), small_config(1024));
    let sent = produce(&log);
    assert!(segment_files(dir.path()).len() > 3);
    log.close().unwrap();
    drop(log);
    let log = open_clean(dir.path(), small_config(1024));
    assert_dedup(&log, &sent);
    // The next batch still appends.
    let info = log.append(&idempotent(7, 1, 24, 3), 0).unwrap();
    assert!(!info.duplicate);
}

#[test]
fn deduplication_survives_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_clean(dir.path(), small_config(1024));
    let sent = produce(&log);
    drop(log); // no close(): no producer snapshot
    let log = open_clean(dir.path(), small_config(1024));
    assert_dedup(&log, &sent);

    // Clean close, reopen, more writes, then a crash: the snapshot of the
    // first run must not hide the later batches.
    log.close().unwrap();
    drop(log);
    let log = open_clean(dir.path(), small_config(1024));
    let info = log.append(&idempotent(7, 1, 24, 3), 0).unwrap();
    drop(log);
    let log = open_clean(dir.path(), small_config(1024));
    let again = log.append(&idempotent(7, 1, 24, 3), 0).unwrap();
    assert!(again.duplicate);
    assert_eq!(again.base_offset, info.base_offset);
}

#[test]
fn a_batch_lost_in_a_crash_is_appended_when_retried() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_clean(dir.path(), small_config(64 * 1024));
    log.append(&idempotent(7, 0, 0, 3), 0).unwrap();
    let lost = log.append(&idempotent(7, 0, 3, 3), 0).unwrap();
    drop(log);
    // The second batch was torn by the crash.
    let seg = segment_files(dir.path()).pop().unwrap();
    let len = std::fs::metadata(&seg).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(len - 7).unwrap();
    drop(f);
    let (log, cuts) = open_recover(dir.path(), small_config(64 * 1024));
    assert_eq!(cuts.len(), 1);
    assert_eq!(cuts[0].offset, lost.base_offset);
    let retry = log.append(&idempotent(7, 0, 3, 3), 0).unwrap();
    assert!(
        !retry.duplicate,
        "a batch cut by recovery is not in the log"
    );
    assert_eq!(retry.base_offset, lost.base_offset);
    // The first batch is still a duplicate.
    assert!(log.append(&idempotent(7, 0, 0, 3), 0).unwrap().duplicate);
}

#[test]
fn requests_of_several_batches_are_checked_batch_by_batch() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_clean(dir.path(), small_config(64 * 1024));
    log.append(&idempotent(7, 0, 0, 2), 0).unwrap(); // offsets 0..2

    // Two new batches in sequence, in one request: both go in.
    let mut req = idempotent(7, 0, 2, 2);
    req.extend(idempotent(7, 0, 4, 3));
    let info = log.append(&req, 0).unwrap();
    assert!(!info.duplicate);
    assert_eq!((info.base_offset, info.last_offset), (2, 6));

    // The same request retried: a duplicate with the original offsets.
    let mut retry = idempotent(7, 0, 2, 2);
    retry.extend(idempotent(7, 0, 4, 3));
    let again = log.append(&retry, 0).unwrap();
    assert!(again.duplicate);
    assert_eq!((again.base_offset, again.last_offset), (2, 6));
    assert_eq!(log.log_end_offset(), 7);

    // A new batch after a good one must still be in sequence.
    let mut gap = idempotent(7, 0, 7, 1);
    gap.extend(idempotent(7, 0, 9, 1));
    assert!(matches!(
        log.append(&gap, 0),
        Err(LogError::OutOfOrderSequence {
            expected: 8,
            got: 9,
            ..
        })
    ));
    assert_eq!(log.log_end_offset(), 7);

    // A retried batch followed by a new one must not acknowledge the new
    // one as written.
    let mut mixed = idempotent(7, 0, 4, 3);
    mixed.extend(idempotent(7, 0, 7, 1));
    assert!(log.append(&mixed, 0).is_err());
    assert_eq!(log.log_end_offset(), 7);
    let info = log.append(&idempotent(7, 0, 7, 1), 0).unwrap();
    assert!(!info.duplicate);
    assert_eq!(info.base_offset, 7);
}
