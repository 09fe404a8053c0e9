//! `basin gen taxi --out PATH`: stream generated batches into Parquet or
//! CSV files, with a progress bar on a terminal and a one-line summary.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use basin_gen::taxi::taxi_schema;
use basin_gen::{write_batches, Layout, Output, WriteSummary};
use indicatif::{ProgressBar, ProgressStyle};

use super::{human_bytes, TaxiArgs};

/// Generate and write the files, then print the summary to stderr.
pub fn run(args: &TaxiArgs) -> Result<()> {
    let config = args.taxi_config()?;
    let output = args.output()?;
    tracing::info!(rows = config.rows, seed = config.seed, start = %config.start, days = config.days, "generating taxi trips");
    let started = Instant::now();
    let progress = progress_bar(config.rows, "rows");
    let batches = config.batches().context("invalid generator settings")?;
    let written = write_batches(batches, taxi_schema(), &output, &mut |rows| {
        progress.set_position(rows)
    });
    progress.finish_and_clear();
    let summary = written.with_context(|| format!("cannot write {}", target(&output)))?;
    eprintln!("{}", summary_line(&summary, &output, started.elapsed()));
    Ok(())
}

/// The file or folder written to.
fn target(output: &Output) -> String {
    match &output.layout {
        Layout::File(path) => path.display().to_string(),
        Layout::Folder { dir, .. } => dir.display().to_string(),
    }
}

/// `wrote 1000000 rows (22.10 MiB) to trips.parquet in 1.52 s (657894 rows/s)`.
fn summary_line(summary: &WriteSummary, output: &Output, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(1e-9);
    let files = match output.layout {
        Layout::Folder { .. } => format!(" ({} files)", summary.files.len()),
        Layout::File(_) => String::new(),
    };
    format!(
        "wrote {} rows ({}) to {}{files} in {secs:.2} s ({:.0} rows/s)",
        summary.rows,
        human_bytes(summary.bytes),
        target(output),
        summary.rows as f64 / secs,
    )
}

/// A bar on stderr when it is a terminal; hidden otherwise.
pub(super) fn progress_bar(len: u64, unit: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    let template =
        format!("{{bar:40}} {{pos}}/{{len}} {unit} [{{elapsed}}, {{per_sec}}, eta {{eta}}]");
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}
