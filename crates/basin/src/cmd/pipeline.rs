//! `basin pipeline run FILE.sql`: run a SQL pipeline as a stream job over
//! live topics (the default) or as a batch job over what the sources hold
//! now. Stream jobs checkpoint to the data dir and resume from their last
//! checkpoint when run again.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use std::path::Path;

use crate::deploy;
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
    /// Hand a pipeline to the `basin up` node of the data dir, which runs it
    /// (and again after it restarts) until stopped.
    Deploy(DeployArgs),
    /// The deployed pipelines and their state.
    List(DataDirArg),
    /// A deployed pipeline's jobs: rows, watermark, checkpoints, stages.
    Status(NameArgs),
    /// Stop a deployed pipeline (it keeps its last checkpoint).
    Stop(NameArgs),
    /// Start a deployed pipeline again, from its last checkpoint.
    Restart(NameArgs),
}

/// The data dir a `basin up` node owns.
#[derive(Debug, Args)]
pub struct DataDirArg {
    #[arg(long, env = "BASIN_DATA_DIR", default_value = "./basin-data")]
    pub data_dir: PathBuf,
}

/// Flags of the commands about one deployed pipeline.
#[derive(Debug, Args)]
pub struct NameArgs {
    pub name: String,
    #[command(flatten)]
    pub dir: DataDirArg,
}

