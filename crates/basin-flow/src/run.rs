//! One DAG run: tasks start when their trigger rule allows (upstreams in
//! dependency order), up to a concurrency limit; a failed attempt is retried
//! after its backoff; fields are templated with the run's data interval,
//! params and the small outputs of finished upstream tasks. Time and sleep
//! come from a [`Clock`], so tests run retries without waiting.

use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::dag::{Dag, Task, TaskKind};
use crate::rules::{Decision, TaskState};
use crate::schedule::Interval;
use crate::template::{render, Vars};

/// Where a run's time comes from.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
    fn sleep(&self, d: Duration);
    /// In [0, 1): spreads retry delays.
    fn jitter(&self) -> f64;
}

/// The wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep(&self, d: Duration) {
        std::thread::sleep(d)
    }

    fn jitter(&self) -> f64 {
        let nanos = Utc::now().timestamp_subsec_nanos();
        f64::from(nanos % 1_000_000) / 1_000_000.0
    }
}

/// One attempt of one task, its fields templated.
#[derive(Debug, Clone)]
pub struct Attempt<'a> {
    pub dag: &'a str,
    pub run_id: &'a str,
    pub task: &'a Task,
    pub fields: BTreeMap<String, String>,
    pub env: BTreeMap<String, String>,
    pub number: u32,
    pub interval: Option<Interval>,
    /// Set when the attempt must stop (a worker's claim was taken away);
    /// executors that can stop early check it.
    pub cancel: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

/// Runs attempts of tasks; the binary adds SQL and pipeline tasks to the
/// built-in shell ones.
pub trait Executor: Send + Sync {
    /// Run one attempt: its small output, or why it failed.
    fn execute(&self, attempt: &Attempt) -> Result<String, String>;

    /// The log of an attempt that has ended, if this executor keeps one;
    /// workers store it with the attempt so `basin dag logs` finds it
    /// wherever the attempt ran.
    fn log(&self, _attempt: &Attempt) -> Option<String> {
        None
    }

    /// One look of a sensor: what it found once its condition holds,
    /// `None` while it does not. Built in: `path` sensors; the binary adds
    /// `topic` ones.
    fn poke(&self, attempt: &Attempt) -> Result<Option<String>, String> {
        path_poke(&attempt.fields)
    }
}

/// A `path` sensor's look: the path, once it exists.
pub fn path_poke(fields: &BTreeMap<String, String>) -> Result<Option<String>, String> {
    match (fields.get("path"), fields.get("topic")) {
        (Some(path), _) => Ok(std::path::Path::new(path).exists().then(|| path.clone())),
        (None, Some(_)) => Err("topic sensors need the basin binary's executor".into()),
        (None, None) => Err("a sensor needs path or topic".into()),
    }
}

/// How one task of a run ended.
#[derive(Debug, Clone)]
pub struct TaskReport {
    pub id: String,
    pub state: TaskState,
    pub attempts: u32,
    pub output: Option<String>,
    pub error: Option<String>,
    pub duration: Duration,
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub dag: String,
    pub run_id: String,
    pub interval: Option<Interval>,
    pub tasks: Vec<TaskReport>,
}

impl RunReport {
    /// No task failed (skipped ones are fine).
    pub fn succeeded(&self) -> bool {
        self.tasks
            .iter()
            .all(|t| matches!(t.state, TaskState::Success | TaskState::Skipped))
    }

    pub fn task(&self, id: &str) -> Option<&TaskReport> {
        self.tasks.iter().find(|t| t.id == id)
    }
}

/// What a run is for.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub run_id: String,
    pub interval: Option<Interval>,
    /// Override the DAG's params.
    pub params: BTreeMap<String, String>,
    /// Tasks running at once.
    pub concurrency: usize,
    /// Tasks of this run that finished before (a resumed run): kept as
    /// they are, not run again.
    pub finished: BTreeMap<String, TaskReport>,
    /// Pools and per-task limits shared with other runs.
    pub slots: Option<std::sync::Arc<crate::slots::Slots>>,
}

/// Run `dag` once.
pub fn run_dag(dag: &Dag, spec: &RunSpec, executor: &dyn Executor, clock: &dyn Clock) -> RunReport {
    run_dag_with(dag, spec, executor, clock, &|_| {})
}

