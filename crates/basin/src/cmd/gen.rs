//! `basin gen taxi`: realistic, deterministic NYC yellow-taxi trips from
//! `basin-gen`, written to Parquet or CSV files (`--out`) or produced as
//! JSON lines to a topic (`--topic`) at a paced rate. This module holds the
//! flags and their parsing; `files` and `topic` do the work. `basin gen
//! nexmark` (Nexmark auction events) lives in `nexmark`.

mod files;
mod nexmark;
mod topic;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use basin_gen::taxi::generator::MAX_DAYS;
use basin_gen::taxi::{TaxiConfig, DEFAULT_BATCH_SIZE};
use basin_gen::write::{Codec, ParquetOptions};
use basin_gen::{Format, Layout, Output};
use chrono::{NaiveDate, NaiveDateTime};
use clap::{ArgGroup, Subcommand};

use crate::client::ClientArgs;
pub use nexmark::NexmarkArgs;

/// Rows per part file when `--out` is a folder and `--rows-per-file` is not given.
pub const DEFAULT_ROWS_PER_FILE: u64 = 1_000_000;
/// `--days` for files: a month, like one TLC file.
pub const DEFAULT_DAYS: u32 = 31;
/// `--rate` for a topic.
pub const DEFAULT_RATE: Rate = Rate::PerSecond(1000.0);

/// Data sets `basin gen` can make.
#[derive(Debug, Subcommand)]
pub enum GenCommand {
    /// NYC TLC yellow-taxi trips: to Parquet/CSV files (--out) or as JSON
    /// lines to a topic (--topic).
    Taxi(TaxiArgs),
    /// Nexmark auction benchmark events (people, auctions, bids): to three
    /// JSON lines files (--out DIR) or three topics (--topics).
    Nexmark(NexmarkArgs),
}

/// Flags of `basin gen taxi`.
#[derive(Debug, Clone, clap::Args)]
#[command(group(ArgGroup::new("target").required(true).args(["out", "topic"])))]
pub struct TaxiArgs {
    /// Number of trips (required with --out; with --topic, stop after this many).
    #[arg(long, required_unless_present_any = ["topic"])]
    pub rows: Option<u64>,
    /// Seed of the random generator: the same seed gives the same trips.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// First pickup time: YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS] or now
    /// [default: 2024-01-01 for files, now for a topic].
    #[arg(long, value_parser = parse_start)]
    pub start: Option<Start>,
    /// Days the pickups of a file span, following daily and weekly demand [default: 31].
    #[arg(long, conflicts_with = "topic")]
    pub days: Option<u32>,
    /// Write files here: a file, or a folder of part files when PATH ends
    /// with '/', is a folder, or --rows-per-file is given.
    #[arg(long, value_name = "PATH")]
    pub out: Option<PathBuf>,
    /// File format [default: from the --out extension, else parquet].
    #[arg(long, value_enum, conflicts_with = "topic")]
    pub format: Option<FileFormat>,
    /// Parquet compression [default: zstd].
    #[arg(long, value_enum, conflicts_with = "topic")]
    pub compression: Option<ParquetCompression>,
    /// Write a folder of part files with at most this many rows each.
    #[arg(long, conflicts_with = "topic")]
    pub rows_per_file: Option<u64>,
    /// Rows per Arrow record batch while generating [default: 65536].
    #[arg(long, conflicts_with = "topic")]
    pub batch_size: Option<usize>,
    /// Produce JSON lines to this topic (key = PULocationID, timestamp = pickup).
    #[arg(long)]
    pub topic: Option<String>,
    /// Records per second to a topic: N, N/s, N/m, N/h, or max (unpaced) [default: 1000/s].
    #[arg(long, value_parser = parse_rate, conflicts_with = "out")]
    pub rate: Option<Rate>,
    /// Stop producing after this long, e.g. 60s, 5m, 1h, 500ms.
    #[arg(long, value_parser = parse_duration, conflicts_with_all = ["out", "rows"])]
    pub duration: Option<Duration>,
}

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FileFormat {
    Parquet,
    Csv,
}

/// `--compression`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ParquetCompression {
    Zstd,
    Snappy,
    None,
}

/// `--start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    Now,
    At(NaiveDateTime),
}

/// `--rate`: records per second, or unpaced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    PerSecond(f64),
    Max,
}

/// Run a `basin gen` command.
pub async fn run(client: &ClientArgs, command: GenCommand) -> Result<()> {
    match command {
        GenCommand::Taxi(args) => taxi(client, args).await,
        GenCommand::Nexmark(args) => nexmark::run(client, args).await,
    }
}

async fn taxi(client: &ClientArgs, args: TaxiArgs) -> Result<()> {
    args.check()?;
    match args.topic.clone() {
        Some(topic) => topic::run(client.clone(), args, topic).await,
        None => tokio::task::spawn_blocking(move || files::run(&args))
            .await
            .context("generator thread panicked")?,
    }
}

