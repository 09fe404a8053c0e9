//! Orchestrator state in SQLite (`<data-dir>/flow.db`, WAL): DAG runs with
//! their data intervals, task instances with state, attempts and output,
//! and paused DAGs. A task's end is recorded before anything downstream
//! starts, so a scheduler restarted after a crash resumes each run without
//! re-running tasks that succeeded.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};

use crate::error::{FlowError, Result};
use crate::rules::TaskState;
use crate::run::TaskReport;
use crate::schedule::Interval;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS dags (dag TEXT PRIMARY KEY, paused INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS dag_runs (
    dag TEXT NOT NULL, run_id TEXT NOT NULL, kind TEXT NOT NULL,
    interval_start TEXT, interval_end TEXT, params TEXT NOT NULL,
    state TEXT NOT NULL, created_at TEXT NOT NULL, ended_at TEXT,
    PRIMARY KEY (dag, run_id));
CREATE TABLE IF NOT EXISTS dataset_versions (
    dag TEXT NOT NULL, dataset TEXT NOT NULL, version INTEGER NOT NULL,
    PRIMARY KEY (dag, dataset));
CREATE TABLE IF NOT EXISTS task_instances (
    dag TEXT NOT NULL, run_id TEXT NOT NULL, task TEXT NOT NULL,
    state TEXT NOT NULL, attempts INTEGER NOT NULL, output TEXT, error TEXT,
    duration_ms INTEGER NOT NULL, ended_at TEXT NOT NULL,
    PRIMARY KEY (dag, run_id, task));
";

/// One DAG run as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRow {
    pub dag: String,
    pub run_id: String,
    /// `scheduled`, `manual` or `backfill`.
    pub kind: String,
    pub interval: Option<Interval>,
    pub params: BTreeMap<String, String>,
    /// `queued`, `running`, `success` or `failed`.
    pub state: String,
}

/// What the scheduler and the `basin dag` commands need of a metadata
/// store: SQLite ([`Store`]) or PostgreSQL ([`crate::pg::PgStore`]).
pub trait Metadata {
    /// Add a queued run; false when the DAG already has a run with this id.
    fn create_run(&self, run: &RunRow) -> Result<bool>;
    /// Runs not finished yet (queued, or running), oldest first.
    fn unfinished_runs(&self) -> Result<Vec<RunRow>>;
    /// The latest runs of `dag`, newest first.
    fn runs(&self, dag: &str, limit: usize) -> Result<Vec<RunRow>>;
    /// Where the last scheduled interval of `dag` ended.
    fn last_scheduled_end(&self, dag: &str) -> Result<Option<DateTime<Utc>>>;
    fn set_run_state(&self, dag: &str, run_id: &str, state: &str) -> Result<()>;
    /// The tasks of a run that have finished, as recorded.
    fn finished_tasks(&self, dag: &str, run_id: &str) -> Result<BTreeMap<String, TaskReport>>;
    /// The version of `dataset` that `dag` last reacted to.
    fn seen_version(&self, dag: &str, dataset: &str) -> Result<Option<u64>>;
    fn set_seen_version(&self, dag: &str, dataset: &str, version: u64) -> Result<()>;
    fn set_paused(&self, dag: &str, paused: bool) -> Result<()>;
    fn paused(&self, dag: &str) -> Result<bool>;
}

