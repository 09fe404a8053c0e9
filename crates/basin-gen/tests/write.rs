//! Writers end to end: Parquet read back with the parquet crate (schema,
//! row count, row groups, compression, values), CSV with a header and ISO
//! timestamps, folders of numbered parts, and refusing a non-empty folder.

use std::fs::File;

use arrow::array::RecordBatch;
use basin_gen::write::{Codec, ParquetOptions};
use basin_gen::{taxi_schema, write_batches, Format, GenError, Layout, Output, TaxiConfig};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;

fn config(rows: u64) -> TaxiConfig {
    let mut config = TaxiConfig::new(rows, 11);
    config.batch_size = 4_000;
    config
}

fn write(config: &TaxiConfig, output: &Output) -> basin_gen::Result<basin_gen::WriteSummary> {
    write_batches(config.batches()?, taxi_schema(), output, &mut |_| {})
}

#[test]
fn parquet_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trips.parquet");
    let options = ParquetOptions {
        codec: Codec::Zstd,
        row_group_rows: 10_000,
    };
    let output = Output {
        format: Format::Parquet(options),
        layout: Layout::File(path.clone()),
    };
    let mut seen = Vec::new();
    let summary = write_batches(
        config(25_000).batches().unwrap(),
        taxi_schema(),
        &output,
        &mut |r| seen.push(r),
    )
    .unwrap();
    assert_eq!(summary.rows, 25_000);
    assert_eq!(seen.last(), Some(&25_000));
    assert_eq!(summary.bytes, std::fs::metadata(&path).unwrap().len());

    let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap()).unwrap();
    let meta = builder.metadata().clone();
    assert_eq!(meta.file_metadata().num_rows(), 25_000);
    assert_eq!(meta.num_row_groups(), 3);
    assert!(matches!(
        meta.row_group(0).column(0).compression(),
        Compression::ZSTD(_)
    ));
    assert_eq!(builder.schema().fields(), taxi_schema().fields());
    let read: Vec<RecordBatch> = builder.build().unwrap().map(Result::unwrap).collect();
    let read = arrow::compute::concat_batches(&taxi_schema(), &read).unwrap();
    let written: Vec<RecordBatch> = config(25_000)
        .batches()
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let written = arrow::compute::concat_batches(&taxi_schema(), &written).unwrap();
    assert_eq!(read, written);
}

#[test]
fn csv_has_header_and_iso_times() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/trips.csv");
    let output = Output {
        format: Format::Csv,
        layout: Layout::File(path.clone()),
    };
    write(&config(1_000), &output).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1_001);
    assert_eq!(lines[0], basin_gen::taxi::COLUMNS.join(","));
    let first: Vec<&str> = lines[1].split(',').collect();
    assert_eq!(first.len(), 19);
    assert!(first[1].starts_with("2024-01-01T00:"), "{}", first[1]);
    assert_eq!(first[1].len(), "2024-01-01T00:00:00".len());
    // The null block shows as empty fields.
    assert!(lines.iter().any(|l| l.contains(",,")));
}

#[test]
fn folder_of_parts() {
    let dir = tempfile::tempdir().unwrap();
    let parts = dir.path().join("parts");
    let output = Output {
        format: Format::parquet(),
        layout: Layout::Folder {
            dir: parts.clone(),
            rows_per_file: 4_500,
        },
    };
    let summary = write(&config(10_000), &output).unwrap();
    let names: Vec<String> = summary
        .files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "part-00000.parquet",
            "part-00001.parquet",
            "part-00002.parquet"
        ]
    );
    let rows: i64 = summary
        .files
        .iter()
        .map(|p| {
            let b = ParquetRecordBatchReaderBuilder::try_new(File::open(p).unwrap()).unwrap();
            b.metadata().file_metadata().num_rows()
        })
        .collect::<Vec<_>>()
        .iter()
        .sum();
    assert_eq!(rows, 10_000);
    let again = write(&config(10), &output);
    assert!(
        matches!(again, Err(GenError::FolderNotEmpty(_))),
        "{again:?}"
    );
}