impl TaxiArgs {
    /// Range checks clap cannot express.
    fn check(&self) -> Result<()> {
        if self.rows == Some(0) {
            bail!("--rows must be at least 1");
        }
        let days = self.days();
        if days == 0 || days > MAX_DAYS {
            bail!("--days must be between 1 and {MAX_DAYS}, got {days}");
        }
        if self.batch_size == Some(0) {
            bail!("--batch-size must be at least 1");
        }
        if self.rows_per_file == Some(0) {
            bail!("--rows-per-file must be at least 1");
        }
        if let Rate::PerSecond(r) = self.rate() {
            if !(r > 0.0 && r.is_finite()) {
                bail!("--rate must be more than 0 records per second");
            }
        }
        Ok(())
    }

    /// `--days`, defaulted.
    fn days(&self) -> u32 {
        self.days.unwrap_or(DEFAULT_DAYS)
    }

    /// `--rate`, defaulted.
    fn rate(&self) -> Rate {
        self.rate.unwrap_or(DEFAULT_RATE)
    }

    /// The first pickup time; `default` when --start is not given.
    fn start_time(&self, default: Start) -> NaiveDateTime {
        match self.start.unwrap_or(default) {
            Start::At(t) => t,
            Start::Now => now(),
        }
    }

    /// The generator configuration for file output.
    fn taxi_config(&self) -> Result<TaxiConfig> {
        let rows = self.rows.context("--rows is required with --out")?;
        let default_start = Start::At(date_time(2024, 1, 1));
        Ok(TaxiConfig {
            rows,
            seed: self.seed,
            start: self.start_time(default_start),
            days: self.days(),
            batch_size: self.batch_size.unwrap_or(DEFAULT_BATCH_SIZE),
        })
    }

    /// Where and how to write files.
    fn output(&self) -> Result<Output> {
        let path = self.out.clone().context("--out is required")?;
        let layout = if self.rows_per_file.is_some() || looks_like_folder(&path) {
            Layout::Folder {
                dir: path.clone(),
                rows_per_file: self.rows_per_file.unwrap_or(DEFAULT_ROWS_PER_FILE),
            }
        } else {
            Layout::File(path.clone())
        };
        let from_name = match layout {
            Layout::File(_) => format_from_extension(&path),
            Layout::Folder { .. } => None,
        };
        let format = match (self.format, from_name) {
            (Some(flag), Some(name)) if flag != name => bail!(
                "--format {} does not match the file name {}",
                format_name(flag),
                path.display()
            ),
            (Some(flag), _) => flag,
            (None, name) => name.unwrap_or(FileFormat::Parquet),
        };
        Ok(Output {
            format: self.file_format(format),
            layout,
        })
    }

    fn file_format(&self, format: FileFormat) -> Format {
        let codec = match self.compression.unwrap_or(ParquetCompression::Zstd) {
            ParquetCompression::Zstd => Codec::Zstd,
            ParquetCompression::Snappy => Codec::Snappy,
            ParquetCompression::None => Codec::None,
        };
        match format {
            FileFormat::Parquet => Format::Parquet(ParquetOptions {
                codec,
                ..ParquetOptions::default()
            }),
            FileFormat::Csv => Format::Csv,
        }
    }
}

fn format_name(format: FileFormat) -> &'static str {
    match format {
        FileFormat::Parquet => "parquet",
        FileFormat::Csv => "csv",
    }
}

/// A path meant as a folder: ends with a separator or is an existing folder.
fn looks_like_folder(path: &Path) -> bool {
    let text = path.as_os_str().to_string_lossy();
    text.ends_with('/') || text.ends_with(std::path::MAIN_SEPARATOR) || path.is_dir()
}

/// `.parquet` / `.csv` → the format; anything else: none.
fn format_from_extension(path: &Path) -> Option<FileFormat> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    match ext.as_str() {
        "parquet" | "pq" => Some(FileFormat::Parquet),
        "csv" => Some(FileFormat::Csv),
        _ => None,
    }
}

fn date_time(year: i32, month: u32, day: u32) -> NaiveDateTime {
    NaiveDate::from_ymd_opt(year, month, day)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .unwrap_or_default()
}

/// The current time (UTC wall clock, whole seconds) as a naive date-time.
pub fn now() -> NaiveDateTime {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.naive_utc())
        .unwrap_or_default()
}

/// Parse `--start`.
pub fn parse_start(s: &str) -> Result<Start, String> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("now") {
        return Ok(Start::Now);
    }
    if let Ok(date) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(Start::At(date.and_hms_opt(0, 0, 0).unwrap_or_default()));
    }
    let normalized = s.replacen(' ', "T", 1);
    for format in ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(&normalized, format) {
            return Ok(Start::At(t));
        }
    }
    Err(format!(
        "expected YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS] or now, got {s:?}"
    ))
}

