//! DAG files: one DAG per TOML file in a `dags/` folder, validated on load.
//!
//! ```toml
//! description = "Daily taxi features"
//! schedule = "0 2 * * *"          # cron; leave out for manual runs only
//! timezone = "Europe/Berlin"      # default UTC
//! start = "2026-01-01T00:00:00Z"  # first data interval starts here
//! catchup = false                 # default: only the latest interval
//! max_active_runs = 1
//!
//! [params]
//! min_fare = "2.5"
//!
//! [tasks.ingest]
//! kind = "sql"
//! sql = "INSERT INTO lake.trips SELECT * FROM raw WHERE ts >= '{{ data_interval_start }}'"
//!
//! [tasks.report]
//! kind = "shell"
//! command = "echo {{ params.min_fare }}"
//! depends_on = ["ingest"]
//! retries = 3
//! retry_delay = "10s"
//! ```
//!
//! Errors name the file, the line and the field.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::error::{FlowError, Result};
use crate::retry::RetryPolicy;
use crate::rules::TriggerRule;
use crate::schedule::Schedule;

/// What a task does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskKind {
    /// A SQL statement (`sql`) or file (`file`) run by the batch engine.
    Sql,
    /// A pipeline file (`file`) run in batch mode, or deployed / restarted
    /// as a stream pipeline (`mode = "deploy"` / `"restart"`).
    Pipeline,
    /// A command (`command`, with `env` and `cwd`).
    Shell,
    /// Train a model: `sql` or `file` holding a `CREATE MODEL` statement
    /// (run by the batch engine, which registers the new version).
    Train,
    /// Wait until `path` exists (a file, or a lake partition's folder), or
    /// until every partition of `topic` holds a record at or after the end
    /// of the data interval (its event-time watermark passed the end),
    /// checking every `poke_interval`, for at most `timeout`; a waiting
    /// sensor does not take one of the run's task slots.
    Sensor,
    /// Start another DAG (`dag`).
    Trigger,
}

impl TaskKind {
    fn parse(text: &str) -> Option<TaskKind> {
        Some(match text {
            "sql" => TaskKind::Sql,
            "pipeline" => TaskKind::Pipeline,
            "shell" => TaskKind::Shell,
            "train" => TaskKind::Train,
            "sensor" => TaskKind::Sensor,
            "trigger" => TaskKind::Trigger,
            _ => return None,
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            TaskKind::Sql => "sql",
            TaskKind::Pipeline => "pipeline",
            TaskKind::Shell => "shell",
            TaskKind::Train => "train",
            TaskKind::Sensor => "sensor",
            TaskKind::Trigger => "trigger",
        }
    }

    /// The fields a task of this kind must have (one of each group).
    fn required(&self) -> &'static [&'static [&'static str]] {
        match self {
            TaskKind::Sql => &[&["sql", "file"]],
            TaskKind::Pipeline => &[&["file"]],
            TaskKind::Shell => &[&["command"]],
            TaskKind::Train => &[&["sql", "file"]],
            TaskKind::Sensor => &[&["path", "topic"]],
            TaskKind::Trigger => &[&["dag"]],
        }
    }
}

/// A task as the runner sees it.
#[derive(Debug, Clone)]
pub struct Task {
    pub id: String,
    pub kind: TaskKind,
    /// Kind-specific text fields (`sql`, `file`, `command`, `cwd`, `path`,
    /// `topic`, `dag`, `mode`), templated before each run.
    pub fields: BTreeMap<String, String>,
    pub env: BTreeMap<String, String>,
    pub depends_on: Vec<String>,
    pub trigger_rule: TriggerRule,
    pub retry: RetryPolicy,
    pub timeout: Option<Duration>,
    pub pool: Option<String>,
    /// Instances of this task running at once, across runs.
    pub max_active: Option<usize>,
}

/// A validated DAG.
#[derive(Debug, Clone)]
pub struct Dag {
    pub id: String,
    pub file: PathBuf,
    pub description: String,
    pub schedule: Option<Schedule>,
    pub catchup: bool,
    pub max_active_runs: usize,
    pub params: BTreeMap<String, String>,
    /// Datasets (`lake.<table>`, `topic.<name>`) whose updates trigger a run.
    pub on_update: Vec<String>,
    /// In dependency order (every task after its upstreams).
    pub tasks: Vec<Task>,
}

impl Dag {
    pub fn task(&self, id: &str) -> Option<&Task> {
        self.tasks.iter().find(|t| t.id == id)
    }

