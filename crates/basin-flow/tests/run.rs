//! DAG runs: trigger rules across a run, retries with backoff on an
//! injected clock, templating and task outputs through real shell tasks,
//! timeouts, and the concurrency limit.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use basin_flow::dag::parse;
use basin_flow::rules::TaskState;
use basin_flow::run::{run_dag, Attempt, Clock, Executor, RunSpec};
use basin_flow::schedule::Schedule;
use chrono::{DateTime, Utc};

/// Time that passes only when slept; records the sleeps.
#[derive(Default)]
struct FakeClock {
    slept: Mutex<Vec<Duration>>,
}

impl Clock for FakeClock {
    fn now(&self) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-02T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }
    fn sleep(&self, d: Duration) {
        self.slept.lock().unwrap().push(d);
    }
    fn jitter(&self) -> f64 {
        1.0
    }
}

/// Injected faults: each task fails its first `failures[task]` attempts.
struct Flaky {
    failures: BTreeMap<&'static str, u32>,
    running: AtomicUsize,
    most: AtomicUsize,
}

impl Executor for Flaky {
    fn execute(&self, a: &Attempt) -> Result<String, String> {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(20));
        self.running.fetch_sub(1, Ordering::SeqCst);
        match self.failures.get(a.task.id.as_str()) {
            Some(n) if a.number <= *n => Err(format!("injected failure {}", a.number)),
            _ => Ok(format!("{} ok", a.task.id)),
        }
    }
}

