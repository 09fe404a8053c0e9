//! `basin pipeline run FILE.sql`: run a SQL pipeline as a stream job over
//! live topics (the default) or as a batch job over what the sources hold
//! now. Stream jobs checkpoint to the data dir and resume from their last
//! checkpoint when run again.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use basin_stream::pipeline::{JobSummary, Mode, Pipeline, RunOptions};
use basin_stream::runtime::{JobStats, StageStats};
use clap::{Args, Subcommand, ValueEnum};
use std::sync::Arc;
use tracing::info;

use crate::client::ClientArgs;
use crate::cmd::gen::parse_duration;

/// Pipeline commands.
#[derive(Debug, Subcommand)]
pub enum PipelineCommand {
    /// Run a pipeline file in the foreground until its input ends
    /// (--bounded or batch mode) or Ctrl-C.
    Run(RunArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ModeArg {
    Stream,
    Batch,
}

/// Flags of `basin pipeline run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The pipeline: SQL statements (sources, sinks, INSERT INTO ... SELECT);
    /// several files run as one, in order (e.g. shared source definitions first).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// stream: process events as they arrive, with watermarks and
    /// checkpoints; batch: run once over what the sources hold now.
    #[arg(long, value_enum, default_value = "stream")]
    pub mode: ModeArg,
    /// Parallel subtasks per job (source tasks share the topic's partitions;
    /// keyed stages are split by key hash).
    #[arg(long, default_value_t = 1)]
    pub parallelism: usize,
    /// Time between checkpoints, e.g. 10s, 500ms.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub checkpoint_interval: Duration,
    /// Stream mode: stop once everything the topics held at start is
    /// processed (the watermark then passes the end of the data).
    #[arg(long)]
    pub bounded: bool,
    /// Stream mode: drop earlier checkpoints and start from the beginning.
    #[arg(long)]
    pub reset: bool,
    /// Log each job's status (rows/s, watermark and its lag, last
    /// checkpoint, per-stage rows and backpressure) this often.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub status_interval: Duration,
    /// Count the rows of bare SELECTs instead of printing them (benchmarks).
    #[arg(long)]
    pub discard: bool,
    /// Name of the pipeline's checkpoint folder [default: the last file's stem].
    #[arg(long)]
    pub name: Option<String>,
    /// Folder holding the catalog, the lake and pipeline checkpoints.
    #[arg(long, env = "BASIN_DATA_DIR", default_value = "./basin-data")]
    pub data_dir: PathBuf,
}

pub async fn run(client: &ClientArgs, command: PipelineCommand) -> Result<()> {
    match command {
        PipelineCommand::Run(args) => run_file(client, args).await,
    }
}

async fn run_file(client: &ClientArgs, args: RunArgs) -> Result<()> {
    let text = read_files(&args.files)?;
    let file = args.files.last().expect("clap requires a file");
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create data dir {}", args.data_dir.display()))?;
    // Topic tables without a 'brokers' option use --brokers.
    std::env::set_var("BASIN_BROKERS", &client.brokers);
    let name = args.name.clone().unwrap_or_else(|| {
        let stem = file.file_stem().unwrap_or_default();
        stem.to_string_lossy().into_owned()
    });
    let options = RunOptions {
        mode: match args.mode {
            ModeArg::Stream => Mode::Stream,
            ModeArg::Batch => Mode::Batch,
        },
        data_dir: args.data_dir.clone(),
        name,
        parallelism: args.parallelism,
        checkpoint_interval: args.checkpoint_interval,
        bounded: args.bounded,
        reset: args.reset,
        discard: args.discard,
    };
    let started = Instant::now();
    let at = || format!("in {}", file.display());
    let pipeline = Pipeline::open(&text, &options).await.with_context(at)?;
    let running = pipeline.start(&options).await.with_context(at)?;
    let jobs: Vec<_> = running
        .summary
        .jobs
        .iter()
        .map(|j| (j.name.clone(), j.stats.clone()))
        .collect();
    let status = tokio::spawn(report_status(jobs, args.status_interval));
    let outcome = running.wait().await;
    status.abort();
    let summary = outcome.with_context(at)?;
    for job in &summary.jobs {
        eprintln!("{}", describe(job, started.elapsed()));
    }
    Ok(())
}

/// The files' statements, in order, as one script.
fn read_files(files: &[PathBuf]) -> Result<String> {
    let mut text = String::new();
    for file in files {
        let part = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        text.push_str(&part);
        text.push_str("\n;\n");
    }
    Ok(text)
}

/// Every `every`, one status line per job and per stage.
async fn report_status(jobs: Vec<(String, Arc<JobStats>)>, every: Duration) {
    let mut last: Vec<(u64, Instant)> = jobs.iter().map(|_| (0, Instant::now())).collect();
    let mut ticker = tokio::time::interval(every);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        for ((name, stats), (seen, at)) in jobs.iter().zip(last.iter_mut()) {
            let rows = stats.rows_in.load(Ordering::Relaxed);
            let rate = (rows - *seen) as f64 / at.elapsed().as_secs_f64().max(1e-9);
            (*seen, *at) = (rows, Instant::now());
            info!(job = %name, "{}", job_status(stats, rate));
            for (i, stage) in stats.stages.iter().enumerate() {
                info!(job = %name, "  stage {i} {}", stage_status(stage));
            }
        }
    }
}

fn job_status(stats: &JobStats, rate: f64) -> String {
    let now = now_ms();
    let watermark = stats.watermark.load(Ordering::Relaxed);
    let checkpoint = stats.last_checkpoint_ms.load(Ordering::Relaxed);
    format!(
        "{rate:.0} rows/s in, {} rows out, watermark {}, last checkpoint {}, {} late rows dropped",
        stats.rows_out.load(Ordering::Relaxed),
        watermark_text(watermark, now),
        if checkpoint > 0 {
            format!("{:.1} s ago", (now - checkpoint) as f64 / 1000.0)
        } else {
            "none yet".into()
        },
        stats.late_rows.load(Ordering::Relaxed)
    )
}

fn stage_status(stage: &StageStats) -> String {
    format!(
        "{}: {} rows in, {} rows out, watermark {}, {:.1} s blocked on downstream (backpressure)",
        stage.name,
        stage.rows_in.load(Ordering::Relaxed),
        stage.rows_out.load(Ordering::Relaxed),
        watermark_text(stage.watermark.load(Ordering::Relaxed), now_ms()),
        stage.blocked_ns.load(Ordering::Relaxed) as f64 / 1e9
    )
}

/// A watermark as a UTC time and its lag behind the wall clock.
fn watermark_text(watermark: i64, now: i64) -> String {
    match watermark {
        i64::MIN => "none yet".into(),
        i64::MAX => "end of input".into(),
        w => {
            let time = chrono::DateTime::from_timestamp_millis(w)
                .map(|t| t.format("%Y-%m-%d %H:%M:%S%.3f").to_string())
                .unwrap_or_else(|| w.to_string());
            format!("{time} (lag {:.1} s)", (now - w) as f64 / 1000.0)
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn describe(job: &JobSummary, elapsed: Duration) -> String {
    let s = &job.stats;
    let rows_in = s.rows_in.load(Ordering::Relaxed);
    let rate = rows_in as f64 / elapsed.as_secs_f64().max(1e-9);
    format!(
        "{}: {} rows in, {} rows out, {} late rows dropped, {} checkpoints, {:.0} rows/s",
        job.sink,
        rows_in,
        s.rows_out.load(Ordering::Relaxed),
        s.late_rows.load(Ordering::Relaxed),
        s.checkpoints.load(Ordering::Relaxed),
        rate
    )
}
