//! `basin dag list|show|test`: DAG files of a `dags/` folder (see
//! `basin_flow::dag`), and one run of a DAG in the foreground. Shell tasks
//! run through `basin_flow::shell`; SQL tasks through the batch engine on
//! the data dir; pipeline tasks run their file in batch mode. State is in
//! `<data-dir>/flow.db` (SQLite), or in PostgreSQL with `--metadata
//! postgres://...`, where `basin worker` processes share the work.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use basin_flow::dag::{load_dir, Dag, TaskKind};
use basin_flow::pg::PgStore;
use basin_flow::run::{run_dag, Attempt, Executor, RunSpec, SystemClock};
use basin_flow::scheduler::{
    interval_run_id, Datasets, PgScheduler, Scheduler, BACKFILL_CONCURRENCY,
};
use basin_flow::store::{Metadata, RunRow, Store};
use basin_flow::worker::{Worker, WorkerOptions};

use crate::client::ClientArgs;
use crate::cmd::dag_topics::Topics;
use basin_sql::{Engine, Output};
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::task::block_in_place;

#[derive(Debug, Subcommand)]
pub enum DagCommand {
    /// The DAGs of the folder: schedule, tasks, next run.
    List(FolderArgs),
    /// One DAG's tasks and dependencies.
    Show(ShowArgs),
    /// Run one DAG run in the foreground, for development.
    Test(TestArgs),
    /// Run the scheduler and a local worker in the foreground: queue runs
    /// as data intervals end, run queued runs, resume after a crash.
    Scheduler(SchedulerArgs),
    /// Queue a manual run (the scheduler runs it).
    Trigger(TriggerArgs),
    /// Queue a run for every data interval from --from to --to.
    Backfill(BackfillArgs),
    /// Stop scheduling new runs of a DAG.
    Pause(StateArgs),
    /// Schedule a paused DAG again.
    Unpause(StateArgs),
    /// Recent runs of a DAG as a grid of task states.
    Runs(RunsArgs),
    /// The log of a task attempt (the latest unless --attempt).
    Logs(LogsArgs),
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    pub dag: String,
    pub run_id: String,
    pub task: String,
    #[arg(long)]
    pub attempt: Option<u32>,
    #[arg(long, env = "BASIN_DATA_DIR", default_value = "./basin-data")]
    pub data_dir: PathBuf,
    /// With --metadata the log comes from the database, where the worker
    /// that ran the attempt stored it (on whichever machine it ran).
    #[command(flatten)]
    pub metadata: MetadataArgs,
}

/// The DAG folder and the data dir holding the orchestrator's state.
#[derive(Debug, Args)]
pub struct StateArgs {
    pub dag: String,
    #[command(flatten)]
    pub folder: FolderArgs,
    #[arg(long, env = "BASIN_DATA_DIR", default_value = "./basin-data")]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub metadata: MetadataArgs,
}

/// Where the orchestrator's state lives.
#[derive(Debug, Args, Clone, Default)]
pub struct MetadataArgs {
    /// State in PostgreSQL (postgres://user@host:port/db[?schema=name]),
    /// shared with `basin worker` processes [default: SQLite in
    /// <data-dir>/flow.db].
    #[arg(long, env = "BASIN_METADATA")]
    pub metadata: Option<String>,
}

#[derive(Debug, Args)]
pub struct SchedulerArgs {
    #[command(flatten)]
    pub folder: FolderArgs,
    #[arg(long, env = "BASIN_DATA_DIR", default_value = "./basin-data")]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub metadata: MetadataArgs,
    /// With --metadata: a task whose worker has not heartbeat for this
    /// long is retried elsewhere (the lost attempt counts).
    #[arg(long, value_parser = crate::cmd::gen::parse_duration, default_value = "30s")]
    pub heartbeat_timeout: std::time::Duration,
    /// With --metadata: run no local worker (tasks run only on `basin
    /// worker` processes).
    #[arg(long)]
    pub no_local_worker: bool,
    /// Time between scheduler passes.
    #[arg(long, value_parser = crate::cmd::gen::parse_duration, default_value = "2s")]
    pub tick: std::time::Duration,
    /// Tasks running at once within a run.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// A pool of task slots shared by all runs: --pool db=2 (repeatable);
    /// tasks name theirs with `pool = "db"`.
    #[arg(long = "pool", value_parser = parse_pool)]
    pub pools: Vec<(String, usize)>,
}