fn flaky(failures: &[(&'static str, u32)]) -> Flaky {
    Flaky {
        failures: failures.iter().copied().collect(),
        running: AtomicUsize::new(0),
        most: AtomicUsize::new(0),
    }
}

fn spec(concurrency: usize) -> RunSpec {
    RunSpec {
        run_id: "manual__1".into(),
        interval: None,
        params: BTreeMap::new(),
        concurrency,
        finished: BTreeMap::new(),
        slots: None,
    }
}

const DAG: &str = r#"
[tasks.extract]
kind = "shell"
command = "x"
retries = 3
retry_delay = "10s"
max_retry_delay = "15s"

[tasks.load]
kind = "shell"
command = "x"
depends_on = ["extract"]

[tasks.alert]
kind = "shell"
command = "x"
depends_on = ["extract"]
trigger_rule = "one_failed"

[tasks.cleanup]
kind = "shell"
command = "x"
depends_on = ["load", "alert"]
trigger_rule = "all_done"
"#;

#[test]
fn retries_back_off_on_the_clock_then_succeed() {
    let dag = parse("etl", Path::new("etl.toml"), DAG).unwrap();
    let clock = FakeClock::default();
    let report = run_dag(&dag, &spec(4), &flaky(&[("extract", 2)]), &clock);
    let extract = report.task("extract").unwrap();
    assert_eq!((extract.state, extract.attempts), (TaskState::Success, 3));
    // 10 s, then doubled to 20 s but capped at 15 s.
    assert_eq!(
        *clock.slept.lock().unwrap(),
        [Duration::from_secs(10), Duration::from_secs(15)]
    );
    assert_eq!(report.task("load").unwrap().state, TaskState::Success);
    assert_eq!(report.task("alert").unwrap().state, TaskState::Skipped);
    assert_eq!(report.task("cleanup").unwrap().state, TaskState::Success);
    assert!(report.succeeded());
}

#[test]
fn a_failure_past_its_retries_follows_the_trigger_rules() {
    let dag = parse("etl", Path::new("etl.toml"), DAG).unwrap();
    let clock = FakeClock::default();
    let report = run_dag(&dag, &spec(4), &flaky(&[("extract", 9)]), &clock);
    let extract = report.task("extract").unwrap();
    assert_eq!((extract.state, extract.attempts), (TaskState::Failed, 4));
    assert!(extract
        .error
        .as_deref()
        .unwrap()
        .contains("injected failure 4"));
    assert_eq!(
        report.task("load").unwrap().state,
        TaskState::UpstreamFailed
    );
    assert_eq!(report.task("alert").unwrap().state, TaskState::Success);
    assert_eq!(report.task("cleanup").unwrap().state, TaskState::Success);
    assert!(!report.succeeded());
}

#[test]
fn concurrency_limits_tasks_running_at_once() {
    let text: String = (0..6)
        .map(|i| format!("[tasks.t{i}]\nkind = \"shell\"\ncommand = \"x\"\n"))
        .collect();
    let dag = parse("wide", Path::new("wide.toml"), &text).unwrap();
    for limit in [1, 3] {
        let executor = flaky(&[]);
        let report = run_dag(&dag, &spec(limit), &executor, &FakeClock::default());
        assert!(report.succeeded());
        assert_eq!(executor.most.load(Ordering::SeqCst), limit);
    }
}

/// Real shell tasks: an upstream's output and the run's data interval and
/// params reach a downstream command; a task past its timeout is killed.
#[test]
fn shell_tasks_pass_outputs_and_templates_and_time_out() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("result.txt");
    let text = format!(
        r#"
schedule = "0 0 * * *"
[params]
city = "nyc"
[tasks.count]
kind = "shell"
command = "echo 42 > \"$BASIN_TASK_OUTPUT\""
[tasks.report]
kind = "shell"
command = "echo '{{{{ outputs.count }}}} {{{{ params.city }}}} {{{{ ds }}}} {{{{ data_interval_end }}}}' > {}"
depends_on = ["count"]
[tasks.slow]
kind = "shell"
command = "sleep 5"
timeout = "300ms"
"#,
        out.display()
    );
    let dag = parse("daily", Path::new("daily.toml"), &text).unwrap();
    let schedule: &Schedule = dag.schedule.as_ref().unwrap();
    let now = DateTime::parse_from_rfc3339("2026-01-02T03:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let mut spec = spec(4);
    spec.interval = schedule.latest_ending_by(now);
    spec.params.insert("city".into(), "sf".into());
    struct Shell;
    impl Executor for Shell {
        fn execute(&self, a: &Attempt) -> Result<String, String> {
            basin_flow::shell::run_shell(a, None)
        }
    }
    let report = run_dag(&dag, &spec, &Shell, &basin_flow::run::SystemClock);
    assert_eq!(report.task("count").unwrap().output.as_deref(), Some("42"));
    assert_eq!(report.task("report").unwrap().state, TaskState::Success);
    let written = std::fs::read_to_string(&out).unwrap();
    assert_eq!(written.trim(), "42 sf 2026-01-01 2026-01-02T00:00:00Z");
    let slow = report.task("slow").unwrap();
    assert_eq!(slow.state, TaskState::Failed);
    assert!(
        slow.error.as_deref().unwrap().contains("timed out"),
        "{:?}",
        slow.error
    );
}

/// A sensor waits for its path without taking the run's only task slot:
/// the task that creates the path runs meanwhile. A sensor whose path never
/// appears fails at its timeout.
#[test]
fn sensors_wait_without_holding_a_task_slot() {
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("ready");
    let text = format!(
        r#"
[tasks.wait]
kind = "sensor"
path = "{flag}"
poke_interval = "50ms"
timeout = "20s"
[tasks.make]
kind = "shell"
command = "sleep 0.3; touch {flag}"
[tasks.after]
kind = "shell"
command = "true"
depends_on = ["wait"]
[tasks.never]
kind = "sensor"
path = "{missing}"
poke_interval = "50ms"
timeout = "200ms"
"#,
        flag = flag.display(),
        missing = dir.path().join("missing").display()
    );
    let dag = parse("sense", Path::new("sense.toml"), &text).unwrap();
    struct Shell;
    impl Executor for Shell {
        fn execute(&self, a: &Attempt) -> Result<String, String> {
            basin_flow::shell::run_shell(a, None)
        }
    }
    let report = run_dag(&dag, &spec(1), &Shell, &basin_flow::run::SystemClock);
    assert_eq!(report.task("wait").unwrap().state, TaskState::Success);
    assert_eq!(report.task("after").unwrap().state, TaskState::Success);
    let never = report.task("never").unwrap();
    assert_eq!(never.state, TaskState::Failed);
    assert!(
        never.error.as_deref().unwrap().contains("did not appear"),
        "{:?}",
        never.error
    );
}
