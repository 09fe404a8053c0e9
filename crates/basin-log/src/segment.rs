//! One segment of a partition log: a `.log` file of record batches written
//! back to back, named by its base offset, with its sparse indexes and its
//! aborted-transaction index (`.txnindex`, see `txn.rs`).

use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, ErrorKind, IoSlice, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use kafka_protocol::compression::{Decompressor, Gzip, Lz4, Snappy, Zstd};
use tracing::warn;

use crate::batch::{self, BatchHeader, HEADER_LEN, STAMPED_LEN};
use crate::error::{IoContext, LogError, Result};
use crate::index::SegmentIndex;
use crate::txn::{self, AbortedTxn};

/// How much of a segment to check when it is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scan {
    /// Read every batch and check its CRC; cut the file at the first bad one.
    Validate,
    /// Trust the bytes; load the index files if sane, else walk the headers.
    Trust,
}

/// What recovery cut off the end of a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncation {
    pub file: PathBuf,
    /// First offset that was not kept (the next offset after the last good batch).
    pub offset: i64,
    pub position: u64,
    pub bytes_removed: u64,
    pub reason: String,
}

pub(crate) struct Segment {
    pub base_offset: i64,
    /// Offset after the last batch of this segment.
    pub next_offset: i64,
    pub size: u64,
    pub max_timestamp: i64,
    pub path: PathBuf,
    file: File,
    index: SegmentIndex,
    bytes_since_index: u64,
    index_interval: u64,
    /// Transactions aborted by a marker in this segment, in offset order.
    pub aborted: Vec<AbortedTxn>,
    /// Whether `aborted` came from an intact `.txnindex` file.
    pub txn_index_loaded: bool,
}

/// File name stem of a segment: its base offset, zero-padded.
pub(crate) fn file_stem(base_offset: i64) -> String {
    format!("{base_offset:020}")
}

impl Segment {
    fn txn_index_path(&self) -> PathBuf {
        self.path.with_extension("txnindex")
    }

    fn paths(dir: &Path, base: i64) -> (PathBuf, PathBuf, PathBuf) {
        let stem = file_stem(base);
        (
            dir.join(format!("{stem}.log")),
            dir.join(format!("{stem}.index")),
            dir.join(format!("{stem}.timeindex")),
        )
    }