fn parse_pool(text: &str) -> std::result::Result<(String, usize), String> {
    let (name, size) = parse_param(text)?;
    let size = size
        .parse()
        .map_err(|_| format!("pool '{name}': '{size}' is not a number of slots"))?;
    Ok((name, size))
}

#[derive(Debug, Args)]
pub struct TriggerArgs {
    #[command(flatten)]
    pub state: StateArgs,
    /// Override a param: -p key=value (repeatable).
    #[arg(short = 'p', long = "param", value_parser = parse_param)]
    pub params: Vec<(String, String)>,
}

#[derive(Debug, Args)]
pub struct BackfillArgs {
    #[command(flatten)]
    pub state: StateArgs,
    /// First interval starts at or after this time (RFC 3339).
    #[arg(long)]
    pub from: String,
    /// Last interval ends by this time (RFC 3339).
    #[arg(long)]
    pub to: String,
    /// Backfill runs at once (apart from the DAG's max_active_runs, which
    /// bounds scheduled and manual runs).
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
}

#[derive(Debug, Args)]
pub struct RunsArgs {
    #[command(flatten)]
    pub state: StateArgs,
    /// Runs shown, newest first.
    #[arg(long, default_value_t = 10)]
    pub limit: usize,
}

#[derive(Debug, Args)]
pub struct FolderArgs {
    /// Folder of DAG files (one DAG per .toml file).
    #[arg(long, env = "BASIN_DAGS", default_value = "./dags")]
    pub dags: PathBuf,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    pub dag: String,
    #[command(flatten)]
    pub folder: FolderArgs,
}

#[derive(Debug, Args)]
pub struct TestArgs {
    pub dag: String,
    /// Run the data interval that ends last by this time (RFC 3339)
    /// [default: now].
    #[arg(long)]
    pub date: Option<String>,
    /// Override a param: -p key=value (repeatable).
    #[arg(short = 'p', long = "param", value_parser = parse_param)]
    pub params: Vec<(String, String)>,
    /// Tasks running at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    #[command(flatten)]
    pub folder: FolderArgs,
    /// Folder holding the catalog and the lake (SQL and pipeline tasks)
    /// and task logs.
    #[arg(long, env = "BASIN_DATA_DIR", default_value = "./basin-data")]
    pub data_dir: PathBuf,
}

fn parse_param(text: &str) -> std::result::Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .ok_or_else(|| format!("'{text}' is not key=value"))
}

pub async fn run(client: &ClientArgs, command: DagCommand) -> Result<()> {
    match command {
        DagCommand::List(args) => list(&args.dags),
        DagCommand::Show(args) => show(&find(&args.folder.dags, &args.dag)?),
        DagCommand::Test(args) => test(args, &client.brokers).await,
        DagCommand::Scheduler(args) => scheduler(args, &client.brokers).await,
        // These may use the (blocking) PostgreSQL client.
        DagCommand::Trigger(args) => block_in_place(|| trigger(args)),
        DagCommand::Backfill(args) => block_in_place(|| backfill(args)),
        DagCommand::Pause(args) => block_in_place(|| set_paused(args, true)),
        DagCommand::Unpause(args) => block_in_place(|| set_paused(args, false)),
        DagCommand::Runs(args) => block_in_place(|| runs(args)),
        DagCommand::Logs(args) => block_in_place(|| logs(args)),
    }
}

fn logs(mut args: LogsArgs) -> Result<()> {
    if let Some(url) = &args.metadata.metadata {
        let store = PgStore::connect(url)?;
        let key = (args.dag.as_str(), args.run_id.as_str(), args.task.as_str());
        let Some(rec) = store.attempt_log(key, args.attempt)? else {
            bail!(
                "no attempt of task {} in run {} of {} is recorded in {}",
                args.task,
                args.run_id,
                args.dag,
                store.shown
            );
        };
        if let Some(text) = rec.log {
            eprintln!(
                "{} attempt {} ({}, on worker {})",
                args.task, rec.attempt, rec.outcome, rec.worker
            );
            print!("{text}");
            return Ok(());
        }
        // Still running, or kept no log: look in this machine's data dir.
        args.attempt = Some(rec.attempt);
    }
    let dir = basin_flow::shell::log_dir(&args.data_dir.join("dag-logs"), &args.dag, &args.run_id);
    let attempt = match args.attempt {
        Some(n) => n,
        None => (1..=1000)
            .take_while(|n| dir.join(format!("{}.{n}.log", args.task)).exists())
            .last()
            .with_context(|| {
                format!(
                    "no log of task {} in run {} of {} ({})",
                    args.task,
                    args.run_id,
                    args.dag,
                    dir.display()
                )
            })?,
    };
    let path = dir.join(format!("{}.{attempt}.log", args.task));
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    eprintln!("{} attempt {attempt} ({})", args.task, path.display());
    print!("{text}");
    Ok(())
}

