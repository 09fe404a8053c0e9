//! The PostgreSQL store and queue against a real server (the test script
//! starts one and sets `BASIN_TEST_PG_URL`; without it,
//! `scripts/pg-test-server.sh` starts or reuses a local one, as the
//! basin-sql tests do). Each test works in a fresh schema: trigger rules,
//! retries and templated outputs through the queue with an in-process
//! worker; a worker woken by notification, not its poll; claims that skip
//! locked rows so concurrent claimers never share a task; and a claim
//! taken from a silent worker, whose late result is then ignored.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use basin_flow::dag::{parse, Dag};
use basin_flow::pg::PgStore;
use basin_flow::queue::Outcome;
use basin_flow::run::{Attempt, Executor, SystemClock};
use basin_flow::scheduler::PgScheduler;
use basin_flow::store::{Metadata, RunRow};
use basin_flow::worker::{Worker, WorkerOptions};

/// The test server's URL, starting it when needed.
fn pg_url() -> String {
    if let Ok(url) = std::env::var("BASIN_TEST_PG_URL") {
        return url;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/pg-test-server.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The server's URL with a schema of its own for this test.
fn fresh_url() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let url = pg_url();
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}schema=t_{}_{nanos}", std::process::id())
}

/// Records every attempt's task and fields; fails the tasks named in `fail`.
#[derive(Default)]
struct Recorder {
    fail: HashSet<String>,
    calls: Mutex<Vec<(String, BTreeMap<String, String>)>>,
}

impl Executor for Recorder {
    fn execute(&self, a: &Attempt) -> Result<String, String> {
        self.calls
            .lock()
            .unwrap()
            .push((a.task.id.clone(), a.fields.clone()));
        if self.fail.contains(&a.task.id) {
            return Err(format!("{} fails", a.task.id));
        }
        Ok(format!("out-{}", a.task.id))
    }
}

fn manual_run(dag: &str, run_id: &str) -> RunRow {
    RunRow {
        dag: dag.into(),
        run_id: run_id.into(),
        kind: "manual".into(),
        interval: None,
        params: BTreeMap::new(),
        state: "queued".into(),
    }
}

fn dag_folder(dir: &Path, id: &str, toml: &str) -> Dag {
    std::fs::write(dir.join(format!("{id}.toml")), toml).unwrap();
    parse(id, &dir.join(format!("{id}.toml")), toml).unwrap()
}

/// Wait until `run` of `dag` has ended; its state.
fn wait_for_run(store: &PgStore, dag: &str, run: &str, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let state = store
            .runs(dag, 10)
            .unwrap()
            .into_iter()
            .find(|r| r.run_id == run)
            .map(|r| r.state)
            .unwrap_or_default();
        if state == "success" || state == "failed" {
            return state;
        }
        assert!(Instant::now() < deadline, "run {run} still {state}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

const RULES: &str = r#"
[tasks.a]
kind = "shell"
command = "a"

[tasks.b]
kind = "shell"
depends_on = ["a"]
command = "b after {{ outputs.a }}"
retries = 1
retry_delay = "10ms"

[tasks.on_b_failed]
kind = "shell"
depends_on = ["b"]
trigger_rule = "one_failed"
command = "cleanup"

[tasks.after_b]
kind = "shell"
depends_on = ["b"]
command = "never"

[tasks.done]
kind = "shell"
depends_on = ["on_b_failed", "after_b"]
trigger_rule = "all_done"
command = "done"
"#;

/// Trigger rules decide downstream tasks as results are recorded, a
/// failed task is retried (each attempt counted), outputs reach
/// downstream templates, and the worker sleeps on LISTEN: its fallback
/// poll is ten minutes, so only notifications can move the run along.
#[test]
fn workers_run_a_dag_through_the_queue_by_its_trigger_rules() {
    let url = fresh_url();
    let dir = tempfile::tempdir().unwrap();
    dag_folder(dir.path(), "rules", RULES);
    let store = PgStore::connect(&url).unwrap();
    let executor = Arc::new(Recorder {
        fail: ["b".to_string()].into(),
        ..Recorder::default()
    });
    let mut options = WorkerOptions::new(2);
    options.poll = Duration::from_secs(600);
    let worker = Worker::new(&url, dir.path(), executor.clone(), options);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| worker.run(&stop).unwrap());
        // Let the worker go idle first, so it has to be woken.
        std::thread::sleep(Duration::from_millis(300));
        store.create_run(&manual_run("rules", "r1")).unwrap();
        let mut scheduler = PgScheduler::connect(&url, dir.path(), Arc::new(SystemClock)).unwrap();
        scheduler.tick().unwrap();
        let state = wait_for_run(&store, "rules", "r1", Duration::from_secs(60));
        stop.store(true, Ordering::Relaxed);
        assert_eq!(state, "failed");
    });
    let tasks = store.finished_tasks("rules", "r1").unwrap();
    let state = |t: &str| tasks[t].state.name();
    assert_eq!(state("a"), "success");
    assert_eq!((state("b"), tasks["b"].attempts), ("failed", 2));
    assert_eq!(state("on_b_failed"), "success");
    assert_eq!(state("after_b"), "upstream_failed");
    assert_eq!(state("done"), "success");
    let calls = executor.calls.lock().unwrap();
    let ran: Vec<&str> = calls.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(ran, ["a", "b", "b", "on_b_failed", "done"]);
    assert_eq!(calls[1].1["command"], "b after out-a");
}

