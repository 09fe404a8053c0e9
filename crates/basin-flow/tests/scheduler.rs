//! The scheduler on an injected clock: catchup queues every missed
//! interval, max_active_runs bounds runs at once, each interval runs once,
//! and the next interval is queued when it ends; paused DAGs wait.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use basin_flow::run::{Attempt, Clock, Executor};
use basin_flow::scheduler::Scheduler;
use basin_flow::store::Store;
use chrono::{DateTime, Utc};

struct SetClock(Mutex<DateTime<Utc>>);

impl Clock for SetClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
    fn sleep(&self, _d: Duration) {}
    fn jitter(&self) -> f64 {
        0.5
    }
}

struct Shell;

impl Executor for Shell {
    fn execute(&self, a: &Attempt) -> Result<String, String> {
        basin_flow::shell::run_shell(a, None)
    }
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn lines(path: &Path) -> Vec<String> {
    let mut l: Vec<String> = std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    l.sort();
    l
}

#[test]
fn scheduled_intervals_each_run_once_within_max_active_runs() {
    let dir = tempfile::tempdir().unwrap();
    let dags = dir.path().join("dags");
    std::fs::create_dir_all(&dags).unwrap();
    let log = dir.path().join("ran.txt");
    std::fs::write(
        dags.join("hourly.toml"),
        format!(
            "schedule = \"0 * * * *\"\nstart = \"2026-01-01T00:00:00Z\"\ncatchup = true\nmax_active_runs = 2\n\
             [tasks.mark]\nkind = \"shell\"\ncommand = \"echo {{{{ data_interval_start }}}} >> {}\"\n",
            log.display()
        ),
    )
    .unwrap();
    let db = dir.path().join("flow.db");
    let clock = Arc::new(SetClock(Mutex::new(at("2026-01-01T05:30:00Z"))));
    let mut scheduler = Scheduler::new(&dags, &db, Arc::new(Shell), clock.clone());
    scheduler.tick().unwrap();
    let store = Store::open(&db).unwrap();
    let runs = store.runs("hourly", 100).unwrap();
    assert_eq!(runs.len(), 5, "five hours have ended since the start");
    let running = runs.iter().filter(|r| r.state == "running").count();
    assert_eq!(running, 2, "max_active_runs");
    for _ in 0..5 {
        scheduler.wait_idle();
        scheduler.tick().unwrap();
    }
    scheduler.wait_idle();
    let ran = lines(&log);
    assert_eq!(ran.len(), 5, "{ran:?}");
    assert_eq!(ran[0], "2026-01-01T00:00:00Z");
    assert!(store
        .runs("hourly", 100)
        .unwrap()
        .iter()
        .all(|r| r.state == "success"));

    // Paused: the next hour waits; unpaused, it runs.
    store.set_paused("hourly", true).unwrap();
    *clock.0.lock().unwrap() = at("2026-01-01T06:00:01Z");
    scheduler.tick().unwrap();
    assert_eq!(store.runs("hourly", 100).unwrap().len(), 5);
    store.set_paused("hourly", false).unwrap();
    scheduler.tick().unwrap();
    scheduler.wait_idle();
    assert_eq!(lines(&log).len(), 6);
}

/// Versions of datasets, set by the test (the data the scheduler watches).
struct Versions(Mutex<std::collections::HashMap<String, u64>>);

impl basin_flow::scheduler::Datasets for Versions {
    fn version(&self, dataset: &str) -> Option<u64> {
        self.0.lock().unwrap().get(dataset).copied()
    }
}

#[test]
fn a_dataset_update_triggers_a_run() {
    let dir = tempfile::tempdir().unwrap();
    let dags = dir.path().join("dags");
    std::fs::create_dir_all(&dags).unwrap();
    let log = dir.path().join("ran.txt");
    std::fs::write(
        dags.join("on_trips.toml"),
        format!(
            "on_update = [\"lake.trips\"]\n[tasks.mark]\nkind = \"shell\"\ncommand = \"echo {{{{ run_id }}}} >> {}\"\n",
            log.display()
        ),
    )
    .unwrap();
    let db = dir.path().join("flow.db");
    let clock = Arc::new(SetClock(Mutex::new(at("2026-01-01T00:00:00Z"))));
    let versions = Arc::new(Versions(Mutex::new(Default::default())));
    let mut scheduler = Scheduler::new(&dags, &db, Arc::new(Shell), clock);
    scheduler.datasets = Some(versions.clone());
    scheduler.tick().unwrap();
    versions.0.lock().unwrap().insert("lake.trips".into(), 1);
    scheduler.tick().unwrap();
    scheduler.wait_idle();
    assert!(
        lines(&log).is_empty(),
        "the first version seen is only noted"
    );
    versions.0.lock().unwrap().insert("lake.trips".into(), 2);
    scheduler.tick().unwrap();
    scheduler.wait_idle();
    scheduler.tick().unwrap();
    scheduler.wait_idle();
    assert_eq!(lines(&log), ["dataset__lake.trips@2"]);
}

/// Backfill runs have their own limit: with max_active_runs = 1 and a
/// backfill concurrency of 2, a scheduled run and two backfill runs run at
/// once.
#[test]
fn backfills_run_beside_scheduled_runs_with_their_own_limit() {
    use basin_flow::scheduler::{interval_run_id, BACKFILL_CONCURRENCY};
    use basin_flow::store::RunRow;
    let dir = tempfile::tempdir().unwrap();
    let dags = dir.path().join("dags");
    std::fs::create_dir_all(&dags).unwrap();
    let gate = dir.path().join("gate");
    std::fs::write(
        dags.join("daily.toml"),
        format!(
            "schedule = \"0 0 * * *\"\nmax_active_runs = 1\n\
             [tasks.wait]\nkind = \"shell\"\ncommand = \"while [ ! -f {} ]; do sleep 0.05; done\"\n",
            gate.display()
        ),
    )
    .unwrap();
    let db = dir.path().join("flow.db");
    let clock = Arc::new(SetClock(Mutex::new(at("2026-02-01T12:00:00Z"))));
    let store = Store::open(&db).unwrap();
    let schedule = basin_flow::schedule::Schedule::new("0 0 * * *", "UTC", None).unwrap();
    for interval in schedule.intervals(at("2026-01-01T00:00:00Z"), at("2026-01-05T00:00:00Z")) {
        let run = RunRow {
            dag: "daily".into(),
            run_id: interval_run_id("backfill", &interval),
            kind: "backfill".into(),
            interval: Some(interval),
            params: [(BACKFILL_CONCURRENCY.to_string(), "2".to_string())].into(),
            state: "queued".into(),
        };
        assert!(store.create_run(&run).unwrap());
    }
    let mut scheduler = Scheduler::new(&dags, &db, Arc::new(Shell), clock);
    scheduler.tick().unwrap();
    let runs = store.runs("daily", 100).unwrap();
    let running = |kind: &str| {
        runs.iter()
            .filter(|r| r.kind == kind && r.state == "running")
            .count()
    };
    assert_eq!(
        (running("scheduled"), running("backfill")),
        (1, 2),
        "{runs:?}"
    );
    std::fs::write(&gate, "").unwrap();
    for _ in 0..4 {
        scheduler.wait_idle();
        scheduler.tick().unwrap();
    }
    scheduler.wait_idle();
    let runs = store.runs("daily", 100).unwrap();
    assert_eq!(runs.len(), 5);
    assert!(runs.iter().all(|r| r.state == "success"), "{runs:?}");
}

/// Counts attempts of each task running at once (an injected executor:
/// the scheduler's slots are under test).
#[derive(Default)]
struct Counting {
    now: Mutex<std::collections::HashMap<String, usize>>,
    most: Mutex<std::collections::HashMap<String, usize>>,
}

impl Executor for Counting {
    fn execute(&self, a: &Attempt) -> Result<String, String> {
        {
            let mut now = self.now.lock().unwrap();
            let n = now.entry(a.task.id.clone()).or_default();
            *n += 1;
            let mut most = self.most.lock().unwrap();
            let m = most.entry(a.task.id.clone()).or_default();
            *m = (*m).max(*n);
        }
        std::thread::sleep(Duration::from_millis(100));
        *self.now.lock().unwrap().get_mut(&a.task.id).unwrap() -= 1;
        Ok(String::new())
    }
}

#[test]
fn pools_and_max_active_bound_tasks_across_runs() {
    use basin_flow::scheduler::{interval_run_id, BACKFILL_CONCURRENCY};
    use basin_flow::store::RunRow;
    let dir = tempfile::tempdir().unwrap();
    let dags = dir.path().join("dags");
    std::fs::create_dir_all(&dags).unwrap();
    std::fs::write(
        dags.join("daily.toml"),
        "[tasks.solo]\nkind = \"shell\"\ncommand = \"x\"\nmax_active = 1\n\
         [tasks.db]\nkind = \"shell\"\ncommand = \"x\"\npool = \"db\"\n\
         [tasks.free]\nkind = \"shell\"\ncommand = \"x\"\n",
    )
    .unwrap();
    let db = dir.path().join("flow.db");
    let store = Store::open(&db).unwrap();
    let schedule = basin_flow::schedule::Schedule::new("0 0 * * *", "UTC", None).unwrap();
    for interval in schedule.intervals(at("2026-01-01T00:00:00Z"), at("2026-01-05T00:00:00Z")) {
        let run = RunRow {
            dag: "daily".into(),
            run_id: interval_run_id("backfill", &interval),
            kind: "backfill".into(),
            interval: Some(interval),
            params: [(BACKFILL_CONCURRENCY.to_string(), "4".to_string())].into(),
            state: "queued".into(),
        };
        store.create_run(&run).unwrap();
    }
    let counting = Arc::new(Counting::default());
    let clock = Arc::new(SetClock(Mutex::new(at("2026-02-01T00:00:00Z"))));
    let mut scheduler = Scheduler::new(&dags, &db, counting.clone(), clock);
    scheduler.slots = Arc::new(basin_flow::slots::Slots::new(
        [("db".to_string(), 2)].into(),
    ));
    scheduler.tick().unwrap();
    scheduler.wait_idle();
    let most = counting.most.lock().unwrap().clone();
    assert_eq!(most["solo"], 1, "max_active = 1");
    assert!(most["db"] <= 2, "pool of 2: {most:?}");
    assert!(most["free"] >= 1, "{most:?}");
    assert!(store
        .runs("daily", 10)
        .unwrap()
        .iter()
        .all(|r| r.state == "success"));
}