/// The metadata store: PostgreSQL with --metadata, else SQLite in the
/// data dir.
fn store(data_dir: &Path, metadata: &MetadataArgs) -> Result<Box<dyn Metadata>> {
    Ok(match &metadata.metadata {
        Some(url) => Box::new(PgStore::connect(url)?),
        None => Box::new(Store::open(&data_dir.join("flow.db"))?),
    })
}

async fn scheduler(args: SchedulerArgs, brokers: &str) -> Result<()> {
    let running = spawn_scheduler(&args, brokers)?;
    let flag = running.stop.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        flag.store(true, Ordering::Relaxed);
    });
    let state = match &args.metadata.metadata {
        Some(url) => basin_flow::pg::redact(url),
        None => args.data_dir.join("flow.db").display().to_string(),
    };
    eprintln!(
        "scheduling the DAGs of {} (state in {state}); Ctrl-C stops",
        args.folder.dags.display(),
    );
    running.handle.await?;
    Ok(())
}

/// A scheduler running on a blocking thread; set `stop` to end it (it
/// waits for its runs).
pub struct RunningScheduler {
    pub stop: Arc<AtomicBool>,
    pub handle: tokio::task::JoinHandle<()>,
}

/// Start the scheduler and its local worker (also used by `basin up`).
pub fn spawn_scheduler(args: &SchedulerArgs, brokers: &str) -> Result<RunningScheduler> {
    if let Some(url) = &args.metadata.metadata {
        return spawn_pg_scheduler(args, url, brokers);
    }
    let executor = Arc::new(BinExecutor::new(&args.data_dir, None, brokers));
    let db = args.data_dir.join("flow.db");
    let mut scheduler = Scheduler::new(&args.folder.dags, &db, executor, Arc::new(SystemClock));
    scheduler.concurrency = args.concurrency;
    scheduler.slots = Arc::new(basin_flow::slots::Slots::new(
        args.pools.iter().cloned().collect(),
    ));
    scheduler.datasets = Some(Arc::new(BinDatasets::open(&args.data_dir, brokers)?));
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let tick = args.tick;
    let handle = tokio::task::spawn_blocking(move || {
        scheduler.run(tick, &flag);
        scheduler.wait_idle();
    });
    Ok(RunningScheduler { stop, handle })
}

/// The scheduler over PostgreSQL, and a local worker unless told not to.
fn spawn_pg_scheduler(args: &SchedulerArgs, url: &str, brokers: &str) -> Result<RunningScheduler> {
    let mut scheduler = block_in_place(|| {
        let scheduler = PgScheduler::connect(url, &args.folder.dags, Arc::new(SystemClock))?;
        scheduler.set_pools(&args.pools)?;
        Ok::<_, basin_flow::FlowError>(scheduler)
    })?;
    scheduler.heartbeat_timeout = args.heartbeat_timeout;
    scheduler.datasets = Some(Arc::new(BinDatasets::open(&args.data_dir, brokers)?));
    let worker = (!args.no_local_worker).then(|| {
        let executor = Arc::new(BinExecutor::new(&args.data_dir, Some(url), brokers));
        let mut options = WorkerOptions::new(args.concurrency);
        // Beat well within the timeout the reaper applies.
        options.heartbeat = (args.heartbeat_timeout / 10).clamp(
            std::time::Duration::from_millis(50),
            std::time::Duration::from_secs(1),
        );
        Worker::new(url, &args.folder.dags, executor, options)
    });
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let tick = args.tick;
    let handle = tokio::task::spawn_blocking(move || {
        std::thread::scope(|s| {
            if let Some(worker) = &worker {
                s.spawn(|| {
                    if let Err(e) = worker.run(&flag) {
                        tracing::error!(error = %e, "local worker stopped");
                    }
                });
            }
            scheduler.run(tick, &flag);
        });
    });
    Ok(RunningScheduler { stop, handle })
}

