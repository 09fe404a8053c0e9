//! The Parquet sink: zstd (level 1) or snappy compression, dictionary
//! encoding, row groups of about one million rows, as in the TLC files.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use super::Sink;
use crate::error::{GenError, Result};

/// Rows per row group by default.
pub const DEFAULT_ROW_GROUP_ROWS: usize = 1_000_000;

/// Column compression codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// zstd level 1: small files, fast enough.
    Zstd,
    /// Snappy: faster, larger.
    Snappy,
    /// No compression.
    None,
}

/// Parquet writer settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParquetOptions {
    pub codec: Codec,
    pub row_group_rows: usize,
}

impl Default for ParquetOptions {
    fn default() -> ParquetOptions {
        ParquetOptions {
            codec: Codec::Zstd,
            row_group_rows: DEFAULT_ROW_GROUP_ROWS,
        }
    }
}

impl ParquetOptions {
    fn properties(&self) -> Result<WriterProperties> {
        let compression = match self.codec {
            Codec::Zstd => Compression::ZSTD(ZstdLevel::try_new(1)?),
            Codec::Snappy => Compression::SNAPPY,
            Codec::None => Compression::UNCOMPRESSED,
        };
        Ok(WriterProperties::builder()
            .set_compression(compression)
            .set_max_row_group_row_count(Some(self.row_group_rows.max(1)))
            .set_created_by(format!("basin-gen {}", env!("CARGO_PKG_VERSION")))
            .build())
    }
}

/// Writes one Parquet file.
pub struct ParquetSink {
    writer: ArrowWriter<BufWriter<File>>,
    path: PathBuf,
}

impl ParquetSink {
    pub fn new(
        file: BufWriter<File>,
        path: &Path,
        schema: SchemaRef,
        options: ParquetOptions,
    ) -> Result<ParquetSink> {
        let writer = ArrowWriter::try_new(file, schema, Some(options.properties()?))?;
        Ok(ParquetSink {
            writer,
            path: path.to_path_buf(),
        })
    }
}

impl Sink for ParquetSink {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.writer.write(batch)?;
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<()> {
        let mut file = self.writer.into_inner()?;
        file.flush()
            .map_err(|e| GenError::io("cannot write", &self.path, e))
    }
}
