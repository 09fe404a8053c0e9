//! The scheduler: on each tick it reads the DAG folder, queues a run for
//! every data interval that has ended (all since the last one with catchup,
//! else the latest), and starts queued runs (scheduled, manual, backfill)
//! up to each DAG's `max_active_runs`, each on its own thread with the local
//! executor. Runs left `running` by a scheduler that died are resumed:
//! tasks recorded as finished keep their state and are not run again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::dag::{load_file, Dag};
use crate::error::Result;
use crate::pg::PgStore;
use crate::run::{run_dag_with, Clock, Executor, RunSpec};
use crate::schedule::Interval;
use crate::store::{Metadata, RunRow, Store};

/// The run id of a scheduled or backfilled interval.
pub fn interval_run_id(kind: &str, interval: &Interval) -> String {
    format!(
        "{kind}__{}",
        interval
            .end
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    )
}

/// Where the current versions of datasets come from (the binary reads
/// the lake's table metadata).
pub trait Datasets: Send + Sync {
    /// The version of `dataset` (e.g. `lake.trips`), `None` if it does not
    /// exist.
    fn version(&self, dataset: &str) -> Option<u64>;
}

/// Schedules and runs the DAGs of one folder.
pub struct Scheduler {
    dags_dir: PathBuf,
    db: PathBuf,
    executor: Arc<dyn Executor>,
    clock: Arc<dyn Clock>,
    /// For DAGs that run when a dataset is updated.
    pub datasets: Option<Arc<dyn Datasets>>,
    /// Pools and per-task limits across the runs of this scheduler.
    pub slots: Arc<crate::slots::Slots>,
    /// Tasks running at once within a run.
    pub concurrency: usize,
    /// Runs started here, and whether each is a backfill.
    running: HashMap<(String, String), (JoinHandle<()>, bool)>,
}

/// The param of a backfill run holding its own concurrency.
pub const BACKFILL_CONCURRENCY: &str = "_backfill_concurrency";

impl Scheduler {
    pub fn new(
        dags_dir: &Path,
        db: &Path,
        executor: Arc<dyn Executor>,
        clock: Arc<dyn Clock>,
    ) -> Scheduler {
        Scheduler {
            dags_dir: dags_dir.to_path_buf(),
            db: db.to_path_buf(),
            executor,
            clock,
            concurrency: 4,
            datasets: None,
            slots: Arc::default(),
            running: HashMap::new(),
        }
    }

    /// One pass: queue due runs and start what may start.
    pub fn tick(&mut self) -> Result<()> {
        self.running.retain(|_, (h, _)| !h.is_finished());
        let dags = self.load();
        let store = Store::open(&self.db)?;
        let now = self.clock.now();
        for dag in dags.values() {
            queue_due(&store, dag, now)?;
            if let Some(datasets) = &self.datasets {
                queue_updated(&store, dag, datasets.as_ref())?;
            }
        }
        for run in store.unfinished_runs()? {
            self.maybe_start(&store, &dags, run)?;
        }
        Ok(())
    }

    /// Tick every `every` until `stop` is set.
    pub fn run(&mut self, every: Duration, stop: &std::sync::atomic::AtomicBool) {
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            if let Err(e) = self.tick() {
                tracing::error!(error = %e, "scheduler tick failed");
            }
            std::thread::sleep(every);
        }
    }

    /// Wait for the runs this scheduler started.
    pub fn wait_idle(&mut self) {
        for (_, (h, _)) in self.running.drain() {
            let _ = h.join();
        }
    }

    /// The valid DAGs of the folder, by id; invalid files are logged.
    fn load(&self) -> HashMap<String, Arc<Dag>> {
        load_folder(&self.dags_dir)
    }

    fn maybe_start(
        &mut self,
        store: &Store,
        dags: &HashMap<String, Arc<Dag>>,
        run: RunRow,
    ) -> Result<()> {
        let key = (run.dag.clone(), run.run_id.clone());
        if self.running.contains_key(&key) {
            return Ok(());
        }
        let Some(dag) = dags.get(&run.dag) else {
            tracing::warn!(dag = %run.dag, run = %run.run_id, "no such DAG any more: run failed");
            return store.set_run_state(&run.dag, &run.run_id, "failed");
        };
        let (backfill, limit) = run_limit(dag, &run);
        let active = self
            .running
            .iter()
            .filter(|((d, _), (_, b))| *d == run.dag && *b == backfill)
            .count();
        if active >= limit {
            return Ok(());
        }
        store.set_run_state(&run.dag, &run.run_id, "running")?;
        let handle = self.spawn_run(dag.clone(), run);
        self.running.insert(key, (handle, backfill));
        Ok(())
    }

    fn spawn_run(&self, dag: Arc<Dag>, run: RunRow) -> JoinHandle<()> {
        let db = self.db.clone();
        let executor = self.executor.clone();
        let clock = self.clock.clone();
        let concurrency = self.concurrency;
        let slots = self.slots.clone();
        std::thread::spawn(move || {
            if let Err(e) = execute_run(
                &db,
                &dag,
                &run,
                executor.as_ref(),
                clock.as_ref(),
                (concurrency, slots),
            ) {
                tracing::error!(dag = %dag.id, run = %run.run_id, error = %e, "run failed to record");
            }
        })
    }
}

