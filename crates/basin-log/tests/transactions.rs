//! Transactions in `PartitionLog`: the last stable offset follows the oldest
//! open transaction, `ReadLimit::LastStable` reads stop there and name the
//! aborted transactions of the range, and the aborted index (`.txnindex`)
//! and open transactions survive a clean restart, a crash, lost index files
//! and a torn tail.

mod common;

use std::fs::{self, OpenOptions};

use basin_log::{AbortedTxn, ControlType, LogError, PartitionLog, ReadLimit};
use common::*;
use kafka_protocol::records::{Compression, Record};

/// A transactional batch of `n` records from `pid`.
fn txn_batch(pid: i64, epoch: i16, base_sequence: i32, n: usize) -> Vec<u8> {
    let producer = Producer {
        id: pid,
        epoch,
        base_sequence,
    };
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional: true,
            ..record(i, 1_000, 16, Some(producer))
        })
        .collect();
    encode(&records, Compression::None)
}

/// Producers' sequence numbers, per producer id.
#[derive(Default)]
struct Seqs(std::collections::HashMap<i64, i32>);

impl Seqs {
    fn send(&mut self, log: &PartitionLog, pid: i64, n: usize) -> (i64, i64) {
        let seq = self.0.entry(pid).or_insert(0);
        let info = log.append(&txn_batch(pid, 0, *seq, n), 0).unwrap();
        *seq += n as i32;
        log.set_high_watermark(info.log_end_offset);
        (info.base_offset, info.last_offset)
    }
}

fn end(log: &PartitionLog, pid: i64, marker: ControlType) -> i64 {
    let info = log.append_marker(pid, 0, marker, 0, 0).unwrap();
    log.set_high_watermark(info.log_end_offset);
    info.base_offset
}

/// Offsets of the data records (not markers) a `read_committed` reader
/// would keep, reading from `from` to the last stable offset (one segment
/// per read, as a fetch does).
fn committed_offsets(log: &PartitionLog, from: i64) -> Vec<i64> {
    let mut out = Vec::new();
    let mut next = from;
    loop {
        let res = log.read(next, 1 << 20, ReadLimit::LastStable).unwrap();
        let Some(last) = whole_batches(&res.records).last().map(|h| h.next_offset()) else {
            return out;
        };
        let aborted = res.aborted;
        let kept = decode(&res.records)
            .into_iter()
            .filter(|r| !r.control && r.offset >= next)
            .filter(|r| {
                !aborted.iter().any(|a| {
                    a.producer_id == r.producer_id
                        && (a.first_offset..a.last_offset).contains(&r.offset)
                })
            })
            .map(|r| r.offset);
        out.extend(kept);
        next = last;
    }
}

#[test]
fn the_last_stable_offset_waits_for_the_oldest_open_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_clean(dir.path(), small_config(1 << 20));
    let mut seqs = Seqs::default();
    fill(&log, 1, 2, 0); // 0..2: plain records
    log.set_high_watermark(2);
    assert_eq!(log.last_stable_offset(), 2);
    let (first, _) = seqs.send(&log, 7, 3); // 2..5
    assert_eq!(first, 2);
    assert_eq!(
        log.last_stable_offset(),
        2,
        "an open transaction holds the LSO"
    );
    assert_eq!(log.high_watermark(), 5);
    assert_eq!(committed_offsets(&log, 0), vec![0, 1]);
    let res = log.read(2, 1 << 20, ReadLimit::LastStable).unwrap();
    assert!(res.records.is_empty());
    assert_eq!(res.last_stable_offset, 2);
    // Uncommitted readers see everything.
    let all = log.read(0, 1 << 20, ReadLimit::HighWatermark).unwrap();
    assert_eq!(decode(&all.records).len(), 5);

    let marker = end(&log, 7, ControlType::Commit);
    assert_eq!(marker, 5);
    assert_eq!(log.last_stable_offset(), 6);
    assert_eq!(committed_offsets(&log, 0), vec![0, 1, 2, 3, 4]);
    let res = log.read(0, 1 << 20, ReadLimit::LastStable).unwrap();
    assert!(res.aborted.is_empty());
    let headers = whole_batches(&res.records);
    assert!(
        headers.last().unwrap().is_control(),
        "markers are served as stored"
    );
    assert!(log.ongoing_transactions().is_empty());
}

