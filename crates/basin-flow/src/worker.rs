//! A worker: claims task instances from the PostgreSQL queue
//! ([`crate::queue`]) and runs them through an [`Executor`], up to a
//! number of slots at once. It heartbeats its claims from a thread of its
//! own; records each result (and queues the downstream tasks) in one
//! transaction; and when idle, sleeps on LISTEN until a notification says
//! work was queued, with a slow poll only as a fallback (and to wake for
//! retries whose backoff ends). Sensors poke once per claim and are queued
//! again until their condition holds, so a waiting sensor holds no slot.
//! When a heartbeat finds a claim taken away (the worker was silent too
//! long and the task went to another), the attempt is cancelled (shell
//! tasks are killed), and its result would be ignored anyway.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;

use crate::dag::{Dag, Task};
use crate::error::Result;
use crate::pg::PgStore;
use crate::queue::{Claim, Claimed, Outcome};
use crate::run::{
    is_sensor, poke_interval, render_all, sensor_target, task_vars, Attempt, Executor, RunSpec,
};
use crate::scheduler::FolderCache;

/// How a worker behaves.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Names the worker in the store (`flow_tasks.worker`).
    pub id: String,
    /// Task instances running at once.
    pub slots: usize,
    /// Time between heartbeats.
    pub heartbeat: Duration,
    /// Longest sleep without a notification before looking for work.
    pub poll: Duration,
}

impl WorkerOptions {
    /// `slots` at once, heartbeat every second, poll every 10 s, and an
    /// id from the host name and process id.
    pub fn new(slots: usize) -> WorkerOptions {
        WorkerOptions {
            id: default_id(),
            slots: slots.max(1),
            heartbeat: Duration::from_secs(1),
            poll: Duration::from_secs(10),
        }
    }
}

/// `host-pid-nnnn`.
fn default_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".into());
    let nanos = Utc::now().timestamp_subsec_nanos() % 10_000;
    format!("{host}-{}-{nanos:04}", std::process::id())
}

/// A worker over the DAGs of one folder.
pub struct Worker {
    url: String,
    dags_dir: PathBuf,
    executor: Arc<dyn Executor>,
    pub options: WorkerOptions,
}

/// What the worker's threads share.
#[derive(Default)]
struct Shared {
    /// Claims being run, heartbeat by the heartbeat thread, with the flag
    /// that cancels the attempt when its claim is taken away.
    tokens: Mutex<HashMap<i64, Arc<AtomicBool>>>,
    busy: Mutex<usize>,
    freed: Condvar,
    /// Idle connections for recording results.
    pool: Mutex<Vec<PgStore>>,
    /// Set when the worker is done, to stop the heartbeat.
    done: AtomicBool,
}