/// The valid DAGs of a folder, by id; invalid files are logged.
pub fn load_folder(dir: &Path) -> HashMap<String, Arc<Dag>> {
    let mut out = HashMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        tracing::warn!(dir = %dir.display(), "no DAG folder");
        return out;
    };
    for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
        if path.extension().is_none_or(|x| x != "toml") {
            continue;
        }
        match load_file(&path) {
            Ok(dag) => {
                out.insert(dag.id.clone(), Arc::new(dag));
            }
            Err(e) => tracing::warn!(error = %e, "DAG file skipped"),
        }
    }
    out
}

/// The DAGs of a folder, parsed again only when its `.toml` files change
/// (names, sizes or modification times), so a worker going idle after
/// every task does not re-parse large DAG files each time.
pub struct FolderCache {
    dir: PathBuf,
    stamp: Vec<(PathBuf, u64, Option<std::time::SystemTime>)>,
    dags: Arc<HashMap<String, Arc<Dag>>>,
}

impl FolderCache {
    pub fn new(dir: &Path) -> FolderCache {
        let stamp = folder_stamp(dir);
        FolderCache {
            dir: dir.to_path_buf(),
            stamp,
            dags: Arc::new(load_folder(dir)),
        }
    }

    /// The DAGs as the folder holds them now.
    pub fn current(&mut self) -> Arc<HashMap<String, Arc<Dag>>> {
        let stamp = folder_stamp(&self.dir);
        if stamp != self.stamp {
            self.dags = Arc::new(load_folder(&self.dir));
            self.stamp = stamp;
        }
        self.dags.clone()
    }
}

/// Each `.toml` file of `dir` with its size and modification time.
fn folder_stamp(dir: &Path) -> Vec<(PathBuf, u64, Option<std::time::SystemTime>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut stamp: Vec<_> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "toml"))
        .map(|e| {
            let meta = e.metadata().ok();
            let len = meta.as_ref().map_or(0, |m| m.len());
            (e.path(), len, meta.and_then(|m| m.modified().ok()))
        })
        .collect();
    stamp.sort();
    stamp
}

/// Whether `run` is a backfill, and how many runs of its kind `dag` may
/// have running at once. Backfills have their own limit, so they neither
/// starve nor are starved by scheduled and manual runs.
fn run_limit(dag: &Dag, run: &RunRow) -> (bool, usize) {
    if run.kind == "backfill" {
        let limit = run
            .params
            .get(BACKFILL_CONCURRENCY)
            .and_then(|c| c.parse().ok())
            .unwrap_or(1usize);
        (true, limit)
    } else {
        (false, dag.max_active_runs)
    }
}

/// Queue the runs of `dag` due at `now`.
fn queue_due(store: &dyn Metadata, dag: &Dag, now: DateTime<Utc>) -> Result<()> {
    let Some(schedule) = &dag.schedule else {
        return Ok(());
    };
    if store.paused(&dag.id)? {
        return Ok(());
    }
    let last = store.last_scheduled_end(&dag.id)?;
    for interval in schedule.due(now, last, dag.catchup) {
        let run = RunRow {
            dag: dag.id.clone(),
            run_id: interval_run_id("scheduled", &interval),
            kind: "scheduled".into(),
            interval: Some(interval),
            params: Default::default(),
            state: "queued".into(),
        };
        if store.create_run(&run)? {
            tracing::info!(dag = %dag.id, run = %run.run_id, "run queued");
        }
    }
    Ok(())
}

/// Queue a run of `dag` when a dataset it watches has a new version since
/// the last one it reacted to (the first version it sees is only noted).
fn queue_updated(store: &dyn Metadata, dag: &Dag, datasets: &dyn Datasets) -> Result<()> {
    if dag.on_update.is_empty() || store.paused(&dag.id)? {
        return Ok(());
    }
    let mut updated = Vec::new();
    for ds in &dag.on_update {
        let Some(version) = datasets.version(ds) else {
            continue;
        };
        let seen = store.seen_version(&dag.id, ds)?;
        if seen.is_some_and(|s| version > s) {
            updated.push(format!("{ds}@{version}"));
        }
        if seen != Some(version) {
            store.set_seen_version(&dag.id, ds, version)?;
        }
    }
    if updated.is_empty() {
        return Ok(());
    }
    let run = RunRow {
        dag: dag.id.clone(),
        run_id: format!("dataset__{}", updated.join("+")),
        kind: "dataset".into(),
        interval: None,
        params: Default::default(),
        state: "queued".into(),
    };
    if store.create_run(&run)? {
        tracing::info!(dag = %dag.id, run = %run.run_id, "run queued: dataset updated");
    }
    Ok(())
}