#[test]
fn interleaved_transactions_abort_and_commit_independently() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_clean(dir.path(), small_config(1 << 20));
    let mut seqs = Seqs::default();
    seqs.send(&log, 1, 2); // 0..2  pid 1
    seqs.send(&log, 2, 2); // 2..4  pid 2
    seqs.send(&log, 1, 2); // 4..6  pid 1
    assert_eq!(log.last_stable_offset(), 0);
    let ongoing = log.ongoing_transactions();
    assert_eq!(
        ongoing
            .iter()
            .map(|t| (t.producer_id, t.first_offset))
            .collect::<Vec<_>>(),
        vec![(1, 0), (2, 2)]
    );
    assert_eq!(end(&log, 1, ControlType::Abort), 6);
    assert_eq!(log.last_stable_offset(), 2, "pid 2 is still open");
    let res = log.read(0, 1 << 20, ReadLimit::LastStable).unwrap();
    assert_eq!(
        res.aborted,
        vec![AbortedTxn {
            producer_id: 1,
            first_offset: 0,
            last_offset: 6,
            last_stable_offset: 2,
        }]
    );
    assert!(committed_offsets(&log, 0).is_empty());
    seqs.send(&log, 2, 1); // 7
    assert_eq!(end(&log, 2, ControlType::Commit), 8);
    assert_eq!(log.last_stable_offset(), 9);
    assert_eq!(committed_offsets(&log, 0), vec![2, 3, 7]);
    // A read starting after the abort marker does not name it.
    let res = log.read(7, 1 << 20, ReadLimit::LastStable).unwrap();
    assert!(res.aborted.is_empty());
    // A read inside the aborted range does.
    let res = log.read(4, 1 << 20, ReadLimit::LastStable).unwrap();
    assert_eq!(res.aborted.len(), 1);
}

#[test]
fn markers_fence_older_epochs_and_clients_cannot_write_them() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_clean(dir.path(), small_config(1 << 20));
    log.append(&txn_batch(5, 0, 0, 2), 0).unwrap();
    // The coordinator aborts with a bumped epoch: the zombie is fenced.
    log.append_marker(5, 1, ControlType::Abort, 0, 0).unwrap();
    let err = log.append(&txn_batch(5, 0, 2, 1), 0).unwrap_err();
    assert!(matches!(err, LogError::ProducerFenced { .. }), "{err}");
    let err = log
        .append_marker(5, 0, ControlType::Commit, 0, 0)
        .unwrap_err();
    assert!(matches!(err, LogError::ProducerFenced { .. }), "{err}");
    // The new epoch starts at sequence 0.
    log.append(&txn_batch(5, 1, 0, 1), 0).unwrap();
    // A produced control batch is refused.
    let control = basin_log::txn::control_batch(5, 1, ControlType::Commit, 0, 0);
    let err = log.append(&control, 0).unwrap_err();
    assert!(matches!(err, LogError::InvalidRecord(_)), "{err}");
}

/// A log with an aborted transaction spanning segments, a committed one and
/// one still open; returns the expected committed offsets and the aborted
/// index.
fn mixed_log(log: &PartitionLog) -> (Vec<i64>, Vec<AbortedTxn>) {
    let mut seqs = Seqs::default();
    for _ in 0..6 {
        seqs.send(log, 1, 5); // pid 1: aborted, 0..30
        seqs.send(log, 2, 5); // pid 2: committed
    }
    end(log, 1, ControlType::Abort);
    end(log, 2, ControlType::Commit);
    seqs.send(log, 3, 5); // pid 3: open
    let committed = committed_offsets(log, 0);
    let aborted = log.read(0, 1 << 20, ReadLimit::LastStable).unwrap().aborted;
    assert_eq!(committed.len(), 30);
    assert_eq!(aborted.len(), 1);
    (committed, aborted)
}