/// Gives back a slot and drops the claim from the heartbeat when a task
/// thread ends, even by a panic.
struct Running<'a> {
    shared: &'a Shared,
    token: i64,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        lock(&self.shared.tokens).remove(&self.token);
        *lock(&self.shared.busy) -= 1;
        self.shared.freed.notify_all();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Worker {
    pub fn new(
        url: &str,
        dags_dir: &Path,
        executor: Arc<dyn Executor>,
        options: WorkerOptions,
    ) -> Worker {
        Worker {
            url: url.to_string(),
            dags_dir: dags_dir.to_path_buf(),
            executor,
            options,
        }
    }

    /// Claim and run task instances until `stop` is set, then wait for
    /// the running ones. Fails only if the store cannot be reached at start.
    pub fn run(&self, stop: &AtomicBool) -> Result<()> {
        let listener = PgStore::connect(&self.url)?;
        listener.listen()?;
        let claims = PgStore::connect(&self.url)?;
        let beats = PgStore::connect(&self.url)?;
        let shared = Shared::default();
        tracing::info!(worker = %self.options.id, slots = self.options.slots, channel = %listener.channel, "worker ready");
        std::thread::scope(|scope| {
            scope.spawn(|| self.heartbeat(beats, &shared));
            self.claim_loop(scope, (listener, claims), &shared, stop);
            let mut busy = lock(&shared.busy);
            while *busy > 0 {
                busy = shared.freed.wait(busy).unwrap_or_else(|e| e.into_inner());
            }
            shared.done.store(true, Ordering::Relaxed);
        });
        tracing::info!(worker = %self.options.id, "worker stopped");
        Ok(())
    }

    fn claim_loop<'s>(
        &'s self,
        scope: &'s std::thread::Scope<'s, '_>,
        (mut listener, mut claims): (PgStore, PgStore),
        shared: &'s Shared,
        stop: &AtomicBool,
    ) {
        let mut folder = FolderCache::new(&self.dags_dir);
        let mut dags = folder.current();
        while self.wait_for_slot(shared, stop) {
            let names: Vec<String> = dags.keys().cloned().collect();
            match claims.claim_next(&self.options.id, &names) {
                Ok(Claimed::Task(claim)) => {
                    let claim = *claim;
                    *lock(&shared.busy) += 1;
                    let cancel = Arc::new(AtomicBool::new(false));
                    lock(&shared.tokens).insert(claim.token, cancel.clone());
                    let dags = dags.clone();
                    scope.spawn(move || self.run_claim(&dags, claim, cancel, shared));
                }
                Ok(Claimed::Held { contended: true }) => {
                    // Another claimer is deciding on the same limit.
                    std::thread::sleep(Duration::from_millis(10));
                }
                Ok(found) => {
                    dags = folder.current();
                    // Held by full limits: only a notification (a slot
                    // freed) or the poll can change that.
                    let due = matches!(found, Claimed::Nothing);
                    if let Err(e) = self.idle(&listener, &claims, (&names, due), stop) {
                        tracing::warn!(error = %e, "worker lost its listening connection");
                        let Some(l) = self.reconnect(stop, true) else {
                            break;
                        };
                        listener = l;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "claim failed; reconnecting");
                    let Some(c) = self.reconnect(stop, false) else {
                        break;
                    };
                    claims = c;
                }
            }
        }
    }

    /// Wait for a free slot; false when stopping.
    fn wait_for_slot(&self, shared: &Shared, stop: &AtomicBool) -> bool {
        let mut busy = lock(&shared.busy);
        while *busy >= self.options.slots {
            if stop.load(Ordering::Relaxed) {
                return false;
            }
            busy = shared
                .freed
                .wait_timeout(busy, Duration::from_millis(200))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        !stop.load(Ordering::Relaxed)
    }

    /// Sleep until notified, the fallback poll or `stop`, or (with
    /// `due`) until a queued task's retry backoff ends.
    fn idle(
        &self,
        listener: &PgStore,
        claims: &PgStore,
        (names, due): (&[String], bool),
        stop: &AtomicBool,
    ) -> Result<()> {
        let due = match due {
            true => claims.next_due(names)?.unwrap_or(self.options.poll),
            false => self.options.poll,
        };
        let deadline = Instant::now() + due.min(self.options.poll);
        while !stop.load(Ordering::Relaxed) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || listener.wait(left.min(Duration::from_millis(250)))? {
                break;
            }
        }
        Ok(())
    }

    /// A new connection, retried every second until it works; `None` if
    /// `stop` is set first.
    fn reconnect(&self, stop: &AtomicBool, listen: bool) -> Option<PgStore> {
        while !stop.load(Ordering::Relaxed) {
            let store = PgStore::connect(&self.url).and_then(|s| {
                if listen {
                    s.listen()?;
                }
                Ok(s)
            });
            match store {
                Ok(s) => return Some(s),
                Err(e) => tracing::warn!(error = %e, "cannot reach the metadata store"),
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        None
    }

    /// Heartbeat the claims being run until the worker is done.
    fn heartbeat(&self, mut store: PgStore, shared: &Shared) {
        while !shared.done.load(Ordering::Relaxed) {
            let tokens: Vec<i64> = lock(&shared.tokens).keys().copied().collect();
            match store.heartbeat(&self.options.id, &tokens) {
                Ok(held) => {
                    for lost in tokens.iter().filter(|t| !held.contains(t)) {
                        // Stop it: another worker may be running it now.
                        tracing::warn!(
                            token = lost,
                            "a claim of this worker was taken away: cancelling"
                        );
                        if let Some(cancel) = lock(&shared.tokens).get(lost) {
                            cancel.store(true, Ordering::Relaxed);
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "heartbeat failed; reconnecting");
                    if let Ok(s) = PgStore::connect(&self.url) {
                        store = s;
                    }
                }
            }
            std::thread::sleep(self.options.heartbeat);
        }
    }

    /// Run one claimed attempt and record how it ended.
    fn run_claim(
        &self,
        dags: &HashMap<String, Arc<Dag>>,
        claim: Claim,
        cancel: Arc<AtomicBool>,
        shared: &Shared,
    ) {
        let _running = Running {
            shared,
            token: claim.token,
        };
        let Some(dag) = dags.get(&claim.dag) else {
            return; // not claimable: only this folder's DAGs are claimed
        };
        let started = Instant::now();
        let (outcome, log) = match dag.task(&claim.task) {
            Some(task) => self.attempt(dag, task, &claim, cancel),
            None => (
                Outcome::Failure(format!("no task {} in DAG {}", claim.task, dag.id)),
                None,
            ),
        };
        tracing::info!(dag = %claim.dag, run = %claim.run_id, task = %claim.task,
            attempt = claim.attempt, outcome = ?outcome, "attempt ended");
        lock(&shared.tokens).remove(&claim.token);
        let store = lock(&shared.pool)
            .pop()
            .map_or_else(|| PgStore::connect(&self.url), Ok);
        let recorded = store.and_then(|s| {
            if let Some(log) = &log {
                s.save_log(claim.token, log)?;
            }
            s.finish(dag, &claim, &outcome, started.elapsed())?;
            Ok(s)
        });
        match recorded {
            Ok(s) => lock(&shared.pool).push(s),
            Err(e) => tracing::error!(task = %claim.task, error = %e, "cannot record a result"),
        }
    }

    /// The outcome of one attempt: templated fields, then the executor
    /// (or one poke of a sensor); and the attempt's log, if kept.
    fn attempt(
        &self,
        dag: &Dag,
        task: &Task,
        claim: &Claim,
        cancel: Arc<AtomicBool>,
    ) -> (Outcome, Option<String>) {
        let spec = RunSpec {
            run_id: claim.run_id.clone(),
            interval: claim.interval,
            params: claim.params.clone(),
            concurrency: 1,
            finished: BTreeMap::new(),
            slots: None,
        };
        let outputs: BTreeMap<String, String> = claim
            .outputs
            .iter()
            .filter(|(t, _)| task.depends_on.contains(t))
            .map(|(t, o)| (t.clone(), o.clone()))
            .collect();
        let vars = task_vars(dag, &spec, task, &outputs);
        let rendered =
            render_all(&task.fields, &vars).and_then(|f| Ok((f, render_all(&task.env, &vars)?)));
        let (fields, env) = match rendered {
            Ok(r) => r,
            Err(e) => return (Outcome::Failure(e.to_string()), None),
        };
        let attempt = Attempt {
            dag: &dag.id,
            run_id: &claim.run_id,
            task,
            fields,
            env,
            number: claim.attempt,
            interval: claim.interval,
            cancel: Some(cancel),
        };
        if is_sensor(task) {
            return (poke(self.executor.as_ref(), task, &attempt, claim), None);
        }
        let outcome = match self.executor.execute(&attempt) {
            Ok(output) => Outcome::Success(output),
            Err(e) => Outcome::Failure(e),
        };
        (outcome, self.executor.log(&attempt))
    }
}

/// One look of a sensor: done, timed out (from when the sensor was
/// first queued), or look again after its poke interval.
fn poke(executor: &dyn Executor, task: &Task, attempt: &Attempt, claim: &Claim) -> Outcome {
    let every = match poke_interval(&attempt.fields) {
        Ok(d) => d,
        Err(e) => return Outcome::Failure(e),
    };
    match executor.poke(attempt) {
        Ok(Some(found)) => return Outcome::Success(found),
        Ok(None) => {}
        Err(e) => return Outcome::Failure(e),
    }
    let timeout = task.timeout.unwrap_or(Duration::from_secs(3600));
    let waited = claim.queued_at.map_or(Duration::ZERO, |q| {
        (Utc::now() - q).to_std().unwrap_or_default()
    });
    if waited >= timeout {
        let what = sensor_target(&attempt.fields);
        return Outcome::Failure(format!("sensor: {what} within {timeout:?}"));
    }
    Outcome::Poke(every)
}