/// Run (or resume) one run, recording each task as it ends.
fn execute_run(
    db: &Path,
    dag: &Dag,
    run: &RunRow,
    executor: &dyn Executor,
    clock: &dyn Clock,
    (concurrency, slots): (usize, Arc<crate::slots::Slots>),
) -> Result<()> {
    let store = Mutex::new(Store::open(db)?);
    let finished = store
        .lock()
        .expect("lock")
        .finished_tasks(&dag.id, &run.run_id)?;
    if !finished.is_empty() {
        tracing::info!(dag = %dag.id, run = %run.run_id, done = finished.len(), "resuming run");
    }
    let spec = RunSpec {
        run_id: run.run_id.clone(),
        interval: run.interval,
        params: run.params.clone(),
        concurrency,
        finished,
        slots: Some(slots),
    };
    let record = |t: &crate::run::TaskReport| {
        let store = store.lock().expect("lock");
        if let Err(e) = store.record_task(&dag.id, &run.run_id, t) {
            tracing::error!(dag = %dag.id, task = %t.id, error = %e, "cannot record task");
        }
    };
    let report = run_dag_with(dag, &spec, executor, clock, &record);
    let state = if report.succeeded() {
        "success"
    } else {
        "failed"
    };
    tracing::info!(dag = %dag.id, run = %run.run_id, state, "run finished");
    let store = store.lock().expect("lock");
    store.set_run_state(&dag.id, &run.run_id, state)
}

/// The scheduler over PostgreSQL: queues due runs like [`Scheduler`], but
/// starting a run only creates its task instances and queues the first
/// ones; workers ([`crate::worker`]) in any process run them and queue
/// what follows. Each pass also takes tasks away from workers that stopped
/// heartbeating ([`PgStore::reap`]). Everything lives in the database, so
/// a scheduler restarted after a crash simply carries on.
pub struct PgScheduler {
    dags_dir: PathBuf,
    url: String,
    store: PgStore,
    clock: Arc<dyn Clock>,
    /// For DAGs that run when a dataset is updated.
    pub datasets: Option<Arc<dyn Datasets>>,
    /// A running task whose worker has not heartbeat for this long is
    /// retried elsewhere (or failed, its attempts used up).
    pub heartbeat_timeout: Duration,
}

impl PgScheduler {
    /// Connect to the store at `url` (creating its tables).
    pub fn connect(url: &str, dags_dir: &Path, clock: Arc<dyn Clock>) -> Result<PgScheduler> {
        Ok(PgScheduler {
            dags_dir: dags_dir.to_path_buf(),
            url: url.to_string(),
            store: PgStore::connect(url)?,
            clock,
            datasets: None,
            heartbeat_timeout: Duration::from_secs(30),
        })
    }

    /// Size the pools shared by all workers (`--pool db=2`).
    pub fn set_pools(&self, pools: &[(String, usize)]) -> Result<()> {
        self.store.set_pools(pools)
    }

    /// One pass: queue due runs, start what may start, reap silent workers.
    pub fn tick(&mut self) -> Result<()> {
        let dags = load_folder(&self.dags_dir);
        let now = self.clock.now();
        for dag in dags.values() {
            queue_due(&self.store, dag, now)?;
            if let Some(datasets) = &self.datasets {
                queue_updated(&self.store, dag, datasets.as_ref())?;
            }
        }
        self.start_queued(&dags)?;
        self.store.reap(&dags, self.heartbeat_timeout)?;
        Ok(())
    }

    /// Start queued runs within their DAG's limits.
    fn start_queued(&self, dags: &HashMap<String, Arc<Dag>>) -> Result<()> {
        let runs = self.store.unfinished_runs()?;
        let mut active: HashMap<(String, bool), usize> = HashMap::new();
        for run in runs.iter().filter(|r| r.state == "running") {
            let backfill = run.kind == "backfill";
            *active.entry((run.dag.clone(), backfill)).or_default() += 1;
        }
        for run in runs.iter().filter(|r| r.state == "queued") {
            let Some(dag) = dags.get(&run.dag) else {
                tracing::warn!(dag = %run.dag, run = %run.run_id, "no such DAG any more: run failed");
                self.store.set_run_state(&run.dag, &run.run_id, "failed")?;
                continue;
            };
            let (backfill, limit) = run_limit(dag, run);
            let n = active.entry((run.dag.clone(), backfill)).or_default();
            if *n < limit && self.store.start_run(dag, run)? {
                *n += 1;
            }
        }
        Ok(())
    }

    /// Tick every `every` until `stop` is set; a failed pass reconnects.
    pub fn run(&mut self, every: Duration, stop: &std::sync::atomic::AtomicBool) {
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            if let Err(e) = self.tick() {
                tracing::error!(error = %e, "scheduler tick failed");
                match PgStore::connect(&self.url) {
                    Ok(s) => self.store = s,
                    Err(e) => tracing::warn!(error = %e, "cannot reconnect"),
                }
            }
            std::thread::sleep(every);
        }
    }
}
