//! Orchestrator state in PostgreSQL (`--metadata postgres://...`), shared
//! by schedulers and workers in several processes or machines. The tables
//! (`flow_dags`, `flow_runs`, `flow_dataset_versions`, `flow_tasks`,
//! `flow_attempts`, `flow_workers`, `flow_pools`) are created on first use. A
//! `schema=NAME` parameter in the URL puts them in that schema (created if
//! missing); its notification channel is then `basin_flow_NAME`, so
//! several installations (or tests) share one database without seeing
//! each other. The queue of task instances is in [`crate::queue`].

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use postgres::{Client, NoTls};

use crate::error::{FlowError, Result};
use crate::run::TaskReport;
use crate::schedule::Interval;
use crate::store::{state_of, Metadata, RunRow};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS flow_dags (
    dag TEXT PRIMARY KEY, paused BOOLEAN NOT NULL DEFAULT false);
CREATE TABLE IF NOT EXISTS flow_runs (
    dag TEXT NOT NULL, run_id TEXT NOT NULL, kind TEXT NOT NULL,
    interval_start TIMESTAMPTZ, interval_end TIMESTAMPTZ, params TEXT NOT NULL,
    state TEXT NOT NULL, created_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    ended_at TIMESTAMPTZ,
    PRIMARY KEY (dag, run_id));
CREATE TABLE IF NOT EXISTS flow_dataset_versions (
    dag TEXT NOT NULL, dataset TEXT NOT NULL, version BIGINT NOT NULL,
    PRIMARY KEY (dag, dataset));
CREATE TABLE IF NOT EXISTS flow_tasks (
    dag TEXT NOT NULL, run_id TEXT NOT NULL, task TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, max_attempts INTEGER NOT NULL,
    not_before TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    queued_at TIMESTAMPTZ,
    claim_token BIGINT, worker TEXT, heartbeat_at TIMESTAMPTZ,
    started_at TIMESTAMPTZ, ended_at TIMESTAMPTZ,
    output TEXT, error TEXT, duration_ms BIGINT NOT NULL DEFAULT 0,
    pool TEXT, max_active INTEGER,
    PRIMARY KEY (dag, run_id, task));
CREATE TABLE IF NOT EXISTS flow_pools (pool TEXT PRIMARY KEY, slots INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS flow_tasks_queued ON flow_tasks (not_before) WHERE state = 'queued';
CREATE INDEX IF NOT EXISTS flow_tasks_running ON flow_tasks (heartbeat_at) WHERE state = 'running';
CREATE SEQUENCE IF NOT EXISTS flow_claims;
CREATE TABLE IF NOT EXISTS flow_attempts (
    claim_token BIGINT PRIMARY KEY,
    dag TEXT NOT NULL, run_id TEXT NOT NULL, task TEXT NOT NULL,
    attempt INTEGER NOT NULL, worker TEXT NOT NULL,
    started_at TIMESTAMPTZ NOT NULL, ended_at TIMESTAMPTZ,
    outcome TEXT NOT NULL DEFAULT 'running', error TEXT);
ALTER TABLE flow_attempts ADD COLUMN IF NOT EXISTS log TEXT;
CREATE TABLE IF NOT EXISTS flow_workers (
    worker TEXT PRIMARY KEY, started_at TIMESTAMPTZ NOT NULL, heartbeat_at TIMESTAMPTZ NOT NULL);
";

/// Serializes schema creation across processes (an arbitrary constant).
const SCHEMA_LOCK: i64 = 0x6261_7369_6e66;

/// A connection to the PostgreSQL metadata store.
pub struct PgStore {
    client: Mutex<Client>,
    /// The LISTEN/NOTIFY channel of this installation.
    pub channel: String,
    /// The URL, without its password, for messages.
    pub shown: String,
}

/// A `--metadata` URL taken apart: the connection settings and the
/// optional schema.
#[derive(Debug)]
struct Target {
    config: postgres::Config,
    schema: Option<String>,
    shown: String,
}

fn bad(shown: &str, what: impl std::fmt::Display) -> FlowError {
    FlowError::Metadata(format!("--metadata '{shown}': {what}"))
}

/// An error with its causes, `: `-separated (PostgreSQL errors keep the
/// useful part, such as "Connection refused", in their source).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// The URL with any password replaced by `***`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (auth, host) = match rest.split_once('@') {
        Some(parts) => parts,
        None => return url.to_string(),
    };
    match auth.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

fn parse(url: &str) -> Result<Target> {
    let shown = redact(url);
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(bad(
            &shown,
            "not a PostgreSQL URL (expected postgres://user@host:port/database)",
        ));
    }
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut schema = None;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("schema", name)) => schema = Some(check_schema(&shown, name)?),
            _ => kept.push(pair),
        }
    }
    let rest = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    let config = postgres::Config::from_str(&rest).map_err(|e| bad(&shown, chain(&e)))?;
    Ok(Target {
        config,
        schema,
        shown,
    })
}

