//! Sparse offset and time indexes of one segment, kept in memory and written
//! beside the segment as `.index` (relative offset u32, position u32) and
//! `.timeindex` (timestamp i64, relative offset u32) files.

use std::fs;
use std::path::Path;

use crate::error::{IoContext, Result};

/// One segment's sparse indexes.
#[derive(Debug, Default, Clone)]
pub(crate) struct SegmentIndex {
    /// `(offset - base, byte position)` of a batch start, ascending.
    pub offsets: Vec<(u32, u32)>,
    /// `(max timestamp so far, offset - base)` ascending in both.
    pub times: Vec<(i64, u32)>,
}

impl SegmentIndex {
    /// Record that a batch starting at `rel`/`pos` was appended.
    pub fn add_offset(&mut self, rel: u32, pos: u32) {
        self.offsets.push((rel, pos));
    }

    /// Record the running max timestamp as of `rel`.
    pub fn add_time(&mut self, ts: i64, rel: u32) {
        if self.times.last().is_none_or(|&(last, _)| ts > last) {
            self.times.push((ts, rel));
        }
    }

    /// Position of the last indexed batch starting at or before `rel`.
    pub fn position_before(&self, rel: u32) -> u32 {
        let i = self.offsets.partition_point(|&(r, _)| r <= rel);
        if i == 0 {
            0
        } else {
            self.offsets[i - 1].1
        }
    }

    /// Relative offset of the last time entry with timestamp below `ts`:
    /// every record before it is older than `ts`.
    pub fn offset_before_time(&self, ts: i64) -> u32 {
        let i = self.times.partition_point(|&(t, _)| t < ts);
        if i == 0 {
            0
        } else {
            self.times[i - 1].1
        }
    }

    /// Drop entries at or past `rel` (after a truncation).
    pub fn truncate(&mut self, rel: u32) {
        self.offsets.retain(|&(r, _)| r < rel);
        self.times.retain(|&(_, r)| r < rel);
    }

    pub fn write(&self, offset_path: &Path, time_path: &Path) -> Result<()> {
        let mut buf = Vec::with_capacity(self.offsets.len() * 8);
        for (rel, pos) in &self.offsets {
            buf.extend_from_slice(&rel.to_be_bytes());
            buf.extend_from_slice(&pos.to_be_bytes());
        }
        fs::write(offset_path, &buf).at(offset_path)?;
        buf.clear();
        for (ts, rel) in &self.times {
            buf.extend_from_slice(&ts.to_be_bytes());
            buf.extend_from_slice(&rel.to_be_bytes());
        }
        fs::write(time_path, &buf).at(time_path)
    }

    /// Load both files; `None` when missing or malformed (then the caller rebuilds).
    pub fn load(offset_path: &Path, time_path: &Path, segment_size: u64) -> Option<SegmentIndex> {
        let raw = fs::read(offset_path).ok()?;
        let times_raw = fs::read(time_path).ok()?;
        if raw.len() % 8 != 0 || times_raw.len() % 12 != 0 {
            return None;
        }
        let offsets: Vec<(u32, u32)> = raw
            .chunks_exact(8)
            .map(|c| {
                let rel = u32::from_be_bytes(c[0..4].try_into().expect("4"));
                let pos = u32::from_be_bytes(c[4..8].try_into().expect("4"));
                (rel, pos)
            })
            .collect();
        let times: Vec<(i64, u32)> = times_raw
            .chunks_exact(12)
            .map(|c| {
                let ts = i64::from_be_bytes(c[0..8].try_into().expect("8"));
                (ts, u32::from_be_bytes(c[8..12].try_into().expect("4")))
            })
            .collect();
        let sorted = offsets
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1);
        let in_file = offsets
            .last()
            .is_none_or(|&(_, p)| u64::from(p) < segment_size);
        (sorted && in_file).then_some(SegmentIndex { offsets, times })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_find_the_entry_at_or_before() {
        let mut idx = SegmentIndex::default();
        idx.add_offset(0, 0);
        idx.add_offset(10, 4000);
        idx.add_offset(20, 8000);
        assert_eq!(idx.position_before(0), 0);
        assert_eq!(idx.position_before(15), 4000);
        assert_eq!(idx.position_before(99), 8000);
        idx.add_time(100, 0);
        idx.add_time(90, 10); // not increasing: ignored
        idx.add_time(200, 20);
        assert_eq!(idx.offset_before_time(150), 0);
        assert_eq!(idx.offset_before_time(250), 20);
        idx.truncate(10);
        assert_eq!(idx.position_before(99), 0);
    }

    #[test]
    fn files_round_trip_and_reject_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let (o, t) = (dir.path().join("a.index"), dir.path().join("a.timeindex"));
        let mut idx = SegmentIndex::default();
        idx.add_offset(0, 0);
        idx.add_offset(5, 100);
        idx.add_time(7, 5);
        idx.write(&o, &t).unwrap();
        let back = SegmentIndex::load(&o, &t, 200).unwrap();
        assert_eq!(back.offsets, idx.offsets);
        assert_eq!(back.times, idx.times);
        assert!(
            SegmentIndex::load(&o, &t, 50).is_none(),
            "entry past the file end"
        );
        std::fs::write(&o, [1, 2, 3]).unwrap();
        assert!(SegmentIndex::load(&o, &t, 200).is_none());
    }
}
