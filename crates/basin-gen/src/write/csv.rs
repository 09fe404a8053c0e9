//! The CSV sink: a header row, ISO 8601 timestamps (`2024-01-01T08:15:00`),
//! empty fields for nulls.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use arrow::csv::{Writer, WriterBuilder};

use super::Sink;
use crate::error::{GenError, Result};

/// Timestamp format of CSV output.
pub const CSV_TIMESTAMP_FORMAT: &str = "%Y-%m-%dT%H:%M:%S";

/// Writes one CSV file.
pub struct CsvSink {
    writer: Writer<BufWriter<File>>,
    path: PathBuf,
}

impl CsvSink {
    pub fn new(file: BufWriter<File>, path: &Path) -> CsvSink {
        let writer = WriterBuilder::new()
            .with_header(true)
            .with_timestamp_format(CSV_TIMESTAMP_FORMAT.to_string())
            .build(file);
        CsvSink {
            writer,
            path: path.to_path_buf(),
        }
    }
}

impl Sink for CsvSink {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.writer.write(batch)?;
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<()> {
        let mut file = self.writer.into_inner();
        file.flush()
            .map_err(|e| GenError::io("cannot write", &self.path, e))
    }
}
