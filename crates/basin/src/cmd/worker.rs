//! `basin worker`: a worker process for the orchestrator's PostgreSQL
//! queue. It claims task instances of the DAGs in its `--dags` folder
//! (`FOR UPDATE SKIP LOCKED`), runs them with the same executor as the
//! scheduler's local worker, heartbeats its claims, and wakes on
//! PostgreSQL notifications (see `basin_flow::worker`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use basin_flow::worker::{Worker, WorkerOptions};
use clap::Args;

use crate::cmd::dag::{BinExecutor, FolderArgs};

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// The PostgreSQL holding the orchestrator's state
    /// (postgres://user@host:port/db[?schema=name]), as given to the scheduler.
    #[arg(long, env = "BASIN_METADATA")]
    pub metadata: String,
    #[command(flatten)]
    pub folder: FolderArgs,
    /// Folder holding the catalog and the lake (SQL and pipeline tasks)
    /// and task logs.
    #[arg(long, env = "BASIN_DATA_DIR", default_value = "./basin-data")]
    pub data_dir: PathBuf,
    /// Tasks running at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Time between heartbeats (keep it well under the scheduler's
    /// --heartbeat-timeout).
    #[arg(long, value_parser = crate::cmd::gen::parse_duration, default_value = "1s")]
    pub heartbeat: Duration,
    /// Longest sleep without a notification before looking for work.
    #[arg(long, value_parser = crate::cmd::gen::parse_duration, default_value = "10s")]
    pub poll: Duration,
    /// This worker's name in the store [default: host-pid-nnnn].
    #[arg(long)]
    pub id: Option<String>,
}

/// Run until Ctrl-C, then finish the tasks in hand.
pub async fn run(client: &crate::client::ClientArgs, args: WorkerArgs) -> Result<()> {
    let mut options = WorkerOptions::new(args.concurrency);
    options.heartbeat = args.heartbeat;
    options.poll = args.poll;
    if let Some(id) = args.id {
        options.id = id;
    }
    // Say what is wrong with the URL or the server before anything else
    // (the sync client blocks, so off the async workers).
    tokio::task::block_in_place(|| basin_flow::pg::PgStore::connect(&args.metadata).map(drop))?;
    let executor = Arc::new(BinExecutor::new(
        &args.data_dir,
        Some(&args.metadata),
        &client.brokers,
    ));
    let worker = Worker::new(&args.metadata, &args.folder.dags, executor, options);
    eprintln!(
        "worker {} on the DAGs of {} (state in {}); Ctrl-C stops",
        worker.options.id,
        args.folder.dags.display(),
        basin_flow::pg::redact(&args.metadata)
    );
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        flag.store(true, Ordering::Relaxed);
    });
    tokio::task::spawn_blocking(move || worker.run(&stop)).await??;
    Ok(())
}