    fn open_file(path: &Path) -> Result<File> {
        OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)
            .at(path)
    }

    /// Create an empty segment starting at `base`.
    pub fn create(dir: &Path, base: i64, index_interval: u64) -> Result<Segment> {
        let (path, _, _) = Self::paths(dir, base);
        let file = Self::open_file(&path)?;
        file.set_len(0).at(&path)?;
        let seg = Segment {
            base_offset: base,
            next_offset: base,
            size: 0,
            max_timestamp: -1,
            path,
            file,
            index: SegmentIndex::default(),
            bytes_since_index: 0,
            index_interval,
            aborted: Vec::new(),
            txn_index_loaded: true,
        };
        txn::write_index(&seg.txn_index_path(), &[])?;
        Ok(seg)
    }

    /// Open an existing segment, recovering its tail when `scan` says so.
    pub fn open(
        dir: &Path,
        base: i64,
        index_interval: u64,
        scan: Scan,
    ) -> Result<(Segment, Option<Truncation>)> {
        let mut seg = Self::create_handle(dir, base, index_interval)?;
        let (_, ipath, tpath) = Self::paths(dir, base);
        let mut scan = scan;
        if scan == Scan::Trust {
            if let Some(mut index) = SegmentIndex::load(&ipath, &tpath, seg.size) {
                // Resume from the last indexed batch: drop its entries, which
                // `track` adds again, and keep what the index knew before it.
                let (rel, from) = index
                    .offsets
                    .last()
                    .map_or((0, 0), |&(r, p)| (r, u64::from(p)));
                index.truncate(rel);
                // The batches before `from` are not scanned again: their
                // newest timestamp is the running max kept in the time index.
                seg.max_timestamp = index.times.last().map_or(-1, |&(ts, _)| ts);
                seg.index = index;
                // The entry at `from` was just dropped: index that batch again.
                seg.bytes_since_index = index_interval;
                let (end, failure) = seg.walk(from, scan)?;
                match failure {
                    None => {
                        seg.size = end;
                        seg.load_txn_index();
                        return Ok((seg, None));
                    }
                    Some(reason) => {
                        // The index files do not match the log: they are only
                        // a cache, so rebuild them from a full check of the
                        // segment rather than cutting data at their word.
                        warn!(file = %seg.path.display(), reason = %reason,
                              "index files disagree with the segment; rebuilding them");
                        seg = Self::create_handle(dir, base, index_interval)?;
                        scan = Scan::Validate;
                    }
                }
            }
        }
        let cut = seg.scan_from(0, scan)?;
        seg.load_txn_index();
        Ok((seg, cut))
    }

    /// Load the `.txnindex` file, keeping only markers inside the segment.
    fn load_txn_index(&mut self) {
        let loaded = txn::load_index(&self.txn_index_path());
        self.txn_index_loaded = loaded.is_some();
        self.aborted = loaded.unwrap_or_default();
        let end = self.next_offset;
        self.aborted.retain(|e| e.last_offset < end);
    }

    /// Record a transaction aborted by a marker just appended here.
    pub fn add_aborted(&mut self, entry: AbortedTxn) -> Result<()> {
        self.aborted.push(entry);
        txn::append_index(&self.txn_index_path(), &entry)
    }

    /// Replace the entries of markers at or after `from` (recovery rebuilt them).
    pub fn replace_aborted_from(&mut self, from: i64, rebuilt: Vec<AbortedTxn>) -> Result<()> {
        self.aborted.retain(|e| e.last_offset < from);
        self.aborted.extend(rebuilt);
        self.txn_index_loaded = true;
        txn::write_index(&self.txn_index_path(), &self.aborted)
    }

    fn create_handle(dir: &Path, base: i64, index_interval: u64) -> Result<Segment> {
        let (path, _, _) = Self::paths(dir, base);
        let file = Self::open_file(&path)?;
        let size = file.metadata().at(&path)?.len();
        Ok(Segment {
            base_offset: base,
            next_offset: base,
            size,
            max_timestamp: -1,
            path,
            file,
            index: SegmentIndex::default(),
            bytes_since_index: 0,
            index_interval,
            aborted: Vec::new(),
            txn_index_loaded: false,
        })
    }

    /// Walk batches from `from` to the end, rebuilding the index, and cut
    /// the file at the first torn or corrupt batch.
    fn scan_from(&mut self, from: u64, scan: Scan) -> Result<Option<Truncation>> {
        let file_len = self.size;
        let (pos, failure) = self.walk(from, scan)?;
        self.size = pos;
        let Some(reason) = failure else {
            return Ok(None);
        };
        let cut = Truncation {
            file: self.path.clone(),
            offset: self.next_offset,
            position: pos,
            bytes_removed: file_len - pos,
            reason,
        };
        warn!(file = %cut.file.display(), offset = cut.offset, position = cut.position,
              bytes_removed = cut.bytes_removed, reason = %cut.reason,
              "recovery cut a torn or corrupt tail off a segment");
        self.file.set_len(pos).at(&self.path)?;
        self.file.sync_all().at(&self.path)?;
        Ok(Some(cut))
    }

    /// Walk batches from `from` to the end of the file, tracking each in
    /// the index; returns where the walk stopped and why, if before the end.
    fn walk(&mut self, from: u64, scan: Scan) -> Result<(u64, Option<String>)> {
        let file_len = self.size;
        let mut reader = BufReader::with_capacity(1 << 20, self.file.try_clone().at(&self.path)?);
        reader.seek(SeekFrom::Start(from)).at(&self.path)?;
        let mut pos = from;
        let mut buf = vec![0u8; HEADER_LEN];
        let failure = loop {
            if pos == file_len {
                break None;
            }
            match self.read_batch(&mut reader, pos, file_len, scan, &mut buf) {
                Ok(header) => {
                    self.track(&header, pos as u32);
                    pos += header.size as u64;
                }
                Err(reason) => break Some(reason),
            }
        };
        Ok((pos, failure))
    }

    fn read_batch(
        &self,
        reader: &mut BufReader<File>,
        pos: u64,
        file_len: u64,
        scan: Scan,
        buf: &mut Vec<u8>,
    ) -> std::result::Result<BatchHeader, String> {
        if file_len - pos < HEADER_LEN as u64 {
            return Err(format!("torn header: {} bytes left", file_len - pos));
        }
        buf.resize(HEADER_LEN, 0);
        reader.read_exact(buf).map_err(|e| e.to_string())?;
        let header = batch::parse_header(buf, pos as usize).map_err(|e| e.to_string())?;
        if pos + header.size as u64 > file_len {
            return Err(format!(
                "torn batch: {} bytes announced, {} left",
                header.size,
                file_len - pos
            ));
        }
        if header.base_offset < self.next_offset {
            return Err(format!(
                "offset {} goes backwards (expected {})",
                header.base_offset, self.next_offset
            ));
        }
        let rest = header.size - HEADER_LEN;
        if scan == Scan::Trust {
            reader
                .seek_relative(rest as i64)
                .map_err(|e| e.to_string())?;
            return Ok(header);
        }
        buf.resize(header.size, 0);
        reader
            .read_exact(&mut buf[HEADER_LEN..])
            .map_err(|e| e.to_string())?;
        batch::validate(buf, pos as usize).map_err(|e| e.to_string())
    }

    /// Update the in-memory state for a batch just appended or scanned at `pos`.
    fn track(&mut self, header: &BatchHeader, pos: u32) {
        let rel = (header.base_offset - self.base_offset) as u32;
        if self.index.offsets.is_empty() || self.bytes_since_index >= self.index_interval {
            self.index.add_offset(rel, pos);
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += header.size as u64;
        self.max_timestamp = self.max_timestamp.max(header.max_timestamp);
        self.index.add_time(self.max_timestamp, rel);
        self.next_offset = header.next_offset();
    }

    /// Append validated batches: `data` holds them back to back, at the
    /// positions in `headers`. Each is written with its header's base
    /// offset and leader epoch, from a 16-byte side buffer, followed by the
    /// rest of its bytes straight from `data`, which is not copied.
    pub fn append(&mut self, data: &[u8], headers: &[(usize, BatchHeader)]) -> Result<()> {
        let prefixes: Vec<[u8; STAMPED_LEN]> = headers
            .iter()
            .map(|(at, h)| batch::stamped_prefix(&data[*at..], h.base_offset, h.leader_epoch))
            .collect();
        let mut slices = Vec::with_capacity(2 * headers.len());
        for ((at, h), prefix) in headers.iter().zip(&prefixes) {
            slices.push(IoSlice::new(prefix));
            slices.push(IoSlice::new(&data[at + STAMPED_LEN..at + h.size]));
        }
        write_all_vectored(&mut self.file, &mut slices).at(&self.path)?;
        let start = self.size;
        for (at, header) in headers {
            self.track(header, (start + *at as u64) as u32);
        }
        self.size += headers.iter().map(|(_, h)| h.size as u64).sum::<u64>();
        Ok(())
    }

    fn header_at(&self, pos: u64) -> Result<BatchHeader> {
        let mut buf = [0u8; HEADER_LEN];
        self.file.read_exact_at(&mut buf, pos).at(&self.path)?;
        batch::parse_header(&buf, pos as usize)
    }

    /// Position and header of the batch containing `offset`, or of the first
    /// batch after it; `None` when the segment has nothing at or past it.
    pub fn locate(&self, offset: i64) -> Result<Option<(u64, BatchHeader)>> {
        let rel = (offset - self.base_offset).max(0) as u32;
        let mut pos = u64::from(self.index.position_before(rel));
        while pos < self.size {
            let header = self.header_at(pos)?;
            if header.last_offset() >= offset {
                return Ok(Some((pos, header)));
            }
            pos += header.size as u64;
        }
        Ok(None)
    }

    /// Whole batches starting with the one containing `offset`, at most
    /// `max_bytes` (but at least one batch), stopping before `limit` offset.
    pub fn read(&self, offset: i64, max_bytes: usize, limit: i64) -> Result<Option<Vec<u8>>> {
        let Some((pos, first)) = self.locate(offset)? else {
            return Ok(None);
        };
        if first.base_offset >= limit {
            return Ok(None);
        }
        let end = if limit >= self.next_offset {
            self.size
        } else {
            self.locate(limit)?.map_or(self.size, |(p, _)| p)
        };
        let want = (end - pos).min(max_bytes as u64).max(first.size as u64) as usize;
        let mut buf = vec![0u8; want];
        self.file.read_exact_at(&mut buf, pos).at(&self.path)?;
        let complete = batch::headers(&buf)
            .map(|(at, h)| at + h.size)
            .last()
            .unwrap_or(0);
        buf.truncate(complete);
        Ok(Some(buf))
    }

    /// First record at or after `ts`: `(offset, timestamp)`.
    pub fn offset_for_time(&self, ts: i64) -> Result<Option<(i64, i64)>> {
        if self.max_timestamp < ts {
            return Ok(None);
        }
        let rel = self.index.offset_before_time(ts);
        let mut pos = u64::from(self.index.position_before(rel));
        while pos < self.size {
            let header = self.header_at(pos)?;
            if header.max_timestamp >= ts {
                return self.first_record_at_or_after(pos, &header, ts);
            }
            pos += header.size as u64;
        }
        Ok(None)
    }

    fn first_record_at_or_after(
        &self,
        pos: u64,
        header: &BatchHeader,
        ts: i64,
    ) -> Result<Option<(i64, i64)>> {
        let mut buf = vec![0u8; header.size];
        self.file.read_exact_at(&mut buf, pos).at(&self.path)?;
        let hit =
            first_record_in_batch(&buf, header, ts).map_err(|reason| LogError::CorruptBatch {
                position: pos as usize,
                reason,
            })?;
        Ok(Some(
            hit.unwrap_or((header.base_offset, header.max_timestamp)),
        ))
    }

    /// Cut the segment so that `offset` is its next offset. `offset` must
    /// be a batch boundary; a batch straddling it is removed whole.
    pub fn truncate_to(&mut self, offset: i64) -> Result<()> {
        let Some((pos, _)) = self.locate(offset)? else {
            return Ok(());
        };
        self.file.set_len(pos).at(&self.path)?;
        self.size = pos;
        self.index = SegmentIndex::default();
        self.next_offset = self.base_offset;
        self.max_timestamp = -1;
        self.bytes_since_index = 0;
        self.scan_from(0, Scan::Trust)?;
        self.replace_aborted_from(offset, Vec::new())
    }

    /// The whole file (compaction reads closed segments whole).
    pub fn read_all(&self) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; self.size as usize];
        self.file.read_exact_at(&mut buf, 0).at(&self.path)?;
        Ok(buf)
    }

    pub fn flush(&self) -> Result<()> {
        self.file.sync_data().at(&self.path)
    }

    /// Write the index files (on roll and on clean close).
    pub fn write_index(&self) -> Result<()> {
        let dir = self.path.parent().expect("segment in a directory");
        let (_, ipath, tpath) = Self::paths(dir, self.base_offset);
        self.index.write(&ipath, &tpath)?;
        txn::write_index(&self.txn_index_path(), &self.aborted)
    }

    /// Remove the segment's files.
    pub fn delete(self) -> Result<()> {
        let dir = self
            .path
            .parent()
            .expect("segment in a directory")
            .to_path_buf();
        let (log, ipath, tpath) = Self::paths(&dir, self.base_offset);
        let xpath = self.txn_index_path();
        drop(self.file);
        for p in [log, ipath, tpath, xpath] {
            match fs::remove_file(&p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e).at(&p),
                _ => {}
            }
        }
        Ok(())
    }

    /// Positions and headers of all batches from `offset` on.
    pub fn headers_from(&self, offset: i64) -> Result<Vec<(u64, BatchHeader)>> {
        let mut out = Vec::new();
        let mut pos = self.locate(offset)?.map_or(self.size, |(p, _)| p);
        while pos < self.size {
            let header = self.header_at(pos)?;
            out.push((pos, header));
            pos += header.size as u64;
        }
        Ok(out)
    }

    /// The bytes of the batch at `pos` with header `h`.
    pub fn batch_bytes(&self, pos: u64, h: &BatchHeader) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; h.size];
        self.file.read_exact_at(&mut buf, pos).at(&self.path)?;
        Ok(buf)
    }
}