fn trigger(args: TriggerArgs) -> Result<()> {
    let dag = find(&args.state.folder.dags, &args.state.dag)?;
    let now = Utc::now();
    let run = RunRow {
        dag: dag.id.clone(),
        run_id: format!("manual__{}", now.format("%Y-%m-%dT%H:%M:%S%.3fZ")),
        kind: "manual".into(),
        interval: dag.schedule.as_ref().and_then(|s| s.latest_ending_by(now)),
        params: args.params.into_iter().collect(),
        state: "queued".into(),
    };
    store(&args.state.data_dir, &args.state.metadata)?.create_run(&run)?;
    println!("queued {} {}", dag.id, run.run_id);
    Ok(())
}

fn backfill(args: BackfillArgs) -> Result<()> {
    let dag = find(&args.state.folder.dags, &args.state.dag)?;
    let Some(schedule) = &dag.schedule else {
        bail!(
            "DAG {} has no schedule, so no data intervals to backfill",
            dag.id
        );
    };
    let time = |s: &str, flag: &str| {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .with_context(|| format!("{flag} '{s}' is not an RFC 3339 time"))
    };
    let (from, to) = (time(&args.from, "--from")?, time(&args.to, "--to")?);
    let store = store(&args.state.data_dir, &args.state.metadata)?;
    let mut queued = 0;
    for interval in schedule.intervals(from, to) {
        let run = RunRow {
            dag: dag.id.clone(),
            run_id: interval_run_id("backfill", &interval),
            kind: "backfill".into(),
            interval: Some(interval),
            params: [(
                BACKFILL_CONCURRENCY.to_string(),
                args.concurrency.max(1).to_string(),
            )]
            .into(),
            state: "queued".into(),
        };
        queued += usize::from(store.create_run(&run)?);
    }
    println!(
        "queued {queued} backfill run(s) of {} from {from} to {to}",
        dag.id
    );
    Ok(())
}

fn set_paused(args: StateArgs, paused: bool) -> Result<()> {
    let dag = find(&args.folder.dags, &args.dag)?;
    store(&args.data_dir, &args.metadata)?.set_paused(&dag.id, paused)?;
    println!("{} {}", dag.id, if paused { "paused" } else { "unpaused" });
    Ok(())
}

/// Tasks down, runs across (newest on the right): one letter per state.
fn runs(args: RunsArgs) -> Result<()> {
    let dag = find(&args.state.folder.dags, &args.state.dag)?;
    let store = store(&args.state.data_dir, &args.state.metadata)?;
    for ds in &dag.on_update {
        match store.seen_version(&dag.id, ds)? {
            Some(v) => println!("on_update {ds}: version {v} seen"),
            None => println!("on_update {ds}: not seen yet"),
        }
    }
    let mut runs = store.runs(&dag.id, args.limit)?;
    runs.reverse();
    for (i, r) in runs.iter().enumerate() {
        let interval = r
            .interval
            .map_or("-".to_string(), |i| format!("{} .. {}", i.start, i.end));
        println!("{:>3}  {:<10} {:<40} {interval}", i + 1, r.state, r.run_id);
    }
    println!();
    let header: String = (1..=runs.len())
        .map(|i| format!("{:>3}", i % 1000))
        .collect();
    println!("{:<24}{header}", "task");
    for t in &dag.tasks {
        let mut line = format!("{:<24}", t.id);
        for r in &runs {
            let finished = store.finished_tasks(&dag.id, &r.run_id)?;
            let mark = match finished.get(&t.id).map(|f| f.state.name()) {
                Some("success") => "S",
                Some("failed") => "F",
                Some("upstream_failed") => "U",
                Some("skipped") => "-",
                _ if r.state == "running" => "r",
                _ => ".",
            };
            line.push_str(&format!("{mark:>3}"));
        }
        println!("{line}");
    }
    println!("\nS success  F failed  U upstream_failed  - skipped  r running  . not run");
    Ok(())
}

fn load(dir: &Path) -> Result<Vec<Dag>> {
    load_dir(dir).with_context(|| format!("loading DAGs from {}", dir.display()))
}

fn find(dir: &Path, id: &str) -> Result<Dag> {
    let dags = load(dir)?;
    let names: Vec<String> = dags.iter().map(|d| d.id.clone()).collect();
    match dags.into_iter().find(|d| d.id == id) {
        Some(d) => Ok(d),
        None => bail!(
            "no DAG '{id}' in {} (there: {})",
            dir.display(),
            names.join(", ")
        ),
    }
}