impl Metadata for Store {
    fn create_run(&self, run: &RunRow) -> Result<bool> {
        Store::create_run(self, run)
    }
    fn unfinished_runs(&self) -> Result<Vec<RunRow>> {
        Store::unfinished_runs(self)
    }
    fn runs(&self, dag: &str, limit: usize) -> Result<Vec<RunRow>> {
        Store::runs(self, dag, limit)
    }
    fn last_scheduled_end(&self, dag: &str) -> Result<Option<DateTime<Utc>>> {
        Store::last_scheduled_end(self, dag)
    }
    fn set_run_state(&self, dag: &str, run_id: &str, state: &str) -> Result<()> {
        Store::set_run_state(self, dag, run_id, state)
    }
    fn finished_tasks(&self, dag: &str, run_id: &str) -> Result<BTreeMap<String, TaskReport>> {
        Store::finished_tasks(self, dag, run_id)
    }
    fn seen_version(&self, dag: &str, dataset: &str) -> Result<Option<u64>> {
        Store::seen_version(self, dag, dataset)
    }
    fn set_seen_version(&self, dag: &str, dataset: &str, version: u64) -> Result<()> {
        Store::set_seen_version(self, dag, dataset, version)
    }
    fn set_paused(&self, dag: &str, paused: bool) -> Result<()> {
        Store::set_paused(self, dag, paused)
    }
    fn paused(&self, dag: &str) -> Result<bool> {
        Store::paused(self, dag)
    }
}

/// The orchestrator's database.
pub struct Store {
    conn: Connection,
}

fn db(e: rusqlite::Error) -> FlowError {
    FlowError::Run(format!("metadata store: {e}"))
}

fn time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn parse_time(s: Option<String>) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(&s?)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

