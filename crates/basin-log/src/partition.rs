//! A partition log: an ordered run of segments with the offsets, leader
//! epochs, idempotent-producer state, open transactions and high watermark
//! that a Kafka partition replica keeps.
//!
//! Invariants: offsets are dense and increasing across segments; the last
//! stable offset (the first offset of the oldest open transaction, or the
//! high watermark) never exceeds the high watermark, which never exceeds the
//! log end offset; a batch is written to the
//! operating system before `append` returns, and fsynced first when the flush
//! policy is `EveryBatch`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use tracing::{error, info, warn};

use crate::batch::{self, BatchHeader};
use crate::cleaner::{self, CompactionStats};
use crate::config::{CleanupPolicy, FlushPolicy, LogConfig};
use crate::epoch::EpochCache;
use crate::error::{IoContext, LogError, Result};
use crate::producer::{OngoingTxn, ProducerState, RequestCheck};
use crate::segment::{Scan, Segment, Truncation};
use crate::txn::{self, AbortedTxn, ControlType};

const CLEAN_MARKER: &str = ".clean-shutdown";
const RECOVERY_POINT: &str = "recovery-point";
const HIGH_WATERMARK: &str = "high-watermark";
/// Most offsets one segment may span: its indexes hold offsets relative to
/// its base (as in Kafka, which rolls when a relative offset would pass
/// `i32::MAX`).
const MAX_SEGMENT_SPAN: i64 = i32::MAX as i64;

/// Outcome of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: i64,
    pub last_offset: i64,
    /// The request repeated batches already in the log; nothing was written.
    pub duplicate: bool,
    pub log_end_offset: i64,
}

/// Where a read may go up to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadLimit {
    /// Consumers: committed records only.
    HighWatermark,
    /// Followers: everything the leader has.
    LogEnd,
    /// `read_committed` consumers: below the last stable offset, with the
    /// aborted transactions of the range returned.
    LastStable,
}

/// Bytes of whole batches returned by a read, with the partition's offsets.
#[derive(Debug, Clone, Default)]
pub struct ReadResult {
    pub records: Vec<u8>,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    /// For `ReadLimit::LastStable`: aborted transactions overlapping the
    /// returned batches, by first offset.
    pub aborted: Vec<AbortedTxn>,
}

struct Inner {
    config: LogConfig,
    segments: BTreeMap<i64, Segment>,
    log_start: i64,
    high_watermark: i64,
    recovery_point: i64,
    epochs: EpochCache,
    producers: ProducerState,
    unflushed_since: Option<Instant>,
    /// Next offset of the last closed segment at the last compaction.
    compacted_upto: i64,
}

/// One partition's log on disk.
pub struct PartitionLog {
    dir: PathBuf,
    inner: Mutex<Inner>,
}

fn read_number(dir: &Path, name: &str) -> Option<i64> {
    fs::read_to_string(dir.join(name)).ok()?.trim().parse().ok()
}

fn write_number(dir: &Path, name: &str, value: i64) -> Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    fs::write(&tmp, value.to_string()).at(&tmp)?;
    fs::rename(&tmp, dir.join(name)).at(&dir.join(name))
}

