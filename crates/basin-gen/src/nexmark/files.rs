//! Writing a generator's events as JSON lines into `DIR/person.jsonl`,
//! `DIR/auction.jsonl` and `DIR/bid.jsonl` (created or truncated).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::generator::Generator;
use super::ids::EventCounts;
use super::model::EventKind;
use crate::error::{GenError, Result};

/// Progress is reported every this many events.
const PROGRESS_EVERY: u64 = 1 << 16;
/// Write buffer per file.
const BUFFER: usize = 1 << 20;

/// What [`write_files`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NexmarkFiles {
    /// Events per kind (= lines per file).
    pub counts: EventCounts,
    /// Bytes written to all three files.
    pub bytes: u64,
    /// The person, auction and bid files, in that order.
    pub files: Vec<PathBuf>,
}

/// One output file.
struct Sink {
    path: PathBuf,
    writer: BufWriter<File>,
}

impl Sink {
    fn create(dir: &Path, kind: EventKind) -> Result<Sink> {
        let path = dir.join(kind.file_name());
        let file = File::create(&path).map_err(|e| GenError::io("cannot create", &path, e))?;
        Ok(Sink {
            writer: BufWriter::with_capacity(BUFFER, file),
            path,
        })
    }

    fn write(&mut self, line: &[u8]) -> Result<()> {
        self.writer
            .write_all(line)
            .map_err(|e| GenError::io("cannot write", &self.path, e))
    }

    fn finish(mut self) -> Result<PathBuf> {
        self.writer
            .flush()
            .map_err(|e| GenError::io("cannot write", &self.path, e))?;
        Ok(self.path)
    }
}

/// Write every event of `generator` as one line of its kind's file in
/// `dir` (created if missing); `progress` gets the number of events written
/// so far now and then, and at the end.
pub fn write_files(
    generator: Generator,
    dir: &Path,
    progress: &mut dyn FnMut(u64),
) -> Result<NexmarkFiles> {
    std::fs::create_dir_all(dir).map_err(|e| GenError::io("cannot create", dir, e))?;
    let mut sinks = EventKind::ALL
        .iter()
        .map(|&kind| Sink::create(dir, kind))
        .collect::<Result<Vec<Sink>>>()?;
    let mut summary = NexmarkFiles::default();
    let mut line = Vec::with_capacity(512);
    for event in generator {
        line.clear();
        event.write_json(&mut line);
        line.push(b'\n');
        sinks[event.kind().index()].write(&line)?;
        summary.counts.add(event.kind());
        summary.bytes += line.len() as u64;
        if summary.counts.total() % PROGRESS_EVERY == 0 {
            progress(summary.counts.total());
        }
    }
    for sink in sinks {
        summary.files.push(sink.finish()?);
    }
    progress(summary.counts.total());
    Ok(summary)
}