/// Write all of `bufs`, in order, with as few `writev` calls as the kernel
/// allows: short writes resume where they stopped, `EINTR` is retried.
fn write_all_vectored<W: Write>(out: &mut W, mut bufs: &mut [IoSlice<'_>]) -> std::io::Result<()> {
    IoSlice::advance_slices(&mut bufs, 0); // skip leading empty slices
    while !bufs.is_empty() {
        match out.write_vectored(bufs) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `(offset, timestamp)` of the first record of `batch` stamped at or after
/// `ts`. Walks the records without building them: a stored batch's header
/// and CRC were checked on append but its records were not, so no record
/// count, length or header count in them is trusted beyond the bytes present
/// (a full decode would reserve memory for whatever count the producer wrote).
fn first_record_in_batch(
    batch: &[u8],
    header: &BatchHeader,
    ts: i64,
) -> std::result::Result<Option<(i64, i64)>, String> {
    let mut payload = Bytes::copy_from_slice(&batch[HEADER_LEN..]);
    let take = |b: &mut Bytes| Ok(std::mem::take(b));
    let records = match header.compression() {
        0 => Ok(payload),
        1 => <Gzip as Decompressor<Bytes>>::decompress(&mut payload, take),
        2 => <Snappy as Decompressor<Bytes>>::decompress(&mut payload, take),
        3 => <Lz4 as Decompressor<Bytes>>::decompress(&mut payload, take),
        4 => <Zstd as Decompressor<Bytes>>::decompress(&mut payload, take),
        c => return Err(format!("unknown compression codec {c}")),
    }
    .map_err(|e| format!("{e:#}"))?;
    let mut rest = &records[..];
    for _ in 0..header.record_count {
        if rest.is_empty() {
            break; // fewer records than the header claims
        }
        // length, attributes, timestampDelta, offsetDelta, then the rest.
        let len = read_varint(&mut rest)?;
        let len = usize::try_from(len)
            .ok()
            .filter(|&l| l <= rest.len())
            .ok_or_else(|| format!("record length {len} runs past the batch"))?;
        let (record, after) = rest.split_at(len);
        rest = after;
        let mut fields = record.get(1..).ok_or("empty record")?;
        let timestamp = header
            .base_timestamp
            .saturating_add(read_varint(&mut fields)?);
        let delta = read_varint(&mut fields)?;
        if !(0..=i64::from(header.last_offset_delta)).contains(&delta) {
            return Err(format!("record offset delta {delta} is outside the batch"));
        }
        if timestamp >= ts {
            return Ok(Some((header.base_offset + delta, timestamp)));
        }
    }
    Ok(None)
}

/// Read one zig-zag varint (Kafka's varint and varlong) from the front of `buf`.
fn read_varint(buf: &mut &[u8]) -> std::result::Result<i64, String> {
    let mut raw = 0u64;
    for i in 0..10 {
        let (&byte, rest) = buf.split_first().ok_or("truncated varint")?;
        *buf = rest;
        raw |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((raw >> 1) as i64 ^ -((raw & 1) as i64));
        }
    }
    Err("varint longer than 10 bytes".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Takes at most `max` bytes per call, across slices, and fails every
    /// other call with `EINTR`.
    struct Stingy {
        out: Vec<u8>,
        max: usize,
        calls: usize,
    }

    impl Write for Stingy {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }

        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> std::io::Result<usize> {
            self.calls += 1;
            if self.calls.is_multiple_of(2) {
                return Err(ErrorKind::Interrupted.into());
            }
            let before = self.out.len();
            for b in bufs {
                let room = self.max - (self.out.len() - before);
                self.out.extend_from_slice(&b[..b.len().min(room)]);
            }
            Ok(self.out.len() - before)
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn vectored_write_survives_short_writes_and_eintr() {
        let parts: [&[u8]; 5] = [b"", b"0123456789abcdef", b"", b"x", b"the rest of a batch"];
        let mut slices: Vec<IoSlice> = parts.iter().map(|p| IoSlice::new(p)).collect();
        for max in [1, 3, 16, 17, 1000] {
            let mut w = Stingy {
                out: Vec::new(),
                max,
                calls: 0,
            };
            write_all_vectored(&mut w, &mut slices.clone()).unwrap();
            assert_eq!(w.out, parts.concat(), "max {max}");
        }
        let mut w = Stingy {
            out: Vec::new(),
            max: 0,
            calls: 0,
        };
        let err = write_all_vectored(&mut w, &mut slices).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::WriteZero);
    }
}