fn list(dir: &Path) -> Result<()> {
    let dags = load(dir)?;
    println!(
        "{:<24} {:<34} {:>5}  {:<21} DESCRIPTION",
        "DAG", "SCHEDULE", "TASKS", "NEXT RUN (UTC)"
    );
    for d in &dags {
        let (schedule, next) = match &d.schedule {
            Some(s) => (
                format!("{} {}", s.expression, s.tz),
                s.next_tick(Utc::now())
                    .map_or("-".into(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string()),
            ),
            None => ("manual".into(), "-".into()),
        };
        println!(
            "{:<24} {:<34} {:>5}  {:<21} {}",
            d.id,
            schedule,
            d.tasks.len(),
            next,
            d.description
        );
    }
    Ok(())
}

fn show(dag: &Dag) -> Result<()> {
    println!("DAG {} ({})", dag.id, dag.file.display());
    if !dag.description.is_empty() {
        println!("  {}", dag.description);
    }
    if let Some(s) = &dag.schedule {
        println!(
            "  schedule {} in {}, catchup {}",
            s.expression, s.tz, dag.catchup
        );
    }
    println!();
    for t in &dag.tasks {
        let upstream = if t.depends_on.is_empty() {
            "(start)".to_string()
        } else {
            t.depends_on.join(", ")
        };
        println!(
            "  {upstream} ──► {} [{}, {}, retries {}]",
            t.id,
            t.kind.name(),
            t.trigger_rule.name(),
            t.retry.retries
        );
    }
    Ok(())
}

async fn test(args: TestArgs, brokers: &str) -> Result<()> {
    let dag = find(&args.folder.dags, &args.dag)?;
    let at = match &args.date {
        Some(d) => DateTime::parse_from_rfc3339(d)
            .with_context(|| format!("--date '{d}' is not an RFC 3339 time"))?
            .with_timezone(&Utc),
        None => Utc::now(),
    };
    let interval = dag.schedule.as_ref().and_then(|s| s.latest_ending_by(at));
    let spec = RunSpec {
        run_id: format!("test__{}", at.format("%Y-%m-%dT%H:%M:%S")),
        interval,
        params: args.params.iter().cloned().collect::<BTreeMap<_, _>>(),
        concurrency: args.concurrency,
        finished: BTreeMap::new(),
        slots: None,
    };
    if let Some(i) = interval {
        eprintln!("data interval {} .. {}", i.start, i.end);
    }
    let executor = Arc::new(BinExecutor::new(&args.data_dir, None, brokers));
    let dag = Arc::new(dag);
    let report = {
        let dag = dag.clone();
        tokio::task::spawn_blocking(move || run_dag(&dag, &spec, executor.as_ref(), &SystemClock))
            .await?
    };
    for t in &report.tasks {
        let detail = match (&t.error, &t.output) {
            (Some(e), _) => format!("  error: {e}"),
            (None, Some(o)) if !o.is_empty() => {
                format!("  output: {}", o.lines().next().unwrap_or(""))
            }
            _ => String::new(),
        };
        println!(
            "{:<24} {:<16} attempts {}  {:.1}s{detail}",
            t.id,
            t.state.name(),
            t.attempts,
            t.duration.as_secs_f64()
        );
    }
    if !report.succeeded() {
        bail!("DAG {} run {} failed", dag.id, report.run_id);
    }
    Ok(())
}

/// Versions of lake tables and topics, for DAGs that run `on_update`.
struct BinDatasets {
    lake: basin_sql::lake::Lake,
    topics: Topics,
}

impl BinDatasets {
    fn open(data_dir: &Path, brokers: &str) -> Result<BinDatasets> {
        Ok(BinDatasets {
            lake: basin_sql::lake::Lake::open(data_dir)?,
            topics: Topics::new(brokers),
        })
    }
}

impl Datasets for BinDatasets {
    fn version(&self, dataset: &str) -> Option<u64> {
        if let Some(topic) = dataset.strip_prefix("topic.") {
            return self.topics.version(topic);
        }
        let name = dataset.strip_prefix("lake.")?;
        self.lake.meta(name).ok().flatten().map(|m| m.version)
    }
}

/// Runs task attempts for `basin dag test`, the scheduler's local worker
/// and `basin worker`.
pub struct BinExecutor {
    data_dir: PathBuf,
    runtime: tokio::runtime::Handle,
    /// Where trigger tasks queue runs: PostgreSQL, else the data dir's SQLite.
    metadata: Option<String>,
    /// For topic sensors.
    topics: Arc<Topics>,
}

impl Executor for BinExecutor {
    fn execute(&self, a: &Attempt) -> std::result::Result<String, String> {
        match a.task.kind {
            TaskKind::Shell => {
                basin_flow::shell::run_shell(a, Some(&self.data_dir.join("dag-logs")))
            }
            TaskKind::Sql => self.logged(a, self.runtime.block_on(self.sql(a))),
            TaskKind::Pipeline => self.logged(a, self.runtime.block_on(self.pipeline(a))),
            TaskKind::Train => self.logged(a, self.runtime.block_on(self.train(a))),
            TaskKind::Trigger => self.logged(a, self.trigger(a)),
            other => Err(format!("{} tasks are not supported yet", other.name())),
        }
    }

    fn poke(&self, a: &Attempt) -> std::result::Result<Option<String>, String> {
        let Some(topic) = a
            .fields
            .get("topic")
            .filter(|_| !a.fields.contains_key("path"))
        else {
            return basin_flow::run::path_poke(&a.fields);
        };
        let Some(interval) = a.interval else {
            return Err(format!(
                "sensor on topic {topic}: run {} has no data interval to wait for the end of",
                a.run_id
            ));
        };
        self.topics.reached(topic, interval.end)
    }

    fn log(&self, a: &Attempt) -> Option<String> {
        let path = basin_flow::shell::log_path(&self.data_dir.join("dag-logs"), a);
        basin_flow::shell::log_tail(&path, 64 * 1024)
    }
}

impl BinExecutor {
    /// An executor on the current tokio runtime; topic sensors read the
    /// cluster at `brokers`.
    pub fn new(data_dir: &Path, metadata: Option<&str>, brokers: &str) -> BinExecutor {
        BinExecutor {
            data_dir: data_dir.to_path_buf(),
            runtime: tokio::runtime::Handle::current(),
            metadata: metadata.map(str::to_string),
            topics: Arc::new(Topics::new(brokers)),
        }
    }

    /// Write what the attempt ran and how it ended to its log.
    fn logged(
        &self,
        a: &Attempt,
        outcome: std::result::Result<String, String>,
    ) -> std::result::Result<String, String> {
        let dir = basin_flow::shell::log_dir(&self.data_dir.join("dag-logs"), a.dag, a.run_id);
        let mut text: String = a
            .fields
            .iter()
            .map(|(k, v)| format!("{k}: {v}\n"))
            .collect();
        match &outcome {
            Ok(out) => text.push_str(&format!("-- success: {out}\n")),
            Err(e) => text.push_str(&format!("-- failed: {e}\n")),
        }
        let path = dir.join(format!("{}.{}.log", a.task.id, a.number));
        let written = std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(&path, text));
        if let Err(e) = written {
            tracing::warn!(path = %path.display(), error = %e, "cannot write task log");
        }
        outcome
    }

    /// Queue a manual run of another DAG (the scheduler runs it).
    fn trigger(&self, a: &Attempt) -> std::result::Result<String, String> {
        let target = a.fields.get("dag").ok_or("a trigger task needs dag")?;
        let run = RunRow {
            dag: target.clone(),
            run_id: format!("triggered__{}__{}", a.dag, a.run_id),
            kind: "manual".into(),
            interval: a.interval,
            params: Default::default(),
            state: "queued".into(),
        };
        let metadata = MetadataArgs {
            metadata: self.metadata.clone(),
        };
        let store = store(&self.data_dir, &metadata).map_err(|e| e.to_string())?;
        store.create_run(&run).map_err(|e| e.to_string())?;
        Ok(run.run_id)
    }
}

