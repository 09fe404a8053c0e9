//! flow-bench: the per-task overhead of Basin's orchestrator. It writes a
//! DAG of no-op shell tasks (`true`) in one shape — a chain of N, or one
//! task fanning out to N — into a fresh folder, queues one manual run and
//! drives the same scheduler `basin dag scheduler` runs: in-process over
//! SQLite (the embedded default), or over PostgreSQL with the scheduler
//! and workers sharing the task queue. It prints one JSON line per shape.
//! The clock runs from the scheduler starting the run to its end state
//! being recorded; the wait for the scheduler's next tick is not in it.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use basin_flow::run::{Attempt, Executor, SystemClock};
use basin_flow::scheduler::{PgScheduler, Scheduler};
use basin_flow::store::{Metadata, RunRow, Store};
use basin_flow::worker::{Worker, WorkerOptions};
use clap::Parser;

#[derive(Parser, Debug)]
#[command(about = "Per-task overhead of Basin's orchestrator on no-op shell tasks")]
struct Args {
    /// DAG shapes, comma-separated: chain:N (N tasks in a line) or
    /// fanout:N (one task, then N that depend only on it).
    #[arg(long, default_value = "chain:40,chain:1000,fanout:1000")]
    shapes: String,
    /// State in PostgreSQL (postgres://...), with workers claiming tasks
    /// from its queue; default: SQLite in a fresh data dir.
    #[arg(long)]
    metadata: Option<String>,
    /// Tasks running at once (per run over SQLite, per worker over
    /// PostgreSQL).
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Workers (over PostgreSQL).
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Runs per shape; the report gives each.
    #[arg(long, default_value_t = 1)]
    runs: usize,
}

/// The attempt of a shell task, logged as `basin dag scheduler` logs it.
struct Shell {
    logs: std::path::PathBuf,
}

impl Executor for Shell {
    fn execute(&self, a: &Attempt) -> Result<String, String> {
        basin_flow::shell::run_shell(a, Some(&self.logs))
    }
}

/// A shape's DAG file text and its task count.
fn dag_text(shape: &str) -> Result<(String, usize)> {
    let (kind, n) = shape
        .split_once(':')
        .with_context(|| format!("shape '{shape}': expected chain:N or fanout:N"))?;
    let n: usize = n
        .parse()
        .with_context(|| format!("shape '{shape}': '{n}' is not a task count"))?;
    let task = |id: &str, up: Option<&str>| {
        let deps = up
            .map(|u| format!("depends_on = [\"{u}\"]\n"))
            .unwrap_or_default();
        format!("[tasks.{id}]\nkind = \"shell\"\ncommand = \"true\"\n{deps}")
    };
    let mut text = String::from("description = \"flow-bench\"\n");
    match kind {
        "chain" => {
            for i in 0..n {
                let up = (i > 0).then(|| format!("t{}", i - 1));
                text.push_str(&task(&format!("t{i}"), up.as_deref()));
            }
            Ok((text, n))
        }
        "fanout" => {
            text.push_str(&task("start", None));
            for i in 0..n {
                text.push_str(&task(&format!("t{i}"), Some("start")));
            }
            Ok((text, n + 1))
        }
        _ => bail!("shape '{shape}': expected chain:N or fanout:N"),
    }
}

fn manual_run(dag: &str, run_id: &str) -> RunRow {
    RunRow {
        dag: dag.into(),
        run_id: run_id.into(),
        kind: "manual".into(),
        interval: None,
        params: Default::default(),
        state: "queued".into(),
    }
}

/// One run over SQLite: the scheduler's tick starts it on a thread; the
/// run is over when that thread has recorded its end.
fn run_sqlite(dir: &Path, dag: &str, run_id: &str, args: &Args) -> Result<(Duration, String)> {
    let db = dir.join("flow.db");
    let executor = Arc::new(Shell {
        logs: dir.join("dag-logs"),
    });
    let mut scheduler = Scheduler::new(&dir.join("dags"), &db, executor, Arc::new(SystemClock));
    scheduler.concurrency = args.concurrency;
    let store = Store::open(&db)?;
    store.create_run(&manual_run(dag, run_id))?;
    let t0 = Instant::now();
    scheduler.tick()?;
    scheduler.wait_idle();
    let took = t0.elapsed();
    Ok((took, run_state(&store, dag, run_id)?))
}

fn run_state(store: &dyn Metadata, dag: &str, run_id: &str) -> Result<String> {
    let runs = store.runs(dag, 1000)?;
    let run = runs
        .iter()
        .find(|r| r.run_id == run_id)
        .context("run not found")?;
    Ok(run.state.clone())
}

/// One run over PostgreSQL: workers are already waiting on the queue;
/// the scheduler's tick creates the run's task instances and queues the
/// root, and the run is over when a worker records its end state.
fn run_pg(
    url: &str,
    dir: &Path,
    dag: &str,
    run_id: &str,
    stop: &AtomicBool,
) -> Result<(Duration, String)> {
    let store = basin_flow::pg::PgStore::connect(url)?;
    let mut scheduler = PgScheduler::connect(url, &dir.join("dags"), Arc::new(SystemClock))?;
    store.create_run(&manual_run(dag, run_id))?;
    let t0 = Instant::now();
    scheduler.tick()?;
    loop {
        let state = run_state(&store, dag, run_id)?;
        if state == "success" || state == "failed" {
            return Ok((t0.elapsed(), state));
        }
        if stop.load(Ordering::Relaxed) {
            bail!("stopped");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let dags = dir.path().join("dags");
    std::fs::create_dir_all(&dags)?;
    let shapes: Vec<&str> = args.shapes.split(',').map(str::trim).collect();
    for shape in &shapes {
        let (text, _) = dag_text(shape)?;
        std::fs::write(dags.join(format!("{}.toml", dag_id(shape))), text)?;
    }
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| -> Result<()> {
        if let Some(url) = &args.metadata {
            for _ in 0..args.workers {
                let executor = Arc::new(Shell {
                    logs: dir.path().join("dag-logs"),
                });
                let worker =
                    Worker::new(url, &dags, executor, WorkerOptions::new(args.concurrency));
                let stop = &stop;
                s.spawn(move || worker.run(stop));
            }
        }
        let result = measure_all(&args, dir.path(), &shapes, &stop);
        stop.store(true, Ordering::Relaxed);
        result
    })
}

fn dag_id(shape: &str) -> String {
    format!("bench_{}", shape.replace(':', "_"))
}

fn measure_all(args: &Args, dir: &Path, shapes: &[&str], stop: &AtomicBool) -> Result<()> {
    for shape in shapes {
        let (_, tasks) = dag_text(shape)?;
        let dag = dag_id(shape);
        for i in 0..args.runs {
            let run_id = format!("bench_{}_{i}", std::process::id());
            eprintln!("flow-bench: {shape} run {} of {} ...", i + 1, args.runs);
            let (took, state) = match &args.metadata {
                Some(url) => run_pg(url, dir, &dag, &run_id, stop)?,
                None => run_sqlite(dir, &dag, &run_id, args)?,
            };
            let line = serde_json::json!({
                "peer": "basin",
                "shape": shape,
                "tasks": tasks,
                "state": state,
                "wall_s": took.as_secs_f64(),
                "per_task_ms": took.as_secs_f64() * 1000.0 / tasks as f64,
                "metadata": if args.metadata.is_some() { "postgres" } else { "sqlite" },
                "concurrency": args.concurrency,
                "workers": if args.metadata.is_some() { args.workers } else { 0 },
                "run": i + 1,
            });
            println!("{line}");
        }
    }
    Ok(())
}