fn assert_state(log: &PartitionLog, committed: &[i64], aborted: &[AbortedTxn]) {
    assert_eq!(
        log.last_stable_offset(),
        62,
        "pid 3's transaction is still open"
    );
    assert_eq!(committed_offsets(log, 0), committed);
    let mut all = Vec::new();
    let mut next = 0;
    while next < log.last_stable_offset() {
        let res = log.read(next, 300, ReadLimit::LastStable).unwrap();
        all.extend(res.aborted);
        next = whole_batches(&res.records).last().unwrap().next_offset();
    }
    all.dedup();
    assert_eq!(all, aborted);
}

#[test]
fn transaction_state_survives_a_clean_restart_a_crash_and_lost_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_config(1024);
    let log = open_clean(dir.path(), config.clone());
    let (committed, aborted) = mixed_log(&log);
    assert!(segment_files(dir.path()).len() > 3);
    log.close().unwrap();
    drop(log);
    let txnindexes = files_with_ext(dir.path(), "txnindex");
    assert_eq!(txnindexes.len(), segment_files(dir.path()).len());
    let sizes: u64 = txnindexes
        .iter()
        .map(|p| fs::metadata(p).unwrap().len())
        .sum();
    assert_eq!(
        sizes, 34,
        "one 34-byte entry for the one aborted transaction"
    );

    let log = open_clean(dir.path(), config.clone());
    assert_state(&log, &committed, &aborted);
    drop(log); // crash: no close

    let log = open_clean(dir.path(), config.clone());
    assert_state(&log, &committed, &aborted);
    drop(log);

    for p in files_with_ext(dir.path(), "txnindex") {
        fs::remove_file(p).unwrap();
    }
    let log = open_clean(dir.path(), config.clone());
    assert_state(&log, &committed, &aborted);
    log.close().unwrap();
    drop(log);

    // A torn index file after a clean close is rebuilt, not trusted.
    let last = files_with_ext(dir.path(), "txnindex").pop().unwrap();
    fs::write(&last, [1u8; 20]).unwrap();
    let log = open_clean(dir.path(), config);
    assert_state(&log, &committed, &aborted);
}

#[test]
fn a_marker_torn_off_by_a_crash_leaves_its_transaction_open() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_config(1 << 20);
    let log = open_clean(dir.path(), config.clone());
    let mut seqs = Seqs::default();
    seqs.send(&log, 1, 3); // 0..3
    end(&log, 1, ControlType::Abort); // 3
    seqs.send(&log, 2, 3); // 4..7
    end(&log, 2, ControlType::Abort); // 7
    assert_eq!(log.last_stable_offset(), 8);
    drop(log);
    // Tear the last marker in half.
    let seg = segment_files(dir.path()).pop().unwrap();
    let len = fs::metadata(&seg).unwrap().len();
    let marker_len = basin_log::txn::control_batch(2, 0, ControlType::Abort, 0, 0).len() as u64;
    OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(len - marker_len / 2)
        .unwrap();
    let (log, cuts) = open_recover(dir.path(), config);
    assert_eq!(cuts.len(), 1, "{cuts:?}");
    assert_eq!(cuts[0].offset, 7);
    log.set_high_watermark(log.log_end_offset());
    assert_eq!(log.last_stable_offset(), 4, "pid 2's abort was lost");
    let res = log.read(0, 1 << 20, ReadLimit::LastStable).unwrap();
    assert_eq!(res.aborted.len(), 1);
    assert_eq!(
        (res.aborted[0].first_offset, res.aborted[0].last_offset),
        (0, 3)
    );
    // The coordinator aborts it again after the restart.
    end(&log, 2, ControlType::Abort);
    assert_eq!(log.last_stable_offset(), 8);
    assert!(committed_offsets(&log, 0).is_empty());
}

#[test]
fn truncation_reopens_a_transaction_whose_marker_it_removed() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_clean(dir.path(), small_config(1 << 20));
    let mut seqs = Seqs::default();
    seqs.send(&log, 1, 3); // 0..3
    end(&log, 1, ControlType::Abort); // 3
    assert_eq!(log.last_stable_offset(), 4);
    log.truncate_to(3).unwrap();
    assert_eq!(log.ongoing_transactions().len(), 1);
    assert_eq!(log.last_stable_offset(), 0);
    let res = log.read(0, 1 << 20, ReadLimit::LastStable).unwrap();
    assert!(res.records.is_empty() && res.aborted.is_empty());
}