/// A schema name must be a plain lower-case identifier.
fn check_schema(shown: &str, name: &str) -> Result<String> {
    let ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 40;
    if !ok {
        return Err(bad(
            shown,
            format!("schema '{name}' must be a lower-case identifier (a-z, 0-9, _; at most 40)"),
        ));
    }
    Ok(name.to_string())
}

/// Where a config points, for error messages.
fn endpoint(config: &postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config.get_dbname().unwrap_or("(default database)");
    format!("{host}:{port}/{db}")
}

/// A database error as a metadata error.
pub(crate) fn sql(e: postgres::Error) -> FlowError {
    FlowError::Metadata(format!("PostgreSQL metadata store: {}", chain(&e)))
}

impl PgStore {
    /// Connect to `url`, creating the schema and tables when missing.
    pub fn connect(url: &str) -> Result<PgStore> {
        let mut target = parse(url)?;
        if target.config.get_connect_timeout().is_none() {
            target.config.connect_timeout(Duration::from_secs(10));
        }
        let mut client = target.config.connect(NoTls).map_err(|e| {
            FlowError::Metadata(format!(
                "cannot connect to PostgreSQL at {} (--metadata '{}'): {}",
                endpoint(&target.config),
                target.shown,
                chain(&e)
            ))
        })?;
        prepare(&mut client, target.schema.as_deref())?;
        let channel = match &target.schema {
            Some(s) => format!("basin_flow_{s}"),
            None => "basin_flow".to_string(),
        };
        Ok(PgStore {
            client: Mutex::new(client),
            channel,
            shown: target.shown,
        })
    }

    /// The connection, for one statement or transaction at a time.
    pub(crate) fn client(&self) -> MutexGuard<'_, Client> {
        self.client.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Start receiving this installation's notifications on this
    /// connection (see [`PgStore::wait`]).
    pub fn listen(&self) -> Result<()> {
        let sql_text = format!("LISTEN {}", self.channel);
        self.client().batch_execute(&sql_text).map_err(sql)
    }

    /// Wait up to `timeout` for a notification; true when one came (the
    /// others pending are drained too).
    pub fn wait(&self, timeout: Duration) -> Result<bool> {
        use postgres::fallible_iterator::FallibleIterator;
        let mut client = self.client();
        let mut notes = client.notifications();
        let got = notes.timeout_iter(timeout).next().map_err(sql)?.is_some();
        while notes.iter().next().map_err(sql)?.is_some() {}
        Ok(got)
    }

    fn runs_where(
        &self,
        clause: &str,
        args: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Result<Vec<RunRow>> {
        let text = format!(
            "SELECT dag, run_id, kind, interval_start, interval_end, params, state
             FROM flow_runs WHERE {clause}"
        );
        let rows = self.client().query(&text, args).map_err(sql)?;
        Ok(rows.iter().map(run_row).collect())
    }
}

pub(crate) fn run_row(r: &postgres::Row) -> RunRow {
    let start: Option<DateTime<Utc>> = r.get(3);
    let end: Option<DateTime<Utc>> = r.get(4);
    let params: String = r.get(5);
    RunRow {
        dag: r.get(0),
        run_id: r.get(1),
        kind: r.get(2),
        interval: start.zip(end).map(|(start, end)| Interval { start, end }),
        params: serde_json::from_str(&params).unwrap_or_default(),
        state: r.get(6),
    }
}

/// Select the schema and create the tables, one process at a time.
fn prepare(client: &mut Client, schema: Option<&str>) -> Result<()> {
    let mut tx = client.transaction().map_err(sql)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
        .map_err(sql)?;
    if let Some(s) = schema {
        tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {s}"))
            .map_err(sql)?;
        tx.batch_execute(&format!("SET search_path TO {s}"))
            .map_err(sql)?;
    }
    tx.batch_execute(SCHEMA).map_err(sql)?;
    tx.commit().map_err(sql)?;
    if let Some(s) = schema {
        // SET inside a committed transaction stays for the session, but
        // say it again outside one to be plain about it.
        client
            .batch_execute(&format!("SET search_path TO {s}"))
            .map_err(sql)?;
    }
    Ok(())
}

impl Metadata for PgStore {
    fn create_run(&self, run: &RunRow) -> Result<bool> {
        let params = serde_json::to_string(&run.params).expect("strings serialize");
        let n = self
            .client()
            .execute(
                "INSERT INTO flow_runs (dag, run_id, kind, interval_start, interval_end, params, state)
                 VALUES ($1, $2, $3, $4, $5, $6, 'queued') ON CONFLICT DO NOTHING",
                &[
                    &run.dag,
                    &run.run_id,
                    &run.kind,
                    &run.interval.map(|i| i.start),
                    &run.interval.map(|i| i.end),
                    &params,
                ],
            )
            .map_err(sql)?;
        Ok(n == 1)
    }

    fn unfinished_runs(&self) -> Result<Vec<RunRow>> {
        self.runs_where(
            "state IN ('queued', 'running') ORDER BY created_at, interval_start",
            &[],
        )
    }

