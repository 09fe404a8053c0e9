//! Writing query results: an aligned table, CSV, JSON lines or Parquet,
//! streamed batch by batch (only the table form holds all rows).

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::str::FromStr;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::csv::WriterBuilder;
use datafusion::arrow::json::LineDelimitedWriter;
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::dataframe::DataFrame;
use datafusion::parquet::arrow::ArrowWriter;
use futures::StreamExt;

use crate::error::{IoContext, Result, SqlError};

/// Output formats of `basin sql`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Csv,
    Json,
    Parquet,
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "table" => Ok(Format::Table),
            "csv" => Ok(Format::Csv),
            "json" | "jsonl" | "ndjson" => Ok(Format::Json),
            "parquet" => Ok(Format::Parquet),
            _ => Err(format!(
                "unknown format {s:?}: use table, csv, json or parquet"
            )),
        }
    }
}

fn arrow_err(e: impl std::fmt::Display) -> SqlError {
    SqlError::Invalid(e.to_string())
}

/// Stream `df` to `sink` (or to `out` for Parquet); returns the row count.
pub async fn write_output(
    df: DataFrame,
    format: Format,
    out: Option<&Path>,
    sink: &mut dyn Write,
) -> Result<u64> {
    match format {
        Format::Table => write_table(df, sink).await,
        Format::Csv => write_stream(df, &mut CsvSink::new(sink)).await,
        Format::Json => write_stream(df, &mut JsonSink(LineDelimitedWriter::new(sink))).await,
        Format::Parquet => {
            let path =
                out.ok_or_else(|| SqlError::Invalid("--format parquet needs --out FILE".into()))?;
            write_parquet(df, path).await
        }
    }
}

async fn write_table(df: DataFrame, sink: &mut dyn Write) -> Result<u64> {
    let batches = df.collect().await?;
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    if !batches.is_empty() && batches[0].num_columns() > 0 {
        let table = pretty_format_batches(&batches).map_err(arrow_err)?;
        writeln!(sink, "{table}").map_err(arrow_err)?;
    }
    Ok(rows as u64)
}

trait BatchSink {
    fn write(&mut self, batch: &RecordBatch) -> Result<()>;
    fn finish(&mut self) -> Result<()>;
}

struct CsvSink<'a> {
    writer: datafusion::arrow::csv::Writer<&'a mut dyn Write>,
}

impl<'a> CsvSink<'a> {
    fn new(sink: &'a mut dyn Write) -> Self {
        CsvSink {
            writer: WriterBuilder::new().with_header(true).build(sink),
        }
    }
}

impl BatchSink for CsvSink<'_> {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.writer.write(batch).map_err(arrow_err)
    }
    fn finish(&mut self) -> Result<()> {
        Ok(())
    }
}

struct JsonSink<'a>(LineDelimitedWriter<&'a mut dyn Write>);

impl BatchSink for JsonSink<'_> {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.0.write(batch).map_err(arrow_err)
    }
    fn finish(&mut self) -> Result<()> {
        self.0.finish().map_err(arrow_err)
    }
}

async fn write_stream(df: DataFrame, sink: &mut dyn BatchSink) -> Result<u64> {
    let mut stream = df.execute_stream().await?;
    let mut rows = 0u64;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        rows += batch.num_rows() as u64;
        sink.write(&batch)?;
    }
    sink.finish()?;
    Ok(rows)
}

/// Write Parquet to a temp file beside `path`, then rename: a reader never
/// sees half a file.
async fn write_parquet(df: DataFrame, path: &Path) -> Result<u64> {
    let tmp = path.with_extension("parquet.tmp");
    let file = File::create(&tmp).at(&tmp)?;
    let schema = df.schema().as_arrow().clone();
    let mut writer =
        ArrowWriter::try_new(file, std::sync::Arc::new(schema), None).map_err(arrow_err)?;
    let mut stream = df.execute_stream().await?;
    let mut rows = 0u64;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        rows += batch.num_rows() as u64;
        writer.write(&batch).map_err(arrow_err)?;
    }
    writer.close().map_err(arrow_err)?;
    std::fs::rename(&tmp, path).at(path)?;
    Ok(rows)
}
