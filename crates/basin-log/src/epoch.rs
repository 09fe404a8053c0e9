//! The leader-epoch file of a partition: which leader epoch started at which
//! offset. Replication uses it to find where a follower's log diverges from
//! the leader's (Kafka's `OffsetForLeaderEpoch`).
//!
//! File format (as Kafka's `leader-epoch-checkpoint`): a version line `0`,
//! a count line, then one `epoch start_offset` line per entry.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{IoContext, LogError, Result};

#[derive(Debug)]
pub(crate) struct EpochCache {
    path: PathBuf,
    entries: Vec<(i32, i64)>,
}

impl EpochCache {
    pub fn load(dir: &Path) -> Result<EpochCache> {
        let path = dir.join("leader-epoch-checkpoint");
        let entries = match fs::read_to_string(&path) {
            Ok(text) => parse(&text).ok_or_else(|| LogError::CorruptMetadata {
                path: path.clone(),
                reason: "expected version 0, a count and `epoch offset` lines".into(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e).at(&path),
        };
        Ok(EpochCache { path, entries })
    }

    pub fn entries(&self) -> &[(i32, i64)] {
        &self.entries
    }

    pub fn latest_epoch(&self) -> i32 {
        self.entries.last().map_or(-1, |e| e.0)
    }

    /// Note that `epoch` begins at `start_offset`, if it is new.
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> Result<()> {
        if epoch < 0 || epoch <= self.latest_epoch() {
            return Ok(());
        }
        self.entries.push((epoch, start_offset));
        self.persist()
    }

    /// Forget epochs that start at or after `end_offset` (log truncated there).
    pub fn truncate_from_end(&mut self, end_offset: i64) -> Result<()> {
        let before = self.entries.len();
        self.entries.retain(|&(_, start)| start < end_offset);
        if self.entries.len() != before {
            self.persist()?;
        }
        Ok(())
    }

    /// The largest epoch at or below `epoch` and the offset where it ended
    /// (the start of the next epoch, or `log_end` for the latest one).
    /// `(-1, -1)` when no such epoch is known.
    pub fn end_offset_for(&self, epoch: i32, log_end: i64) -> (i32, i64) {
        let i = self.entries.partition_point(|&(e, _)| e <= epoch);
        if i == 0 {
            return (-1, -1);
        }
        let found = self.entries[i - 1].0;
        let end = self.entries.get(i).map_or(log_end, |&(_, start)| start);
        (found, end)
    }

    fn persist(&self) -> Result<()> {
        let mut text = format!("0\n{}\n", self.entries.len());
        for (epoch, start) in &self.entries {
            text.push_str(&format!("{epoch} {start}\n"));
        }
        let tmp = self.path.with_extension("tmp");
        fs::write(&tmp, text).at(&tmp)?;
        fs::File::open(&tmp).and_then(|f| f.sync_all()).at(&tmp)?;
        fs::rename(&tmp, &self.path).at(&self.path)
    }
}

fn parse(text: &str) -> Option<Vec<(i32, i64)>> {
    let mut lines = text.lines();
    if lines.next()?.trim() != "0" {
        return None;
    }
    let count: usize = lines.next()?.trim().parse().ok()?;
    let entries: Option<Vec<(i32, i64)>> = lines
        .take(count)
        .map(|l| {
            let (e, o) = l.trim().split_once(' ')?;
            Some((e.parse().ok()?, o.parse().ok()?))
        })
        .collect();
    entries.filter(|e| e.len() == count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_offsets_follow_kafka_semantics() {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = EpochCache::load(dir.path()).unwrap();
        cache.assign(0, 0).unwrap();
        cache.assign(0, 5).unwrap(); // same epoch: ignored
        cache.assign(2, 10).unwrap();
        cache.assign(5, 30).unwrap();
        assert_eq!(cache.end_offset_for(0, 40), (0, 10));
        assert_eq!(cache.end_offset_for(1, 40), (0, 10));
        assert_eq!(cache.end_offset_for(2, 40), (2, 30));
        assert_eq!(cache.end_offset_for(5, 40), (5, 40));
        let reloaded = EpochCache::load(dir.path()).unwrap();
        assert_eq!(reloaded.entries(), &[(0, 0), (2, 10), (5, 30)]);
        cache.truncate_from_end(30).unwrap();
        assert_eq!(EpochCache::load(dir.path()).unwrap().latest_epoch(), 2);
    }

    #[test]
    fn garbage_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("leader-epoch-checkpoint"), "zz").unwrap();
        let err = EpochCache::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("leader-epoch-checkpoint"), "{err}");
    }
}