impl BinExecutor {
    /// The statement (`sql`) or file (`file`); its output is the value of
    /// a one-cell result, or what the last statement did.
    async fn sql(&self, a: &Attempt<'_>) -> std::result::Result<String, String> {
        self.run_sql(a, false).await
    }

    /// A train task: SQL with a `CREATE MODEL`; its output is what the
    /// training reported (version, stage, metrics).
    async fn train(&self, a: &Attempt<'_>) -> std::result::Result<String, String> {
        self.run_sql(a, true).await
    }

    async fn run_sql(&self, a: &Attempt<'_>, train: bool) -> std::result::Result<String, String> {
        let kind = a.task.kind.name();
        let text = match (a.fields.get("sql"), a.fields.get("file")) {
            (Some(sql), _) => sql.clone(),
            (None, Some(f)) => std::fs::read_to_string(f).map_err(|e| format!("{f}: {e}"))?,
            (None, None) => return Err(format!("a {kind} task needs sql or file")),
        };
        let engine = Engine::open(&self.data_dir)
            .await
            .map_err(|e| e.to_string())?;
        let statements = engine.parse(&text).map_err(|e| e.to_string())?;
        let trains = statements.iter().filter(|s| s.is_create_model()).count();
        if train && trains == 0 {
            return Err("a train task's SQL needs a CREATE MODEL statement".into());
        }
        let mut last = String::new();
        let mut trained = Vec::new();
        for statement in statements {
            let model = statement.is_create_model();
            let output = engine.run_statement(statement).await;
            last = match output.map_err(|e| e.to_string())? {
                Output::Message(m) => m,
                Output::Rows(df) => one_cell(df).await?,
            };
            if model {
                trained.push(last.clone());
            }
        }
        Ok(if train { trained.join("\n") } else { last })
    }