/// Run `dag` once, telling `on_finish` about each task as it finishes
/// (the scheduler records it before anything downstream starts).
pub fn run_dag_with(
    dag: &Dag,
    spec: &RunSpec,
    executor: &dyn Executor,
    clock: &dyn Clock,
    on_finish: &(dyn Fn(&TaskReport) + Sync),
) -> RunReport {
    // Tasks by position in dependency order, upstreams as positions.
    let at: HashMap<&str, usize> = dag
        .tasks
        .iter()
        .enumerate()
        .map(|(i, t)| (t.id.as_str(), i))
        .collect();
    let ups: Vec<Vec<usize>> = dag
        .tasks
        .iter()
        .map(|t| t.depends_on.iter().map(|d| at[d.as_str()]).collect())
        .collect();
    let mut reports: Vec<TaskReport> = dag
        .tasks
        .iter()
        .map(|t| {
            spec.finished
                .get(&t.id)
                .cloned()
                .unwrap_or_else(|| pending(&t.id))
        })
        .collect();
    let mut waiting: Vec<usize> = (0..dag.tasks.len())
        .filter(|&i| reports[i].state == TaskState::Pending)
        .collect();
    let (done_tx, done_rx) = mpsc::channel::<TaskReport>();
    std::thread::scope(|scope| {
        let mut running = 0usize;
        loop {
            waiting.retain(|&i| {
                let task = &dag.tasks[i];
                let upstream: Vec<TaskState> = ups[i].iter().map(|&u| reports[u].state).collect();
                match task.trigger_rule.decide(&upstream) {
                    Decision::Wait => true,
                    Decision::Finish(state) => {
                        reports[i].state = state;
                        on_finish(&reports[i]);
                        false
                    }
                    Decision::Run if is_sensor(task) || running < spec.concurrency.max(1) => {
                        let vars = vars_for(dag, spec, task, |u| reports[at[u]].output.clone());
                        reports[i].state = TaskState::Running;
                        running += usize::from(!is_sensor(task));
                        let tx = done_tx.clone();
                        scope.spawn(move || {
                            let _ = tx.send(run_task(dag, spec, task, &vars, executor, clock));
                        });
                        false
                    }
                    Decision::Run => true,
                }
            });
            if reports.iter().all(|r| r.state.is_done()) {
                break;
            }
            let Ok(report) = done_rx.recv() else { break };
            let i = at[report.id.as_str()];
            if !is_sensor(&dag.tasks[i]) {
                running -= 1;
            }
            on_finish(&report);
            tracing::info!(dag = %dag.id, task = %report.id, state = report.state.name(), attempts = report.attempts, "task finished");
            reports[i] = report;
        }
    });
    RunReport {
        dag: dag.id.clone(),
        run_id: spec.run_id.clone(),
        interval: spec.interval,
        tasks: reports,
    }
}

fn pending(id: &str) -> TaskReport {
    TaskReport {
        id: id.to_string(),
        state: TaskState::Pending,
        attempts: 0,
        output: None,
        error: None,
        duration: Duration::ZERO,
    }
}

/// The template variables of `task` in this run, given each upstream's
/// output.
fn vars_for(
    dag: &Dag,
    spec: &RunSpec,
    task: &Task,
    output_of: impl Fn(&str) -> Option<String>,
) -> Vars {
    let outputs: BTreeMap<String, String> = task
        .depends_on
        .iter()
        .filter_map(|up| Some((up.clone(), output_of(up)?)))
        .collect();
    task_vars(dag, spec, task, &outputs)
}

/// The template variables of `task` in the run `spec`, given the outputs
/// of its finished upstream tasks (also used by remote workers).
pub(crate) fn task_vars(
    dag: &Dag,
    spec: &RunSpec,
    task: &Task,
    outputs: &BTreeMap<String, String>,
) -> Vars {
    let mut vars = Vars::default();
    vars.set("dag_id", dag.id.clone());
    vars.set("run_id", spec.run_id.clone());
    vars.set("task_id", task.id.clone());
    if let Some(i) = spec.interval {
        vars.set(
            "data_interval_start",
            i.start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        );
        vars.set(
            "data_interval_end",
            i.end.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        );
        vars.set("ds", i.start.format("%Y-%m-%d").to_string());
    }
    for (k, v) in dag.params.iter().chain(&spec.params) {
        vars.set(&format!("params.{k}"), v.clone());
    }
    for (up, out) in outputs {
        vars.set(&format!("outputs.{up}"), out.clone());
    }
    vars
}