    fn runs(&self, dag: &str, limit: usize) -> Result<Vec<RunRow>> {
        self.runs_where(
            "dag = $1 ORDER BY interval_end DESC NULLS LAST, created_at DESC LIMIT $2",
            &[&dag, &(limit as i64)],
        )
    }

    fn last_scheduled_end(&self, dag: &str) -> Result<Option<DateTime<Utc>>> {
        let row = self
            .client()
            .query_one(
                "SELECT max(interval_end) FROM flow_runs WHERE dag = $1 AND kind = 'scheduled'",
                &[&dag],
            )
            .map_err(sql)?;
        Ok(row.get(0))
    }

    fn set_run_state(&self, dag: &str, run_id: &str, state: &str) -> Result<()> {
        self.client()
            .execute(
                "UPDATE flow_runs SET state = $3,
                 ended_at = CASE WHEN $3 IN ('success', 'failed') THEN clock_timestamp() END
                 WHERE dag = $1 AND run_id = $2",
                &[&dag, &run_id, &state],
            )
            .map_err(sql)?;
        Ok(())
    }

    fn finished_tasks(&self, dag: &str, run_id: &str) -> Result<BTreeMap<String, TaskReport>> {
        let rows = self
            .client()
            .query(
                "SELECT task, state, attempts, output, error, duration_ms FROM flow_tasks
                 WHERE dag = $1 AND run_id = $2
                 AND state IN ('success', 'failed', 'upstream_failed', 'skipped')",
                &[&dag, &run_id],
            )
            .map_err(sql)?;
        let mut out = BTreeMap::new();
        for r in rows {
            let state: String = r.get(1);
            let t = TaskReport {
                id: r.get(0),
                state: state_of(&state),
                attempts: r.get::<_, i32>(2) as u32,
                output: r.get(3),
                error: r.get(4),
                duration: Duration::from_millis(r.get::<_, i64>(5) as u64),
            };
            out.insert(t.id.clone(), t);
        }
        Ok(out)
    }

    fn seen_version(&self, dag: &str, dataset: &str) -> Result<Option<u64>> {
        let row = self
            .client()
            .query_opt(
                "SELECT version FROM flow_dataset_versions WHERE dag = $1 AND dataset = $2",
                &[&dag, &dataset],
            )
            .map_err(sql)?;
        Ok(row.map(|r| r.get::<_, i64>(0) as u64))
    }

    fn set_seen_version(&self, dag: &str, dataset: &str, version: u64) -> Result<()> {
        self.client()
            .execute(
                "INSERT INTO flow_dataset_versions (dag, dataset, version) VALUES ($1, $2, $3)
                 ON CONFLICT (dag, dataset) DO UPDATE SET version = excluded.version",
                &[&dag, &dataset, &(version as i64)],
            )
            .map_err(sql)?;
        Ok(())
    }

    fn set_paused(&self, dag: &str, paused: bool) -> Result<()> {
        self.client()
            .execute(
                "INSERT INTO flow_dags (dag, paused) VALUES ($1, $2)
                 ON CONFLICT (dag) DO UPDATE SET paused = excluded.paused",
                &[&dag, &paused],
            )
            .map_err(sql)?;
        Ok(())
    }

    fn paused(&self, dag: &str) -> Result<bool> {
        let row = self
            .client()
            .query_opt("SELECT paused FROM flow_dags WHERE dag = $1", &[&dag])
            .map_err(sql)?;
        Ok(row.is_some_and(|r| r.get(0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_urls_say_what_is_wrong() {
        let e = parse("mysql://u@h/db").unwrap_err().to_string();
        assert!(e.contains("not a PostgreSQL URL"), "{e}");
        let e = parse("postgres://u:secret@h/db?schema=Bad-Name")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("schema 'Bad-Name'") && !e.contains("secret"),
            "{e}"
        );
        let e = parse("postgres://u@h:notaport/db").unwrap_err().to_string();
        assert!(e.contains("--metadata 'postgres://u@h:notaport/db'"), "{e}");
        assert!(e.contains("port"), "{e}");
        let e = parse("postgres://u@h/db?colour=red")
            .unwrap_err()
            .to_string();
        assert!(e.contains("colour"), "{e}");
    }

    #[test]
    fn the_schema_parameter_is_ours() {
        let t = parse("postgres://u:pw@h:5433/db?schema=flow_1&connect_timeout=3").unwrap();
        assert_eq!(t.schema.as_deref(), Some("flow_1"));
        assert_eq!(endpoint(&t.config), "h:5433/db");
        assert_eq!(
            t.shown,
            "postgres://u:***@h:5433/db?schema=flow_1&connect_timeout=3"
        );
    }

    #[test]
    fn an_unreachable_server_is_named() {
        let e = PgStore::connect("postgres://u@127.0.0.1:1/flowdb?connect_timeout=2")
            .err()
            .expect("nothing listens on port 1")
            .to_string();
        assert!(
            e.contains("cannot connect to PostgreSQL at 127.0.0.1:1/flowdb"),
            "{e}"
        );
        assert!(e.to_lowercase().contains("refused"), "{e}");
    }
}