fn segment_bases(dir: &Path) -> Result<Vec<i64>> {
    let mut bases = Vec::new();
    for entry in fs::read_dir(dir).at(dir)? {
        let name = entry.at(dir)?.file_name();
        let name = name.to_string_lossy();
        if let Some(base) = name.strip_suffix(".log").and_then(|s| s.parse().ok()) {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

impl Inner {
    fn log_end(&self) -> i64 {
        self.segments
            .values()
            .next_back()
            .map_or(self.log_start, |s| s.next_offset)
    }

    fn active(&mut self) -> &mut Segment {
        self.segments
            .values_mut()
            .next_back()
            .expect("a log always has a segment")
    }

    /// The first offset of the oldest open transaction, capped by the high
    /// watermark.
    fn last_stable(&self) -> i64 {
        self.producers
            .first_unstable_offset()
            .map_or(self.high_watermark, |first| first.min(self.high_watermark))
    }

    /// Aborted transactions overlapping `[from, upper)`, by first offset.
    /// A marker may sit in any later segment, so all of them are searched.
    fn aborted_between(&self, from: i64, upper: i64) -> Vec<AbortedTxn> {
        let first = self
            .segments
            .range(..=from)
            .next_back()
            .map_or(self.log_start, |(b, _)| *b);
        let mut out: Vec<AbortedTxn> = self
            .segments
            .range(first..)
            .flat_map(|(_, s)| s.aborted.iter())
            .filter(|e| e.overlaps(from, upper))
            .copied()
            .collect();
        out.sort_by_key(|e| (e.first_offset, e.producer_id));
        out
    }
}

/// Record the marker `h` in `state`; the index entry when it aborted a
/// transaction that has batches in this partition.
fn apply_marker(
    state: &mut ProducerState,
    h: &BatchHeader,
    marker: ControlType,
) -> Option<AbortedTxn> {
    let first = state.end_txn(h)?;
    (marker == ControlType::Abort).then(|| AbortedTxn {
        producer_id: h.producer_id,
        first_offset: first,
        last_offset: h.base_offset,
        last_stable_offset: state
            .first_unstable_offset()
            .unwrap_or(h.next_offset())
            .min(h.next_offset()),
    })
}

/// The marker type of the control batch at `pos`; an unreadable one counts
/// as an abort, so that records of unknown fate are never shown as committed.
fn marker_at(seg: &Segment, pos: u64, h: &BatchHeader) -> Result<ControlType> {
    let raw = seg.batch_bytes(pos, h)?;
    Ok(txn::control_type(&raw, pos as usize).unwrap_or_else(|e| {
        error!(file = %seg.path.display(), offset = h.base_offset, error = %e,
               "unreadable transaction marker; treating it as an abort");
        ControlType::Abort
    }))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl PartitionLog {
    /// Open (or create) the log in `dir`, recovering after an unclean stop.
    /// Returns what recovery cut off, if anything.
    pub fn open(dir: &Path, config: LogConfig) -> Result<(PartitionLog, Vec<Truncation>)> {
        fs::create_dir_all(dir).at(dir)?;
        let clean = dir.join(CLEAN_MARKER).exists();
        let _ = fs::remove_file(dir.join(CLEAN_MARKER));
        let recovery_point = if clean {
            i64::MAX
        } else {
            read_number(dir, RECOVERY_POINT).unwrap_or(0)
        };
        let (segments, cuts) = Self::open_segments(dir, &config, recovery_point)?;
        let existed = !segments.is_empty();
        let mut inner = Inner {
            segments,
            log_start: 0,
            high_watermark: 0,
            recovery_point: 0,
            epochs: EpochCache::load(dir)?,
            producers: ProducerState::default(),
            unflushed_since: None,
            compacted_upto: -1,
            config,
        };
        if inner.segments.is_empty() {
            let base = read_number(dir, "log-start-offset").unwrap_or(0);
            let seg = Segment::create(dir, base, inner.config.index_interval_bytes)?;
            inner.segments.insert(base, seg);
        }
        inner.log_start = *inner.segments.keys().next().expect("one segment");
        let leo = inner.log_end();
        inner.recovery_point = leo;
        inner.high_watermark = read_number(dir, HIGH_WATERMARK)
            .unwrap_or(0)
            .clamp(inner.log_start, leo);
        inner.epochs.truncate_from_end(leo)?;
        // A missing or torn `.txnindex` is rebuilt by walking the whole log.
        let indexes_intact = inner.segments.values().all(|s| s.txn_index_loaded);
        Self::rebuild_state(dir, &mut inner, indexes_intact)?;
        if !clean && existed {
            info!(dir = %dir.display(), log_end_offset = leo, "recovered partition log after unclean shutdown");
        }
        Ok((
            PartitionLog {
                dir: dir.to_path_buf(),
                inner: Mutex::new(inner),
            },
            cuts,
        ))
    }

    fn open_segments(
        dir: &Path,
        config: &LogConfig,
        recovery_point: i64,
    ) -> Result<(BTreeMap<i64, Segment>, Vec<Truncation>)> {
        let bases = segment_bases(dir)?;
        let mut segments = BTreeMap::new();
        let mut cuts = Vec::new();
        for (i, &base) in bases.iter().enumerate() {
            let next_base = bases.get(i + 1).copied();
            let scan = match next_base {
                Some(next) if next <= recovery_point => Scan::Trust,
                _ => Scan::Validate,
            };
            let (seg, cut) = Segment::open(dir, base, config.index_interval_bytes, scan)?;
            segments.insert(base, seg);
            if let Some(cut) = cut {
                cuts.push(cut);
                // Everything after a corrupt batch is unreachable: drop later segments.
                for &later in &bases[i + 1..] {
                    warn!(dir = %dir.display(), base_offset = later, "removing segment after a corrupt one");
                    let (s, _) =
                        Segment::open(dir, later, config.index_interval_bytes, Scan::Trust)?;
                    s.delete()?;
                }
                break;
            }
        }
        Ok((segments, cuts))
    }

    /// Rebuild the producer and transaction state, and the aborted index
    /// of every segment past the snapshot (past the log start without one),
    /// by walking the batch headers and reading the control batches.
    fn rebuild_state(dir: &Path, inner: &mut Inner, use_snapshot: bool) -> Result<()> {
        let leo = inner.log_end();
        let mut state = ProducerState::load_snapshot(dir)
            .filter(|s| use_snapshot && s.next_offset <= leo && s.next_offset >= inner.log_start)
            .unwrap_or_default();
        let from = state.next_offset.max(inner.log_start);
        let walked: Vec<i64> = inner
            .segments
            .values()
            .filter(|s| s.next_offset > from)
            .map(|s| s.base_offset)
            .collect();
        for base in walked {
            let seg = &inner.segments[&base];
            let mut aborted = Vec::new();
            for (pos, h) in seg.headers_from(from)? {
                if !h.is_control() {
                    state.update(&h);
                } else if let Some(entry) = apply_marker(&mut state, &h, marker_at(seg, pos, &h)?) {
                    aborted.push(entry);
                }
            }
            let seg = inner.segments.get_mut(&base).expect("listed");
            seg.replace_aborted_from(from, aborted)?;
        }
        ProducerState::remove_snapshot(dir);
        inner.producers = state;
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Validate `records` (one or more v2 batches), assign offsets, stamp
    /// `leader_epoch`, and write them. `records` is neither copied nor
    /// modified: the stamped header bytes are written from a side buffer. A
    /// retried idempotent batch is not written again; its original offset
    /// is returned.
    pub fn append(&self, records: &[u8], leader_epoch: i32) -> Result<AppendInfo> {
        let mut inner = self.inner.lock();
        let headers = Self::validate_all(records, inner.config.max_message_bytes)?;
        if let Some(info) = Self::check_duplicates(&inner, &headers)? {
            return Ok(info);
        }
        // Offsets inside a segment are indexed relative to its base: a
        // request must fit in one segment's range (a single batch always does).
        let span: i64 = headers
            .iter()
            .map(|(_, h)| i64::from(h.last_offset_delta) + 1)
            .sum();
        if span > MAX_SEGMENT_SPAN {
            return Err(LogError::CorruptBatch {
                position: 0,
                reason: format!("the batches take {span} offsets, more than one segment can index"),
            });
        }
        let base = inner.log_end();
        let mut next = base;
        let mut stamped = Vec::with_capacity(headers.len());
        for (at, h) in headers {
            let h = BatchHeader {
                base_offset: next,
                leader_epoch,
                ..h
            };
            next = h.next_offset();
            stamped.push((at, h));
        }
        inner.epochs.assign(leader_epoch, base)?;
        self.maybe_roll(&mut inner, records.len(), next)?;
        inner.active().append(records, &stamped)?;
        for (_, h) in &stamped {
            inner.producers.update(h);
        }
        self.after_write(&mut inner)?;
        Ok(AppendInfo {
            base_offset: base,
            last_offset: next - 1,
            duplicate: false,
            log_end_offset: next,
        })
    }

    /// Append the control batch that ends `producer_id`'s transaction
    /// (COMMIT or ABORT), written by the transaction coordinator. An abort
    /// of a transaction with batches here goes into the aborted index.
    pub fn append_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        marker: ControlType,
        coordinator_epoch: i32,
        leader_epoch: i32,
    ) -> Result<AppendInfo> {
        let mut inner = self.inner.lock();
        inner.producers.check_marker(producer_id, producer_epoch)?;
        let mut records = txn::control_batch(
            producer_id,
            producer_epoch,
            marker,
            coordinator_epoch,
            now_ms(),
        );
        let base = inner.log_end();
        batch::stamp(&mut records, base, leader_epoch);
        let h = batch::validate(&records, 0)?;
        inner.epochs.assign(leader_epoch, base)?;
        self.maybe_roll(&mut inner, records.len(), h.next_offset())?;
        inner.active().append(&records, &[(0, h)])?;
        if let Some(entry) = apply_marker(&mut inner.producers, &h, marker) {
            inner.active().add_aborted(entry)?;
        }
        self.after_write(&mut inner)?;
        Ok(AppendInfo {
            base_offset: base,
            last_offset: base,
            duplicate: false,
            log_end_offset: h.next_offset(),
        })
    }

    fn validate_all(records: &[u8], max: usize) -> Result<Vec<(usize, BatchHeader)>> {
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < records.len() {
            let size = batch::peek_size(&records[pos..]).ok_or_else(|| LogError::CorruptBatch {
                position: pos,
                reason: "truncated batch length".into(),
            })?;
            if size > max {
                return Err(LogError::BatchTooLarge { size, max });
            }
            let end = pos + size;
            if end > records.len() {
                return Err(LogError::CorruptBatch {
                    position: pos,
                    reason: format!("batch of {size} bytes runs past the request end"),
                });
            }
            let header = batch::validate(&records[pos..end], pos)?;
            if header.is_control() {
                return Err(LogError::InvalidRecord(
                    "control batches are written only by the transaction coordinator".into(),
                ));
            }
            // Kafka's rule for a produced v2 batch, whatever its codec: one
            // record per offset (only compaction leaves gaps).
            if i64::from(header.record_count) != i64::from(header.last_offset_delta) + 1 {
                return Err(LogError::CorruptBatch {
                    position: pos,
                    reason: format!(
                        "record count {} disagrees with lastOffsetDelta {}",
                        header.record_count, header.last_offset_delta
                    ),
                });
            }
            out.push((pos, header));
            pos = end;
        }
        if out.is_empty() {
            return Err(LogError::CorruptBatch {
                position: 0,
                reason: "no record batch".into(),
            });
        }
        Ok(out)
    }

    fn check_duplicates(
        inner: &Inner,
        headers: &[(usize, BatchHeader)],
    ) -> Result<Option<AppendInfo>> {
        match inner
            .producers
            .check_request(headers.iter().map(|(_, h)| h))?
        {
            RequestCheck::Append => Ok(None),
            RequestCheck::Duplicate {
                base_offset,
                last_offset,
            } => Ok(Some(AppendInfo {
                base_offset,
                last_offset,
                duplicate: true,
                log_end_offset: inner.log_end(),
            })),
        }
    }

    /// Start a new segment if `incoming` bytes would make the active one too
    /// big, or its offsets up to `next_offset` too far from its base.
    fn maybe_roll(&self, inner: &mut Inner, incoming: usize, next_offset: i64) -> Result<()> {
        let (limit, interval) = (
            inner.config.segment_bytes,
            inner.config.index_interval_bytes,
        );
        let active = inner.active();
        let fits = active.size + incoming as u64 <= limit
            && next_offset - active.base_offset <= MAX_SEGMENT_SPAN;
        if active.size == 0 || fits {
            return Ok(());
        }
        active.flush()?;
        active.write_index()?;
        let base = active.next_offset;
        let seg = Segment::create(&self.dir, base, interval)?;
        inner.segments.insert(base, seg);
        Ok(())
    }

    fn after_write(&self, inner: &mut Inner) -> Result<()> {
        match inner.config.flush {
            FlushPolicy::EveryBatch => self.flush_locked(inner),
            _ => {
                inner.unflushed_since.get_or_insert_with(Instant::now);
                Ok(())
            }
        }
    }

    fn flush_locked(&self, inner: &mut Inner) -> Result<()> {
        inner.active().flush()?;
        inner.recovery_point = inner.log_end();
        inner.unflushed_since = None;
        Ok(())
    }

    /// fsync what was written.
    pub fn flush(&self) -> Result<()> {
        let mut inner = self.inner.lock();
        self.flush_locked(&mut inner)?;
        write_number(&self.dir, RECOVERY_POINT, inner.recovery_point)
    }

    /// fsync if the flush policy's interval has passed since the first
    /// unflushed write.
    pub fn flush_if_due(&self, now: Instant) -> Result<bool> {
        let due = {
            let inner = self.inner.lock();
            match (inner.config.flush, inner.unflushed_since) {
                (FlushPolicy::IntervalMs(ms), Some(t)) => {
                    now.duration_since(t).as_millis() as u64 >= ms
                }
                _ => false,
            }
        };
        if due {
            self.flush()?;
        }
        Ok(due)
    }

    /// Read whole batches from `offset`, at most `max_bytes` (at least one batch).
    pub fn read(&self, offset: i64, max_bytes: usize, limit: ReadLimit) -> Result<ReadResult> {
        let inner = self.inner.lock();
        let leo = inner.log_end();
        let lso = inner.last_stable();
        let end = match limit {
            ReadLimit::HighWatermark => inner.high_watermark,
            ReadLimit::LogEnd => leo,
            ReadLimit::LastStable => lso,
        };
        let mut result = ReadResult {
            records: Vec::new(),
            high_watermark: inner.high_watermark,
            last_stable_offset: lso,
            log_start_offset: inner.log_start,
            log_end_offset: leo,
            aborted: Vec::new(),
        };
        if offset < inner.log_start || offset > leo {
            return Err(LogError::OffsetOutOfRange {
                offset,
                start: inner.log_start,
                end: leo,
            });
        }
        let first = inner
            .segments
            .range(..=offset)
            .next_back()
            .map_or(inner.log_start, |(b, _)| *b);
        for seg in inner.segments.range(first..).map(|(_, s)| s) {
            if let Some(bytes) = seg.read(offset, max_bytes, end)? {
                result.records = bytes;
                break;
            }
        }
        if limit == ReadLimit::LastStable {
            if let Some((_, last)) = batch::headers(&result.records).last() {
                result.aborted = inner.aborted_between(offset, last.next_offset());
            }
        }
        Ok(result)
    }

    /// The last stable offset: `read_committed` consumers read below it.
    pub fn last_stable_offset(&self) -> i64 {
        self.inner.lock().last_stable()
    }

    /// Transactions with batches here that no marker has ended yet.
    pub fn ongoing_transactions(&self) -> Vec<OngoingTxn> {
        self.inner.lock().producers.ongoing()
    }

    pub fn log_start_offset(&self) -> i64 {
        self.inner.lock().log_start
    }

    pub fn log_end_offset(&self) -> i64 {
        self.inner.lock().log_end()
    }

    pub fn high_watermark(&self) -> i64 {
        self.inner.lock().high_watermark
    }

    /// Move the high watermark (clamped to the log end; never backwards).
    pub fn set_high_watermark(&self, offset: i64) {
        let mut inner = self.inner.lock();
        let leo = inner.log_end();
        inner.high_watermark = inner.high_watermark.max(offset.min(leo));
    }

    /// Bytes on disk across segments.
    pub fn size_bytes(&self) -> u64 {
        self.inner.lock().segments.values().map(|s| s.size).sum()
    }

    pub fn config(&self) -> LogConfig {
        self.inner.lock().config.clone()
    }

    pub fn set_config(&self, config: LogConfig) {
        self.inner.lock().config = config;
    }

    /// First offset whose record timestamp is at or after `ts`, with that timestamp.
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<(i64, i64)>> {
        let inner = self.inner.lock();
        for seg in inner.segments.values() {
            if let Some(hit) = seg.offset_for_time(ts)? {
                return Ok(Some(hit));
            }
        }
        Ok(None)
    }

    /// Newest record timestamp in the log, -1 when empty.
    pub fn max_timestamp(&self) -> i64 {
        self.inner
            .lock()
            .segments
            .values()
            .map(|s| s.max_timestamp)
            .max()
            .unwrap_or(-1)
    }

    pub fn latest_epoch(&self) -> i32 {
        self.inner.lock().epochs.latest_epoch()
    }

    /// `OffsetForLeaderEpoch`: the largest epoch ≤ `epoch` and its end offset.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        let inner = self.inner.lock();
        inner.epochs.end_offset_for(epoch, inner.log_end())
    }

    /// The epoch → start-offset entries.
    pub fn epoch_entries(&self) -> Vec<(i32, i64)> {
        self.inner.lock().epochs.entries().to_vec()
    }

    /// Remove everything at and after `offset` (a follower diverged).
    pub fn truncate_to(&self, offset: i64) -> Result<()> {
        let mut inner = self.inner.lock();
        let offset = offset.max(inner.log_start);
        let doomed: Vec<i64> = inner.segments.range(offset..).map(|(b, _)| *b).collect();
        for base in doomed {
            if base > inner.log_start {
                inner.segments.remove(&base).expect("listed").delete()?;
            }
        }
        inner.active().truncate_to(offset)?;
        // A batch straddling `offset` was removed whole: the log may now end
        // before `offset`.
        let end = inner.log_end();
        inner.epochs.truncate_from_end(end)?;
        inner.high_watermark = inner.high_watermark.min(end);
        Self::rebuild_state(&self.dir, &mut inner, false)
    }

    /// Delete old segments past `retention.bytes` or `retention.ms`; never
    /// the active segment. Returns how many were deleted.
    pub fn enforce_retention(&self, now_ms: i64) -> Result<usize> {
        let mut inner = self.inner.lock();
        if inner.config.cleanup == CleanupPolicy::Compact {
            return Ok(0);
        }
        let mut total: i64 = inner.segments.values().map(|s| s.size as i64).sum();
        let mut deleted = 0;
        while inner.segments.len() > 1 {
            let (&base, seg) = inner.segments.iter().next().expect("non-empty");
            let too_big = inner.config.retention_bytes >= 0
                && total - seg.size as i64 >= inner.config.retention_bytes;
            let too_old = inner.config.retention_ms >= 0
                && seg.max_timestamp >= 0
                && seg.max_timestamp < now_ms - inner.config.retention_ms;
            if !(too_big || too_old) {
                break;
            }
            let seg = inner.segments.remove(&base).expect("present");
            total -= seg.size as i64;
            info!(file = %seg.path.display(), too_big, too_old, "retention deleted a segment");
            seg.delete()?;
            deleted += 1;
        }
        if deleted > 0 {
            inner.log_start = *inner.segments.keys().next().expect("active remains");
            inner.high_watermark = inner.high_watermark.max(inner.log_start);
            write_number(&self.dir, "log-start-offset", inner.log_start)?;
        }
        Ok(deleted)
    }

    /// Compact closed segments (for `cleanup.policy=compact`): keep only the
    /// latest record of each key. Runs only when a segment was closed since
    /// the last pass.
    pub fn compact(&self) -> Result<CompactionStats> {
        let mut inner = self.inner.lock();
        let mut stats = CompactionStats::default();
        let closed: Vec<i64> = inner.segments.keys().rev().skip(1).copied().collect();
        let upto = closed.first().map_or(-1, |b| inner.segments[b].next_offset);
        if inner.config.cleanup != CleanupPolicy::Compact || upto <= inner.compacted_upto {
            return Ok(stats);
        }
        let latest = cleaner::latest_offsets(inner.segments.values())?;
        for base in closed {
            let seg = &inner.segments[&base];
            let Some((cleaned, removed)) = cleaner::clean_segment(seg, &latest)? else {
                continue;
            };
            stats.bytes_before += seg.size;
            stats.bytes_after += cleaned.len() as u64;
            stats.records_removed += removed;
            stats.segments_rewritten += 1;
            cleaner::replace_file(&self.dir, seg, &cleaned)?;
            let interval = inner.config.index_interval_bytes;
            let (reopened, _) = Segment::open(&self.dir, base, interval, Scan::Validate)?;
            inner.segments.insert(base, reopened);
        }
        inner.compacted_upto = upto;
        if stats.segments_rewritten > 0 {
            info!(dir = %self.dir.display(), ?stats, "compacted log");
        }
        Ok(stats)
    }

    /// Flush everything and write the index files, producer snapshot and the
    /// clean-shutdown marker, so the next open skips validation.
    pub fn close(&self) -> Result<()> {
        let mut inner = self.inner.lock();
        self.flush_locked(&mut inner)?;
        for seg in inner.segments.values() {
            seg.write_index()?;
        }
        inner.producers.next_offset = inner.log_end();
        inner.producers.write_snapshot(&self.dir)?;
        write_number(&self.dir, RECOVERY_POINT, inner.recovery_point)?;
        write_number(&self.dir, HIGH_WATERMARK, inner.high_watermark)?;
        fs::write(self.dir.join(CLEAN_MARKER), b"").at(&self.dir.join(CLEAN_MARKER))
    }
}