/// Many claimers at once: `SKIP LOCKED` hands each queued task to exactly
/// one of them.
#[test]
fn concurrent_claims_never_share_a_task() {
    let url = fresh_url();
    let dir = tempfile::tempdir().unwrap();
    let mut toml = String::new();
    for i in 0..40 {
        toml.push_str(&format!(
            "[tasks.t{i}]\nkind = \"shell\"\ncommand = \"true\"\n"
        ));
    }
    let dag = dag_folder(dir.path(), "fan", &toml);
    let store = PgStore::connect(&url).unwrap();
    let run = manual_run("fan", "r1");
    store.create_run(&run).unwrap();
    assert!(store.start_run(&dag, &run).unwrap());
    assert!(!store.start_run(&dag, &run).unwrap(), "a run starts once");
    let names = vec!["fan".to_string()];
    let claimed: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|w| {
                let (url, names) = (&url, &names);
                s.spawn(move || {
                    let store = PgStore::connect(url).unwrap();
                    let mut mine = Vec::new();
                    while let Some(c) = store.claim(&format!("w{w}"), names).unwrap() {
                        mine.push(c.task);
                    }
                    mine
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let unique: HashSet<&String> = claimed.iter().collect();
    assert_eq!(claimed.len(), 40, "{claimed:?}");
    assert_eq!(unique.len(), 40, "a task was claimed twice: {claimed:?}");
}

/// A claim whose worker went silent is taken away (the lost attempt
/// counts); the task is claimed again with a new token, and the silent
/// worker's late result is ignored while the new one is recorded.
#[test]
fn a_claim_taken_from_a_silent_worker_cannot_record_its_result() {
    let url = fresh_url();
    let dir = tempfile::tempdir().unwrap();
    let dag = dag_folder(
        dir.path(),
        "one",
        "[tasks.only]\nkind = \"shell\"\ncommand = \"true\"\nretries = 1\nretry_delay = \"0s\"\n",
    );
    let store = PgStore::connect(&url).unwrap();
    let run = manual_run("one", "r1");
    store.create_run(&run).unwrap();
    store.start_run(&dag, &run).unwrap();
    let names = vec!["one".to_string()];
    let first = store.claim("silent", &names).unwrap().unwrap();
    assert!(store.claim("other", &names).unwrap().is_none());
    let dags: HashMap<String, Arc<Dag>> = [("one".to_string(), Arc::new(dag.clone()))].into();
    assert_eq!(store.reap(&dags, Duration::from_secs(60)).unwrap(), 0);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(store.reap(&dags, Duration::from_millis(10)).unwrap(), 1);
    assert!(store
        .heartbeat("silent", &[first.token])
        .unwrap()
        .is_empty());
    let second = store.claim("other", &names).unwrap().unwrap();
    assert_eq!((first.attempt, second.attempt), (1, 2));
    assert_ne!(first.token, second.token);
    let late = Outcome::Success("late".into());
    assert!(!store.finish(&dag, &first, &late, Duration::ZERO).unwrap());
    let fresh = Outcome::Success("fresh".into());
    assert!(store.finish(&dag, &second, &fresh, Duration::ZERO).unwrap());
    let tasks = store.finished_tasks("one", "r1").unwrap();
    assert_eq!(tasks["only"].output.as_deref(), Some("fresh"));
    assert_eq!(tasks["only"].attempts, 2);
    assert_eq!(
        wait_for_run(&store, "one", "r1", Duration::from_secs(5)),
        "success"
    );
}

/// A silent worker's task with no retries left fails, and the run fails.
#[test]
fn a_lost_task_without_retries_fails_its_run() {
    let url = fresh_url();
    let dir = tempfile::tempdir().unwrap();
    let dag = dag_folder(
        dir.path(),
        "once",
        "[tasks.only]\nkind = \"shell\"\ncommand = \"true\"\n[tasks.next]\nkind = \"shell\"\ncommand = \"true\"\ndepends_on = [\"only\"]\n",
    );
    let store = PgStore::connect(&url).unwrap();
    let run = manual_run("once", "r1");
    store.create_run(&run).unwrap();
    store.start_run(&dag, &run).unwrap();
    store
        .claim("silent", &["once".to_string()])
        .unwrap()
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let dags: HashMap<String, Arc<Dag>> = [("once".to_string(), Arc::new(dag))].into();
    assert_eq!(store.reap(&dags, Duration::from_millis(10)).unwrap(), 1);
    let tasks = store.finished_tasks("once", "r1").unwrap();
    assert_eq!(tasks["only"].state.name(), "failed");
    assert!(tasks["only"]
        .error
        .as_deref()
        .unwrap()
        .contains("silent stopped heartbeating"));
    assert_eq!(tasks["next"].state.name(), "upstream_failed");
    assert_eq!(
        wait_for_run(&store, "once", "r1", Duration::from_secs(5)),
        "failed"
    );
}

/// Waits on attempt 1 until it is cancelled (noting that it was); later
/// attempts succeed at once.
#[derive(Default)]
struct Stubborn {
    cancelled: AtomicBool,
}

impl Executor for Stubborn {
    fn execute(&self, a: &Attempt) -> Result<String, String> {
        if a.number > 1 {
            return Ok("second".into());
        }
        let cancel = a.cancel.as_ref().expect("workers pass a cancel flag");
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if cancel.load(Ordering::Relaxed) {
                self.cancelled.store(true, Ordering::Relaxed);
                return Err("cancelled".into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok("never cancelled".into())
    }
}

/// A worker that learns (by heartbeat) that its claim was taken away
/// cancels the attempt it is running, so it does not run beside the
/// attempt that replaces it; the task then succeeds on attempt 2.
#[test]
fn a_worker_cancels_an_attempt_whose_claim_was_taken_away() {
    let url = fresh_url();
    let dir = tempfile::tempdir().unwrap();
    let dag = dag_folder(
        dir.path(),
        "slow",
        "[tasks.only]\nkind = \"shell\"\ncommand = \"x\"\nretries = 1\nretry_delay = \"0s\"\n",
    );
    let store = PgStore::connect(&url).unwrap();
    store.create_run(&manual_run("slow", "r1")).unwrap();
    let executor = Arc::new(Stubborn::default());
    let mut options = WorkerOptions::new(1);
    options.heartbeat = Duration::from_millis(100);
    let worker = Worker::new(&url, dir.path(), executor.clone(), options);
    let stop = AtomicBool::new(false);
    let dags: HashMap<String, Arc<Dag>> = [("slow".to_string(), Arc::new(dag))].into();
    std::thread::scope(|s| {
        s.spawn(|| worker.run(&stop).unwrap());
        let mut scheduler = PgScheduler::connect(&url, dir.path(), Arc::new(SystemClock)).unwrap();
        scheduler.tick().unwrap();
        // Take the claim as a scheduler whose timeout is shorter than the
        // heartbeat would: the worker looks silent.
        let deadline = Instant::now() + Duration::from_secs(30);
        while store.reap(&dags, Duration::from_millis(20)).unwrap() == 0 {
            assert!(Instant::now() < deadline, "the task was never running");
            std::thread::sleep(Duration::from_millis(5));
        }
        let state = wait_for_run(&store, "slow", "r1", Duration::from_secs(60));
        stop.store(true, Ordering::Relaxed);
        assert_eq!(state, "success");
    });
    assert!(executor.cancelled.load(Ordering::Relaxed));
    let tasks = store.finished_tasks("slow", "r1").unwrap();
    assert_eq!(tasks["only"].output.as_deref(), Some("second"));
    assert_eq!(tasks["only"].attempts, 2);
}

/// Counts attempts running at once per key (a task's pool, else its id)
/// and keeps the highest count seen.
#[derive(Default)]
struct Gauge {
    now: Mutex<HashMap<String, usize>>,
    peak: Mutex<HashMap<String, usize>>,
}

impl Executor for Gauge {
    fn execute(&self, a: &Attempt) -> Result<String, String> {
        let key = a.task.pool.clone().unwrap_or_else(|| a.task.id.clone());
        {
            let mut now = self.now.lock().unwrap();
            let n = now.entry(key.clone()).or_default();
            *n += 1;
            let mut peak = self.peak.lock().unwrap();
            let p = peak.entry(key.clone()).or_default();
            *p = (*p).max(*n);
        }
        std::thread::sleep(Duration::from_millis(150));
        *self.now.lock().unwrap().get_mut(&key).unwrap() -= 1;
        Ok(String::new())
    }
}

/// Pools (sized by the scheduler) and `max_active` bound tasks across
/// workers and runs: two workers with three slots each never run more
/// than two `db` tasks, nor two instances of a `max_active = 1` task.
#[test]
fn pools_and_max_active_hold_across_workers() {
    let url = fresh_url();
    let dir = tempfile::tempdir().unwrap();
    let mut toml = String::from(
        "max_active_runs = 3\n[tasks.solo]\nkind = \"shell\"\ncommand = \"x\"\nmax_active = 1\n",
    );
    for i in 0..6 {
        toml.push_str(&format!(
            "[tasks.db{i}]\nkind = \"shell\"\ncommand = \"x\"\npool = \"db\"\n"
        ));
    }
    dag_folder(dir.path(), "limits", &toml);
    let store = PgStore::connect(&url).unwrap();
    for r in ["r1", "r2", "r3"] {
        store.create_run(&manual_run("limits", r)).unwrap();
    }
    let gauge = Arc::new(Gauge::default());
    let workers: Vec<Worker> = (0..2)
        .map(|_| Worker::new(&url, dir.path(), gauge.clone(), WorkerOptions::new(3)))
        .collect();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        for w in &workers {
            s.spawn(|| w.run(&stop).unwrap());
        }
        let scheduler = PgScheduler::connect(&url, dir.path(), Arc::new(SystemClock)).unwrap();
        scheduler.set_pools(&[("db".to_string(), 2)]).unwrap();
        let mut scheduler = scheduler;
        scheduler.tick().unwrap();
        for r in ["r1", "r2", "r3"] {
            let state = wait_for_run(&store, "limits", r, Duration::from_secs(60));
            assert_eq!(state, "success");
        }
        stop.store(true, Ordering::Relaxed);
    });
    let peak = gauge.peak.lock().unwrap();
    assert!(peak["db"] <= 2, "{peak:?}");
    assert_eq!(peak["solo"], 1, "{peak:?}");
}