pub(crate) fn is_sensor(task: &Task) -> bool {
    task.kind == TaskKind::Sensor
}

/// A sensor's poke interval (default 30 s).
pub(crate) fn poke_interval(fields: &BTreeMap<String, String>) -> Result<Duration, String> {
    Ok(fields
        .get("poke_interval")
        .map(|p| crate::dag::parse_duration(p))
        .transpose()
        .map_err(|e| format!("poke_interval: {e}"))?
        .unwrap_or(Duration::from_secs(30)))
}

/// What a sensor waits for, for messages.
pub(crate) fn sensor_target(fields: &BTreeMap<String, String>) -> String {
    match (fields.get("path"), fields.get("topic")) {
        (Some(path), _) => format!("{path} did not appear"),
        (None, Some(topic)) => format!("topic {topic} did not reach the end of the data interval"),
        (None, None) => "nothing to wait for".into(),
    }
}

/// A sensor: poke until its condition holds or its timeout (default 1 h)
/// passes, sleeping on the clock in between.
fn run_sensor(
    task: &Task,
    attempt: &Attempt,
    executor: &dyn Executor,
    clock: &dyn Clock,
) -> Result<String, String> {
    let poke = poke_interval(&attempt.fields)?;
    let timeout = task.timeout.unwrap_or(Duration::from_secs(3600));
    let mut waited = Duration::ZERO;
    loop {
        if let Some(found) = executor.poke(attempt)? {
            return Ok(found);
        }
        if waited >= timeout {
            let what = sensor_target(&attempt.fields);
            return Err(format!("sensor: {what} within {timeout:?}"));
        }
        clock.sleep(poke);
        waited += poke;
    }
}

/// Every attempt of one task, with backoff between them.
fn run_task(
    dag: &Dag,
    spec: &RunSpec,
    task: &Task,
    vars: &Vars,
    executor: &dyn Executor,
    clock: &dyn Clock,
) -> TaskReport {
    let started = Instant::now();
    let mut report = pending(&task.id);
    let rendered =
        render_all(&task.fields, vars).and_then(|f| Ok((f, render_all(&task.env, vars)?)));
    let (fields, env) = match rendered {
        Ok(r) => r,
        Err(e) => {
            report.state = TaskState::Failed;
            report.error = Some(e.to_string());
            return report;
        }
    };
    for number in 1..=task.retry.retries + 1 {
        report.attempts = number;
        let attempt = Attempt {
            dag: &dag.id,
            run_id: &spec.run_id,
            task,
            fields: fields.clone(),
            env: env.clone(),
            number,
            interval: spec.interval,
            cancel: None,
        };
        let outcome = if is_sensor(task) {
            run_sensor(task, &attempt, executor, clock)
        } else {
            let _held = spec.slots.as_ref().map(|s| s.acquire(&dag.id, task));
            executor.execute(&attempt)
        };
        match outcome {
            Ok(output) => {
                report.state = TaskState::Success;
                report.output = Some(output);
                report.error = None;
                break;
            }
            Err(e) => {
                tracing::warn!(dag = %dag.id, task = %task.id, attempt = number, error = %e, "task attempt failed");
                report.state = TaskState::Failed;
                report.error = Some(e);
                if number <= task.retry.retries {
                    clock.sleep(task.retry.delay_after(number, clock.jitter()));
                }
            }
        }
    }
    report.duration = started.elapsed();
    report
}

pub(crate) fn render_all(
    fields: &BTreeMap<String, String>,
    vars: &Vars,
) -> crate::Result<BTreeMap<String, String>> {
    fields
        .iter()
        .map(|(k, v)| Ok((k.clone(), render(v, vars)?)))
        .collect()
}
