//! Writing record batches to files: Parquet or CSV, to one file or to a
//! folder of numbered part files (`part-00000.parquet`, ...), streaming
//! batch by batch and reporting progress through a callback.

mod csv;
mod parquet;

use std::fs;
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;

use crate::error::{GenError, Result};
pub use parquet::{Codec, ParquetOptions, DEFAULT_ROW_GROUP_ROWS};

/// File format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Apache Parquet (compressed, row groups of about 1M rows).
    Parquet(ParquetOptions),
    /// CSV with a header row and ISO 8601 timestamps.
    Csv,
}

impl Format {
    /// Parquet with the default options.
    pub fn parquet() -> Format {
        Format::Parquet(ParquetOptions::default())
    }

    /// The file-name extension, without the dot.
    pub fn extension(&self) -> &'static str {
        match self {
            Format::Parquet(_) => "parquet",
            Format::Csv => "csv",
        }
    }
}

/// One file, or a folder of part files of at most `rows_per_file` rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// Write everything to this file (replaced if it exists).
    File(PathBuf),
    /// Write `part-NNNNN.EXT` files into this folder (created; must be empty).
    Folder { dir: PathBuf, rows_per_file: u64 },
}

/// Where and how to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub format: Format,
    pub layout: Layout,
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WriteSummary {
    /// Rows written.
    pub rows: u64,
    /// Bytes on disk, over all files.
    pub bytes: u64,
    /// The files, in order.
    pub files: Vec<PathBuf>,
}

/// A file being written.
trait Sink {
    fn write(&mut self, batch: &RecordBatch) -> Result<()>;
    fn finish(self: Box<Self>) -> Result<()>;
}

fn open_sink(format: Format, path: &Path, schema: SchemaRef) -> Result<Box<dyn Sink>> {
    let file = fs::File::create(path).map_err(|e| GenError::io("cannot create", path, e))?;
    let file = std::io::BufWriter::with_capacity(1 << 20, file);
    Ok(match format {
        Format::Parquet(options) => {
            Box::new(parquet::ParquetSink::new(file, path, schema, options)?)
        }
        Format::Csv => Box::new(csv::CsvSink::new(file, path)),
    })
}

/// Write every batch to `output`; `progress` gets the running row count
/// after each batch.
pub fn write_batches<I>(
    batches: I,
    schema: SchemaRef,
    output: &Output,
    progress: &mut dyn FnMut(u64),
) -> Result<WriteSummary>
where
    I: IntoIterator<Item = Result<RecordBatch>>,
{
    let mut writer = PartWriter::new(output, schema)?;
    for batch in batches {
        writer.write(&batch?)?;
        progress(writer.summary.rows);
    }
    writer.finish()
}

/// Spreads batches over files, splitting a batch at a file boundary.
struct PartWriter<'a> {
    output: &'a Output,
    schema: SchemaRef,
    current: Option<Box<dyn Sink>>,
    rows_in_current: u64,
    summary: WriteSummary,
}

impl<'a> PartWriter<'a> {
    fn new(output: &'a Output, schema: SchemaRef) -> Result<PartWriter<'a>> {
        prepare(&output.layout)?;
        let mut writer = PartWriter {
            output,
            schema,
            current: None,
            rows_in_current: 0,
            summary: WriteSummary::default(),
        };
        if let Layout::File(_) = output.layout {
            writer.open_next()?;
        }
        Ok(writer)
    }

    fn rows_per_file(&self) -> u64 {
        match self.output.layout {
            Layout::File(_) => u64::MAX,
            Layout::Folder { rows_per_file, .. } => rows_per_file,
        }
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let mut offset = 0;
        while offset < batch.num_rows() {
            if self.current.is_none() {
                self.open_next()?;
            }
            let room = self.rows_per_file() - self.rows_in_current;
            let take = room.min((batch.num_rows() - offset) as u64) as usize;
            if let Some(sink) = self.current.as_mut() {
                sink.write(&batch.slice(offset, take))?;
            }
            offset += take;
            self.rows_in_current += take as u64;
            self.summary.rows += take as u64;
            if self.rows_in_current >= self.rows_per_file() {
                self.close_current()?;
            }
        }
        Ok(())
    }

    fn open_next(&mut self) -> Result<()> {
        let path = match &self.output.layout {
            Layout::File(path) => path.clone(),
            Layout::Folder { dir, .. } => dir.join(part_name(
                self.summary.files.len(),
                self.output.format.extension(),
            )),
        };
        tracing::debug!(path = %path.display(), "opening output file");
        self.current = Some(open_sink(self.output.format, &path, self.schema.clone())?);
        self.summary.files.push(path);
        self.rows_in_current = 0;
        Ok(())
    }

    fn close_current(&mut self) -> Result<()> {
        if let Some(sink) = self.current.take() {
            sink.finish()?;
        }
        Ok(())
    }

    fn finish(mut self) -> Result<WriteSummary> {
        self.close_current()?;
        for path in &self.summary.files {
            let meta = fs::metadata(path).map_err(|e| GenError::io("cannot stat", path, e))?;
            self.summary.bytes += meta.len();
        }
        Ok(self.summary)
    }
}

/// `part-00042.parquet`.
pub fn part_name(index: usize, extension: &str) -> String {
    format!("part-{index:05}.{extension}")
}

/// Create the parent folder of a file, or the (empty) output folder.
fn prepare(layout: &Layout) -> Result<()> {
    match layout {
        Layout::File(path) => match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => create_dir(parent),
            _ => Ok(()),
        },
        Layout::Folder { dir, rows_per_file } => {
            if *rows_per_file == 0 {
                return Err(GenError::Config("rows per file must be at least 1".into()));
            }
            create_dir(dir)?;
            let mut entries = fs::read_dir(dir).map_err(|e| GenError::io("cannot read", dir, e))?;
            match entries.next() {
                Some(_) => Err(GenError::FolderNotEmpty(dir.clone())),
                None => Ok(()),
            }
        }
    }
}

fn create_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(|e| GenError::io("cannot create folder", dir, e))
}