impl Store {
    /// Open (creating) the database at `path`.
    pub fn open(path: &Path) -> Result<Store> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| FlowError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let conn = Connection::open(path).map_err(db)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(db)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(db)?;
        conn.execute_batch(SCHEMA).map_err(db)?;
        Ok(Store { conn })
    }

    /// Add a queued run; false when the DAG already has a run with this id.
    pub fn create_run(&self, run: &RunRow) -> Result<bool> {
        let params = serde_json::to_string(&run.params).expect("strings serialize");
        let n = self
            .conn
            .execute(
                "INSERT OR IGNORE INTO dag_runs
                 (dag, run_id, kind, interval_start, interval_end, params, state, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'queued', ?7)",
                params![
                    run.dag,
                    run.run_id,
                    run.kind,
                    run.interval.map(|i| time(&i.start)),
                    run.interval.map(|i| time(&i.end)),
                    params,
                    time(&Utc::now()),
                ],
            )
            .map_err(db)?;
        Ok(n == 1)
    }

    fn runs_where(&self, clause: &str, args: &[&dyn rusqlite::ToSql]) -> Result<Vec<RunRow>> {
        let sql = format!(
            "SELECT dag, run_id, kind, interval_start, interval_end, params, state
             FROM dag_runs WHERE {clause}"
        );
        let mut stmt = self.conn.prepare(&sql).map_err(db)?;
        let rows = stmt
            .query_map(args, |r| {
                let start = parse_time(r.get(3)?);
                let end = parse_time(r.get(4)?);
                let params: String = r.get(5)?;
                Ok(RunRow {
                    dag: r.get(0)?,
                    run_id: r.get(1)?,
                    kind: r.get(2)?,
                    interval: start.zip(end).map(|(start, end)| Interval { start, end }),
                    params: serde_json::from_str(&params).unwrap_or_default(),
                    state: r.get(6)?,
                })
            })
            .map_err(db)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db)
    }

    /// Runs not finished yet (queued, or running when a scheduler stopped).
    pub fn unfinished_runs(&self) -> Result<Vec<RunRow>> {
        self.runs_where(
            "state IN ('queued', 'running') ORDER BY created_at, interval_start",
            &[],
        )
    }

    /// The latest runs of `dag`, newest first.
    pub fn runs(&self, dag: &str, limit: usize) -> Result<Vec<RunRow>> {
        self.runs_where(
            "dag = ?1 ORDER BY interval_end DESC, created_at DESC LIMIT ?2",
            &[&dag, &(limit as i64)],
        )
    }

    /// Where the last scheduled or backfilled interval of `dag` ended.
    pub fn last_scheduled_end(&self, dag: &str) -> Result<Option<DateTime<Utc>>> {
        let end: Option<Option<String>> = self
            .conn
            .query_row(
                "SELECT max(interval_end) FROM dag_runs WHERE dag = ?1 AND kind = 'scheduled'",
                [dag],
                |r| r.get(0),
            )
            .optional()
            .map_err(db)?;
        Ok(parse_time(end.flatten()))
    }

    pub fn set_run_state(&self, dag: &str, run_id: &str, state: &str) -> Result<()> {
        let ended = matches!(state, "success" | "failed").then(|| time(&Utc::now()));
        self.conn
            .execute(
                "UPDATE dag_runs SET state = ?3, ended_at = ?4 WHERE dag = ?1 AND run_id = ?2",
                params![dag, run_id, state, ended],
            )
            .map_err(db)?;
        Ok(())
    }

    /// Record how a task of a run ended.
    pub fn record_task(&self, dag: &str, run_id: &str, t: &TaskReport) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO task_instances
                 (dag, run_id, task, state, attempts, output, error, duration_ms, ended_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    dag,
                    run_id,
                    t.id,
                    t.state.name(),
                    t.attempts,
                    t.output,
                    t.error,
                    t.duration.as_millis() as i64,
                    time(&Utc::now()),
                ])
            })
            .map_err(db)?;
        Ok(())
    }

    /// The tasks of a run that have finished, as recorded.
    pub fn finished_tasks(&self, dag: &str, run_id: &str) -> Result<BTreeMap<String, TaskReport>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT task, state, attempts, output, error, duration_ms
                 FROM task_instances WHERE dag = ?1 AND run_id = ?2",
            )
            .map_err(db)?;
        let rows = stmt
            .query_map(params![dag, run_id], |r| {
                let state: String = r.get(1)?;
                Ok(TaskReport {
                    id: r.get(0)?,
                    state: state_of(&state),
                    attempts: r.get(2)?,
                    output: r.get(3)?,
                    error: r.get(4)?,
                    duration: Duration::from_millis(r.get::<_, i64>(5)? as u64),
                })
            })
            .map_err(db)?;
        let mut out = BTreeMap::new();
        for row in rows {
            let t = row.map_err(db)?;
            if t.state.is_done() {
                out.insert(t.id.clone(), t);
            }
        }
        Ok(out)
    }

    /// The version of `dataset` that `dag` last reacted to.
    pub fn seen_version(&self, dag: &str, dataset: &str) -> Result<Option<u64>> {
        let v: Option<i64> = self
            .conn
            .query_row(
                "SELECT version FROM dataset_versions WHERE dag = ?1 AND dataset = ?2",
                [dag, dataset],
                |r| r.get(0),
            )
            .optional()
            .map_err(db)?;
        Ok(v.map(|v| v as u64))
    }

    pub fn set_seen_version(&self, dag: &str, dataset: &str, version: u64) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO dataset_versions (dag, dataset, version) VALUES (?1, ?2, ?3)
                 ON CONFLICT (dag, dataset) DO UPDATE SET version = excluded.version",
                params![dag, dataset, version as i64],
            )
            .map_err(db)?;
        Ok(())
    }

    pub fn set_paused(&self, dag: &str, paused: bool) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO dags (dag, paused) VALUES (?1, ?2)
                 ON CONFLICT (dag) DO UPDATE SET paused = excluded.paused",
                params![dag, paused],
            )
            .map_err(db)?;
        Ok(())
    }

    pub fn paused(&self, dag: &str) -> Result<bool> {
        let p: Option<bool> = self
            .conn
            .query_row("SELECT paused FROM dags WHERE dag = ?1", [dag], |r| {
                r.get(0)
            })
            .optional()
            .map_err(db)?;
        Ok(p.unwrap_or(false))
    }
}

pub(crate) fn state_of(name: &str) -> TaskState {
    match name {
        "success" => TaskState::Success,
        "failed" => TaskState::Failed,
        "upstream_failed" => TaskState::UpstreamFailed,
        "skipped" => TaskState::Skipped,
        "running" => TaskState::Running,
        "up_for_retry" => TaskState::UpForRetry,
        _ => TaskState::Pending,
    }
}