    /// A pipeline file in batch mode.
    /// A pipeline task: `mode = "batch"` (the default) runs the file once
    /// over its bounded inputs; `deploy` deploys it as a stream pipeline
    /// (named by the file's stem) for the `basin up` node of this data dir
    /// to run, and `restart` restarts that deployment.
    async fn pipeline(&self, a: &Attempt<'_>) -> std::result::Result<String, String> {
        let file = a.fields.get("file").ok_or("a pipeline task needs file")?;
        let name = Path::new(file)
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let report = |e: anyhow::Error| crate::error_report(&e);
        match a.fields.get("mode").map(String::as_str) {
            None | Some("batch") => self.pipeline_batch(a, file).await,
            Some("deploy") => {
                let args = crate::cmd::pipeline::DeployArgs {
                    files: vec![PathBuf::from(file)],
                    name: Some(name.clone()),
                    parallelism: 1,
                    checkpoint_interval: std::time::Duration::from_secs(10),
                    state_ttl: None,
                    dir: crate::cmd::pipeline::DataDirArg {
                        data_dir: self.data_dir.clone(),
                    },
                };
                crate::cmd::pipeline::deploy(args).await.map_err(report)?;
                Ok(format!("deployed {name}"))
            }
            Some("restart") => {
                crate::cmd::pipeline::set_running(&name, &self.data_dir, true)
                    .await
                    .map_err(report)?;
                Ok(format!("restarted {name}"))
            }
            Some(other) => Err(format!(
                "mode '{other}' is not one of batch, deploy, restart"
            )),
        }
    }

    async fn pipeline_batch(
        &self,
        a: &Attempt<'_>,
        file: &str,
    ) -> std::result::Result<String, String> {
        use basin_stream::pipeline::{Mode, Pipeline, RunOptions};
        let text = std::fs::read_to_string(file).map_err(|e| format!("{file}: {e}"))?;
        let options = RunOptions {
            mode: Mode::Batch,
            data_dir: self.data_dir.clone(),
            name: a.task.id.clone(),
            parallelism: 1,
            checkpoint_interval: std::time::Duration::from_secs(10),
            bounded: true,
            reset: false,
            discard: false,
            stop: Default::default(),
            state_ttl: None,
            group: None,
        };
        let pipeline = Pipeline::open(&text, &options)
            .await
            .map_err(|e| e.to_string())?;
        let running = pipeline.start(&options).await.map_err(|e| e.to_string())?;
        let summary = running.wait().await.map_err(|e| e.to_string())?;
        Ok(format!("{} jobs", summary.jobs.len()))
    }
}

/// A query's single value, or how many rows it gave.
async fn one_cell(df: datafusion::prelude::DataFrame) -> std::result::Result<String, String> {
    let batches = df.collect().await.map_err(|e| e.to_string())?;
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    match batches.iter().find(|b| b.num_rows() > 0) {
        Some(b) if rows == 1 && b.num_columns() == 1 => {
            let formatter = datafusion::arrow::util::display::ArrayFormatter::try_new(
                b.column(0).as_ref(),
                &Default::default(),
            )
            .map_err(|e| e.to_string())?;
            Ok(formatter.value(0).to_string())
        }
        _ => Ok(format!("{rows} rows")),
    }
}