    /// Tasks that depend on `id`.
    pub fn downstream(&self, id: &str) -> Vec<&Task> {
        self.tasks
            .iter()
            .filter(|t| t.depends_on.iter().any(|d| d == id))
            .collect()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DagFile {
    #[serde(default)]
    description: String,
    schedule: Option<Spanned<String>>,
    timezone: Option<Spanned<String>>,
    start: Option<Spanned<String>>,
    #[serde(default)]
    catchup: bool,
    max_active_runs: Option<Spanned<i64>>,
    #[serde(default)]
    params: BTreeMap<String, toml::Value>,
    #[serde(default)]
    on_update: Vec<Spanned<String>>,
    #[serde(default)]
    tasks: BTreeMap<String, Spanned<TaskFile>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskFile {
    kind: Spanned<String>,
    sql: Option<String>,
    file: Option<String>,
    command: Option<String>,
    cwd: Option<String>,
    path: Option<String>,
    topic: Option<String>,
    dag: Option<String>,
    mode: Option<String>,
    poke_interval: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    depends_on: Vec<Spanned<String>>,
    trigger_rule: Option<Spanned<String>>,
    retries: Option<u32>,
    retry_delay: Option<Spanned<String>>,
    retry_exponential: Option<bool>,
    max_retry_delay: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    pool: Option<String>,
    max_active: Option<usize>,
}

/// Reports errors at a byte offset of one file.
struct Located<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Located<'_> {
    fn at(&self, offset: usize, message: impl Into<String>) -> FlowError {
        let line = self.text[..offset.min(self.text.len())]
            .matches('\n')
            .count()
            + 1;
        FlowError::Dag {
            file: self.file.to_path_buf(),
            line,
            message: message.into(),
        }
    }

    fn spanned<T>(&self, s: &Spanned<T>, message: impl Into<String>) -> FlowError {
        self.at(s.span().start, message)
    }
}

/// Every DAG in `dir` (`*.toml`), sorted by id; the first invalid file is
/// an error naming it.
pub fn load_dir(dir: &Path) -> Result<Vec<Dag>> {
    let entries = std::fs::read_dir(dir).map_err(|source| FlowError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    let mut dags = Vec::with_capacity(files.len());
    for f in files {
        dags.push(load_file(&f)?);
    }
    let mut seen = BTreeSet::new();
    for d in &dags {
        if !seen.insert(d.id.clone()) {
            return Err(FlowError::Dag {
                file: d.file.clone(),
                line: 1,
                message: format!("another file already defines DAG '{}'", d.id),
            });
        }
    }
    Ok(dags)
}

/// One DAG file; its id is the file's stem.
pub fn load_file(file: &Path) -> Result<Dag> {
    let text = std::fs::read_to_string(file).map_err(|source| FlowError::Io {
        path: file.to_path_buf(),
        source,
    })?;
    let id = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    parse(&id, file, &text)
}

/// Parse and validate the text of DAG `id` read from `file`.
pub fn parse(id: &str, file: &Path, text: &str) -> Result<Dag> {
    let loc = Located { file, text };
    let raw: DagFile = toml::from_str(text).map_err(|e| {
        let offset = e.span().map_or(0, |s| s.start);
        loc.at(offset, e.message().to_string())
    })?;
    let schedule = schedule_of(&raw, &loc)?;
    let max_active_runs = match &raw.max_active_runs {
        Some(n) if *n.get_ref() < 1 => {
            return Err(loc.spanned(n, "max_active_runs: must be at least 1"))
        }
        Some(n) => *n.get_ref() as usize,
        None => 1,
    };
    let mut tasks = Vec::with_capacity(raw.tasks.len());
    for (task_id, def) in &raw.tasks {
        tasks.push(task_of(task_id, def, &loc)?);
    }
    check_dependencies(&raw, &loc)?;
    let tasks = in_dependency_order(tasks, &raw, &loc)?;
    for d in &raw.on_update {
        let name = d.get_ref();
        let named = |prefix: &str| name.strip_prefix(prefix).is_some_and(|n| !n.is_empty());
        if !named("lake.") && !named("topic.") {
            return Err(loc.spanned(
                d,
                format!(
                    "on_update: '{name}' is not a lake table (lake.<name>) or a topic (topic.<name>)"
                ),
            ));
        }
    }
    let params = raw
        .params
        .iter()
        .map(|(k, v)| (k.clone(), value_text(v)))
        .collect();
    Ok(Dag {
        id: id.to_string(),
        file: file.to_path_buf(),
        description: raw.description.clone(),
        schedule,
        catchup: raw.catchup,
        max_active_runs,
        params,
        on_update: raw.on_update.iter().map(|d| d.get_ref().clone()).collect(),
        tasks,
    })
}

fn value_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn schedule_of(raw: &DagFile, loc: &Located) -> Result<Option<Schedule>> {
    let Some(cron) = &raw.schedule else {
        return Ok(None);
    };
    let tz = raw.timezone.as_ref();
    let zone = tz.map_or("UTC", |t| t.get_ref().as_str());
    let start = raw.start.as_ref().map(|s| s.get_ref().as_str());
    Schedule::new(cron.get_ref(), zone, start)
        .map(Some)
        .map_err(|e| {
            let FlowError::Schedule(message) = &e else {
                return e;
            };
            let at = if message.starts_with("timezone") {
                tz.map_or(cron.span().start, |t| t.span().start)
            } else if message.starts_with("start") {
                raw.start.as_ref().map_or(0, |s| s.span().start)
            } else {
                cron.span().start
            };
            loc.at(at, message.clone())
        })
}

fn duration_field(
    s: &Option<Spanned<String>>,
    name: &str,
    loc: &Located,
) -> Result<Option<Duration>> {
    let Some(s) = s else { return Ok(None) };
    parse_duration(s.get_ref())
        .map(Some)
        .map_err(|e| loc.spanned(s, format!("{name}: {e}")))
}

fn task_of(id: &str, def: &Spanned<TaskFile>, loc: &Located) -> Result<Task> {
    let t = def.get_ref();
    let at = |message: String| loc.spanned(def, format!("task '{id}': {message}"));
    let kind = TaskKind::parse(t.kind.get_ref()).ok_or_else(|| {
        loc.spanned(
            &t.kind,
            format!(
                "task '{id}': kind '{}' is not one of sql, pipeline, shell, train, sensor, trigger",
                t.kind.get_ref()
            ),
        )
    })?;
    let mut fields = BTreeMap::new();
    for (name, value) in [
        ("sql", &t.sql),
        ("file", &t.file),
        ("command", &t.command),
        ("cwd", &t.cwd),
        ("path", &t.path),
        ("topic", &t.topic),
        ("dag", &t.dag),
        ("mode", &t.mode),
        ("poke_interval", &t.poke_interval),
    ] {
        if let Some(v) = value {
            fields.insert(name.to_string(), v.clone());
        }
    }
    if let (TaskKind::Pipeline, Some(mode)) = (kind, &t.mode) {
        if !["batch", "deploy", "restart"].contains(&mode.as_str()) {
            return Err(at(format!(
                "mode '{mode}' is not one of batch, deploy, restart"
            )));
        }
    }
    for group in kind.required() {
        if !group.iter().any(|f| fields.contains_key(*f)) {
            return Err(at(format!(
                "a {} task needs {}",
                kind.name(),
                group.join(" or ")
            )));
        }
    }
    let trigger_rule = match &t.trigger_rule {
        None => TriggerRule::AllSuccess,
        Some(r) => TriggerRule::parse(r.get_ref()).ok_or_else(|| {
            loc.spanned(
                r,
                format!(
                    "task '{id}': trigger_rule '{}' is not one of all_success, all_done, one_failed, one_success, none_failed",
                    r.get_ref()
                ),
            )
        })?,
    };
    let retry = RetryPolicy {
        retries: t.retries.unwrap_or(0),
        delay: duration_field(&t.retry_delay, "retry_delay", loc)?
            .unwrap_or(Duration::from_secs(30)),
        exponential: t.retry_exponential.unwrap_or(true),
        max_delay: duration_field(&t.max_retry_delay, "max_retry_delay", loc)?
            .unwrap_or(Duration::from_secs(3600)),
    };
    Ok(Task {
        id: id.to_string(),
        kind,
        fields,
        env: t.env.clone(),
        depends_on: t.depends_on.iter().map(|d| d.get_ref().clone()).collect(),
        trigger_rule,
        retry,
        timeout: duration_field(&t.timeout, "timeout", loc)?,
        pool: t.pool.clone(),
        max_active: t.max_active,
    })
}

fn check_dependencies(raw: &DagFile, loc: &Located) -> Result<()> {
    for (id, def) in &raw.tasks {
        for dep in &def.get_ref().depends_on {
            let name = dep.get_ref();
            if name == id {
                return Err(loc.spanned(dep, format!("task '{id}': depends on itself")));
            }
            if !raw.tasks.contains_key(name) {
                return Err(loc.spanned(
                    dep,
                    format!("task '{id}': depends_on '{name}', which is not a task of this DAG"),
                ));
            }
        }
    }
    Ok(())
}

/// Tasks sorted so each comes after its upstreams; a cycle is an error
/// naming its tasks.
fn in_dependency_order(tasks: Vec<Task>, raw: &DagFile, loc: &Located) -> Result<Vec<Task>> {
    let mut placed: BTreeSet<String> = BTreeSet::new();
    let mut left = tasks;
    let mut out = Vec::with_capacity(left.len());
    while !left.is_empty() {
        let (ready, blocked): (Vec<Task>, Vec<Task>) = left
            .into_iter()
            .partition(|t| t.depends_on.iter().all(|d| placed.contains(d)));
        if ready.is_empty() {
            let names: Vec<&str> = blocked.iter().map(|t| t.id.as_str()).collect();
            let first = &raw.tasks[&blocked[0].id];
            return Err(loc.spanned(
                first,
                format!("the dependencies form a cycle among {}", names.join(", ")),
            ));
        }
        placed.extend(ready.iter().map(|t| t.id.clone()));
        out.extend(ready);
        left = blocked;
    }
    Ok(out)
}

/// `30s`, `5m`, `2h`, `1d`, `500ms` (a number alone is seconds).
pub fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: f64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a duration like 30s, 5m, 2h"))?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        other => {
            return Err(format!(
                "unknown unit '{other}' in '{text}' (ms, s, m, h, d)"
            ))
        }
    };
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(text: &str) -> String {
        parse("d", Path::new("dags/d.toml"), text)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn tasks_come_in_dependency_order_with_defaults() {
        let dag = parse(
            "d",
            Path::new("d.toml"),
            "[tasks.b]\nkind = \"shell\"\ncommand = \"true\"\ndepends_on = [\"a\"]\n\
             [tasks.a]\nkind = \"shell\"\ncommand = \"true\"\nretries = 2\nretry_delay = \"5s\"\n",
        )
        .unwrap();
        let ids: Vec<&str> = dag.tasks.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(dag.tasks[0].retry.retries, 2);
        assert_eq!(dag.tasks[0].retry.delay, Duration::from_secs(5));
        assert_eq!(dag.tasks[1].trigger_rule, TriggerRule::AllSuccess);
        assert!(dag.schedule.is_none());
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let unknown_dep = "[tasks.a]\nkind = \"shell\"\ncommand = \"x\"\ndepends_on = [\"zz\"]\n";
        assert_eq!(
            error_of(unknown_dep),
            "dags/d.toml:4: task 'a': depends_on 'zz', which is not a task of this DAG"
        );
        let bad_kind = "[tasks.a]\nkind = \"bash\"\n";
        assert!(error_of(bad_kind).starts_with("dags/d.toml:2: task 'a': kind 'bash'"));
        let missing = "\n[tasks.a]\nkind = \"sql\"\n";
        assert!(
            error_of(missing).contains("a sql task needs sql or file"),
            "{}",
            error_of(missing)
        );
        let typo = "[tasks.a]\nkind = \"shell\"\ncommand = \"x\"\nretires = 3\n";
        let e = error_of(typo);
        assert!(
            e.starts_with("dags/d.toml:4:") && e.contains("retires"),
            "{e}"
        );
        let cron = "schedule = \"61 * * * *\"\n";
        assert!(
            error_of(cron).starts_with("dags/d.toml:1: schedule"),
            "{}",
            error_of(cron)
        );
        let delay = "[tasks.a]\nkind = \"shell\"\ncommand = \"x\"\nretry_delay = \"5 parsecs\"\n";
        assert!(
            error_of(delay).starts_with("dags/d.toml:4: retry_delay"),
            "{}",
            error_of(delay)
        );
    }

    #[test]
    fn cycles_are_refused() {
        let text = "[tasks.a]\nkind = \"shell\"\ncommand = \"x\"\ndepends_on = [\"b\"]\n\
                    [tasks.b]\nkind = \"shell\"\ncommand = \"x\"\ndepends_on = [\"a\"]\n";
        assert!(
            error_of(text).contains("cycle among a, b"),
            "{}",
            error_of(text)
        );
    }
}