/// Parse `--rate`: `5000`, `5000/s`, `300/m`, `10/h` or `max`.
pub fn parse_rate(s: &str) -> Result<Rate, String> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("max") || s.eq_ignore_ascii_case("unlimited") {
        return Ok(Rate::Max);
    }
    let bad = || format!("expected N, N/s, N/m or N/h (e.g. 5000/s) or max, got {s:?}");
    let (count, per) = s.split_once('/').unwrap_or((s, "s"));
    let count: f64 = count.trim().parse().map_err(|_| bad())?;
    let seconds = match per.trim() {
        "s" | "sec" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => return Err(bad()),
    };
    if !(count > 0.0 && count.is_finite()) {
        return Err(format!("the rate must be more than 0, got {s:?}"));
    }
    Ok(Rate::PerSecond(count / seconds))
}

/// Parse `--duration`: `60s`, `5m`, `1h`, `500ms` or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let bad = || format!("expected a duration like 60s, 5m, 1h or 500ms, got {s:?}");
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let value: f64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(bad()),
    };
    if !(seconds > 0.0 && seconds.is_finite()) {
        return Err(format!("the duration must be more than 0, got {s:?}"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

use crate::cmd::produce::human_bytes;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<TaxiArgs, clap::Error> {
        let argv = ["basin", "gen", "taxi"].iter().chain(args);
        let cli = Cli::try_parse_from(argv)?;
        match cli.command {
            Command::Gen(GenCommand::Taxi(args)) => Ok(args),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn file_flags() {
        let args = parse(&["--rows", "10", "--out", "x.csv", "--seed", "7"]).unwrap();
        assert_eq!(args.seed, 7);
        assert_eq!(args.output().unwrap().format, Format::Csv);
        let config = args.taxi_config().unwrap();
        assert_eq!(config.start, date_time(2024, 1, 1));
        assert_eq!(config.days, 31);
        let args = parse(&["--rows", "10", "--out", "d/", "--start", "2023-03-04T05:06"]).unwrap();
        assert!(
            matches!(args.output().unwrap().layout, Layout::Folder { rows_per_file, .. } if rows_per_file == DEFAULT_ROWS_PER_FILE)
        );
        assert_eq!(args.output().unwrap().format, Format::parquet());
        let start = args.taxi_config().unwrap().start;
        assert_eq!(start.to_string(), "2023-03-04 05:06:00");
    }

    #[test]
    fn bad_file_flags() {
        assert!(parse(&["--rows", "10"]).is_err(), "needs --out or --topic");
        assert!(parse(&["--out", "x.parquet"]).is_err(), "needs --rows");
        assert!(parse(&["--rows", "1", "--out", "x", "--topic", "t"]).is_err());
        assert!(parse(&["--rows", "1", "--out", "x", "--rate", "5/s"]).is_err());
        assert!(parse(&["--rows", "1", "--out", "x", "--start", "yesterday"]).is_err());
        let args = parse(&["--rows", "0", "--out", "x"]).unwrap();
        assert!(args.check().is_err());
        let args = parse(&["--rows", "5", "--out", "x.csv", "--format", "parquet"]).unwrap();
        assert!(args.output().is_err());
        let args = parse(&["--rows", "5", "--out", "x", "--days", "0"]).unwrap();
        assert!(args.check().is_err());
    }

    #[test]
    fn topic_flags() {
        let args = parse(&["--topic", "trips", "--rate", "300/m", "--duration", "2m"]).unwrap();
        assert_eq!(args.rate(), Rate::PerSecond(5.0));
        assert_eq!(parse(&["--topic", "t"]).unwrap().rate(), DEFAULT_RATE);
        assert_eq!(args.duration, Some(Duration::from_secs(120)));
        assert!(parse(&["--topic", "t", "--rows", "5", "--duration", "1s"]).is_err());
        assert!(parse(&["--topic", "t", "--days", "3"]).is_err());
        assert!(parse(&["--topic", "t", "--format", "csv"]).is_err());
        assert!(parse(&["--topic", "t", "--compression", "snappy"]).is_err());
        assert!(parse(&["--topic", "t", "--batch-size", "9"]).is_err());
    }

    #[test]
    fn value_parsers() {
        assert_eq!(parse_rate("5000/s"), Ok(Rate::PerSecond(5000.0)));
        assert_eq!(parse_rate("7200/h"), Ok(Rate::PerSecond(2.0)));
        assert_eq!(parse_rate("max"), Ok(Rate::Max));
        assert!(parse_rate("0/s").is_err());
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("5/d").is_err());
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5 fortnights").is_err());
        assert_eq!(parse_start("now"), Ok(Start::Now));
        assert_eq!(
            parse_start("2024-02-29"),
            Ok(Start::At(date_time(2024, 2, 29)))
        );
        assert!(parse_start("2024-02-30").is_err());
        assert!(matches!(
            parse_start("2024-01-01 10:20:30"),
            Ok(Start::At(_))
        ));
    }
}