/// Flags of `basin pipeline deploy`.
#[derive(Debug, Args)]
pub struct DeployArgs {
    /// The pipeline's SQL files, run as one, in order.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Its name [default: the last file's stem].
    #[arg(long)]
    pub name: Option<String>,
    #[arg(long, default_value_t = 1)]
    pub parallelism: usize,
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub checkpoint_interval: Duration,
    /// Forget state that windows do not bound once not updated for this
    /// long in event time (see `pipeline run --help`) [default: keep].
    #[arg(long, value_parser = parse_duration)]
    pub state_ttl: Option<Duration>,
    #[command(flatten)]
    pub dir: DataDirArg,
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
    /// Stream mode: forget state that windows do not bound (groups of a
    /// GROUP BY without a window, top-N keys, rows of unwindowed joins) once
    /// not updated for this long in event time, e.g. 1h [default: keep].
    #[arg(long, value_parser = parse_duration)]
    pub state_ttl: Option<Duration>,
    /// Log each job's status (rows/s, watermark and its lag, last
    /// checkpoint, per-stage rows and backpressure) this often.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub status_interval: Duration,
    /// Count the rows of bare SELECTs instead of printing them (benchmarks).
    #[arg(long)]
    pub discard: bool,
    /// Stream mode: run the pipeline together with every `basin` process
    /// started with the same group name, as one consumer group: each owns
    /// some source partitions and the state of their keys, keyed stages
    /// exchange rows through repartition topics, and a process that dies
    /// has its partitions taken over from their last checkpoint. Writes to
    /// a topic sink.
    #[arg(long, value_name = "NAME")]
    pub group: Option<String>,
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
        PipelineCommand::Deploy(args) => deploy(args).await,
        PipelineCommand::List(args) => list(&args.data_dir),
        PipelineCommand::Status(args) => status(&args.name, &args.dir.data_dir),
        PipelineCommand::Stop(args) => set_running(&args.name, &args.dir.data_dir, false).await,
        PipelineCommand::Restart(args) => set_running(&args.name, &args.dir.data_dir, true).await,
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
        stop: Default::default(),
        state_ttl: args.state_ttl,
        group: args.group.clone(),
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

pub(crate) async fn deploy(args: DeployArgs) -> Result<()> {
    let text = read_files(&args.files)?;
    let file = args.files.last().expect("clap requires a file");
    basin_stream::script::Script::parse(&text).with_context(|| format!("in {}", file.display()))?;
    let name = args.name.clone().unwrap_or_else(|| {
        file.file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned()
    });
    let previous = deploy::read(&args.dir.data_dir, &name)?;
    let deployment = deploy::Deployment {
        name: name.clone(),
        sql: text,
        parallelism: args.parallelism.max(1),
        checkpoint_interval_ms: args.checkpoint_interval.as_millis() as u64,
        state_ttl_ms: args.state_ttl.map(|d| d.as_millis() as u64),
        running: true,
        generation: previous.map_or(1, |p| p.generation + 1),
    };
    deploy::write(&args.dir.data_dir, &deployment)?;
    eprintln!("deployed {name} (generation {})", deployment.generation);
    settle(&args.dir.data_dir, &name, deployment.generation, "running").await
}

pub(crate) async fn set_running(name: &str, data_dir: &Path, running: bool) -> Result<()> {
    let Some(mut d) = deploy::read(data_dir, name)? else {
        bail!(
            "no pipeline named {name} is deployed in {} (see basin pipeline list)",
            data_dir.display()
        );
    };
    d.running = running;
    if running {
        d.generation += 1;
    }
    deploy::write(data_dir, &d)?;
    settle(
        data_dir,
        name,
        d.generation,
        if running { "running" } else { "stopped" },
    )
    .await
}

/// Wait (10 s at most) for the node to report `want`, and say what happened.
async fn settle(data_dir: &Path, name: &str, generation: u64, want: &str) -> Result<()> {
    let asked = deploy::now_ms();
    for _ in 0..100 {
        if let Some(s) = deploy::read_status(data_dir, name)
            .filter(|s| s.updated_at_ms > asked && s.generation == generation)
        {
            match s.state.as_str() {
                "failed" => bail!("{name} failed: {}", s.error.unwrap_or_default()),
                state if state == want => {
                    eprintln!("{name} is {state}");
                    return Ok(());
                }
                _ => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "no `basin up` node has picked this up yet (is one running on {}?); it will when it runs",
        data_dir.display()
    );
    Ok(())
}

fn list(data_dir: &Path) -> Result<()> {
    let deployments = deploy::read_all(data_dir)?;
    if deployments.is_empty() {
        println!("no pipelines are deployed in {}", data_dir.display());
        return Ok(());
    }
    println!(
        "{:<24} {:<8} {:>12} {:>12}  watermark",
        "name", "state", "rows in", "rows out"
    );
    for d in deployments {
        let s = deploy::read_status(data_dir, &d.name).unwrap_or_default();
        let state = if s.state.is_empty() {
            "pending".to_string()
        } else {
            s.state.clone()
        };
        let rows_in: u64 = s.jobs.iter().map(|j| j.rows_in).sum();
        let rows_out: u64 = s.jobs.iter().map(|j| j.rows_out).sum();
        let watermark = s
            .jobs
            .iter()
            .map(|j| j.watermark_ms)
            .min()
            .unwrap_or(i64::MIN);
        println!(
            "{:<24} {:<8} {:>12} {:>12}  {}",
            d.name,
            state,
            rows_in,
            rows_out,
            watermark_text(watermark, now_ms())
        );
    }
    Ok(())
}

fn status(name: &str, data_dir: &Path) -> Result<()> {
    if deploy::read(data_dir, name)?.is_none() {
        bail!(
            "no pipeline named {name} is deployed in {} (see basin pipeline list)",
            data_dir.display()
        );
    }
    let Some(s) = deploy::read_status(data_dir, name) else {
        println!("{name}: deployed, not picked up by a node yet");
        return Ok(());
    };
    let age = (now_ms() - s.updated_at_ms) as f64 / 1000.0;
    println!(
        "{name}: {} (generation {}, reported {age:.1} s ago)",
        s.state, s.generation
    );
    if let Some(e) = &s.error {
        println!("  error: {e}");
    }
    for j in &s.jobs {
        let checkpoint = if j.last_checkpoint_ms > 0 {
            format!(
                "{:.1} s ago",
                (now_ms() - j.last_checkpoint_ms) as f64 / 1000.0
            )
        } else {
            "none yet".into()
        };
        println!(
            "  job {} -> {}: {} rows in, {} rows out, {} late, watermark {}, {} checkpoints, last {checkpoint}",
            j.name, j.sink, j.rows_in, j.rows_out, j.late_rows, watermark_text(j.watermark_ms, now_ms()), j.checkpoints
        );
        for (i, st) in j.stages.iter().enumerate() {
            println!(
                "    stage {i} {}: {} rows in, {} rows out, watermark {}, {:.1} s blocked on downstream",
                st.name, st.rows_in, st.rows_out, watermark_text(st.watermark_ms, now_ms()), st.blocked_s
            );
        }
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
