//! Exactly-once into PostgreSQL. A job writing to a PostgreSQL table has
//! one connection, shared by its sink tasks, and one open transaction per
//! checkpoint: rows go into it as they arrive (an upsert on the table's
//! primary key, or a plain insert when it has none). Once the checkpoint's
//! manifest is on disk the coordinator records the checkpoint id in
//! `basin_pipeline_checkpoints` (by job and table) in the same transaction
//! and commits it, then
//! the next one begins. On restart that row says which checkpoint's output
//! the table holds, and the job resumes from exactly that one. The row is
//! updated only from the id this instance last saw, so a second instance of
//! the same job fails instead of writing the same rows twice.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use basin_sql::postgres::{connect, describe, redact};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use tokio::runtime::Runtime;
use tokio_postgres::Client;

use crate::error::{Result, StreamError};

/// Where each job's last committed checkpoint is kept, in the sink's database.
const CHECKPOINTS: &str = "CREATE TABLE IF NOT EXISTS basin_pipeline_checkpoints (
    job text NOT NULL,
    target text NOT NULL,
    checkpoint bigint NOT NULL,
    committed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job, target))";

const PRIMARY_KEY: &str = "SELECT a.attname::text FROM pg_index i
    JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
    WHERE i.indrelid = $1::text::regclass AND i.indisprimary
    ORDER BY array_position(i.indkey::int2[], a.attnum)";

/// The table a job writes and the statement that writes a batch.
#[derive(Debug, Clone)]
pub struct PgTarget {
    pub url: String,
    /// `"schema"."table"`, quoted.
    pub table: String,
    /// The columns the job writes, named as in PostgreSQL.
    pub schema: SchemaRef,
    /// The job updates rows (GROUP BY without a window, top-N): the
    /// table needs a primary key to upsert on.
    pub upserts: bool,
}

/// The connection and open transaction of one job.
pub struct PgTxn {
    runtime: Option<Runtime>,
    client: Mutex<Client>,
    target: PgTarget,
    insert: String,
    job: String,
    /// The id in `basin_pipeline_checkpoints` as this instance last saw it.
    last: Mutex<Option<u64>>,
    committed: Mutex<u64>,
    progress: Condvar,
    failed: AtomicBool,
}

impl std::fmt::Debug for PgTxn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgTxn({} -> {})", self.job, self.target.table)
    }
}

impl Drop for PgTxn {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

fn pg_failed(target: &PgTarget, what: &str, e: tokio_postgres::Error) -> StreamError {
    StreamError::Task(format!(
        "postgres {} ({}): {what}: {}",
        target.table,
        redact(&target.url),
        describe(&e)
    ))
}

impl PgTxn {
    /// Connect, read the job's last committed checkpoint and the table's
    /// primary key, and begin the first transaction.
    pub fn open(target: PgTarget, job: &str) -> Result<PgTxn> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("basin-pg-sink")
            .enable_all()
            .build()
            .map_err(|e| StreamError::Task(format!("starting the postgres sink runtime: {e}")))?;
        let (client, keys, last) = runtime.block_on(setup(&target, job))?;
        let insert = insert_sql(&target, &keys);
        tracing::debug!(job, sql = %insert, "postgres sink statement");
        Ok(PgTxn {
            runtime: Some(runtime),
            client: Mutex::new(client),
            insert,
            job: job.to_string(),
            last: Mutex::new(last),
            committed: Mutex::new(last.unwrap_or(0)),
            progress: Condvar::new(),
            failed: AtomicBool::new(false),
            target,
        })
    }

    fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.as_ref().expect("running").block_on(f)
    }

    /// Write `batch` (columns in the table's order) into the open transaction.
    pub fn write(&self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let rows = json_rows(&conform(batch, &self.target.schema)?)?;
        let client = self.client.lock().expect("lock");
        self.block_on(client.execute(&self.insert, &[&rows]))
            .map_err(|e| pg_failed(&self.target, "writing rows", e))?;
        Ok(())
    }

    /// Record checkpoint `id` and commit its transaction, then begin the next.
    pub fn commit(&self, id: u64) -> Result<()> {
        let outcome = self.commit_inner(id);
        match &outcome {
            Ok(()) => *self.committed.lock().expect("lock") = id,
            Err(_) => self.failed.store(true, Ordering::SeqCst),
        }
        self.progress.notify_all();
        outcome
    }

    fn commit_inner(&self, id: u64) -> Result<()> {
        let client = self.client.lock().expect("lock");
        let mut last = self.last.lock().expect("lock");
        let job = self.job.as_str();
        let new = id as i64;
        let recorded = self.block_on(async {
            match *last {
                Some(prev) => {
                    client
                        .execute(
                            "UPDATE basin_pipeline_checkpoints SET checkpoint = $3, committed_at = now() \
                             WHERE job = $1 AND target = $2 AND checkpoint = $4",
                            &[&job, &self.target.table, &new, &(prev as i64)],
                        )
                        .await
                }
                None => {
                    client
                        .execute(
                            "INSERT INTO basin_pipeline_checkpoints (job, target, checkpoint) \
                             VALUES ($1, $2, $3) ON CONFLICT (job, target) DO NOTHING",
                            &[&job, &self.target.table, &new],
                        )
                        .await
                }
            }
        });
        let recorded =
            recorded.map_err(|e| pg_failed(&self.target, "recording the checkpoint", e))?;
        if recorded != 1 {
            let _ = self.block_on(client.batch_execute("ROLLBACK"));
            return Err(StreamError::Task(format!(
                "postgres {}: another instance of job {job} committed checkpoints since this one \
                 started; stopping so that no row is written twice",
                self.target.table
            )));
        }
        self.block_on(client.batch_execute("COMMIT; BEGIN"))
            .map_err(|e| pg_failed(&self.target, "committing", e))?;
        *last = Some(id);
        Ok(())
    }

    /// Block a sink task until checkpoint `id` is committed.
    pub fn wait_committed(&self, id: u64) -> Result<()> {
        let mut committed = self.committed.lock().expect("lock");
        while *committed < id {
            if self.failed.load(Ordering::SeqCst) {
                return Err(StreamError::Task(
                    "the checkpoint's postgres transaction failed".into(),
                ));
            }
            committed = self
                .progress
                .wait_timeout(committed, Duration::from_millis(200))
                .expect("lock")
                .0;
        }
        Ok(())
    }

    /// Wake waiting sink tasks: the job is failing.
    pub fn fail(&self) {
        self.failed.store(true, Ordering::SeqCst);
        self.progress.notify_all();
    }

    /// The checkpoint whose rows the table holds (`None` before the first).
    pub fn last_committed(&self) -> Option<u64> {
        *self.last.lock().expect("lock")
    }
}

/// Connect, make sure the checkpoint table exists, and read the table's
/// primary key and the job's last committed checkpoint.
async fn setup(target: &PgTarget, job: &str) -> Result<(Client, Vec<String>, Option<u64>)> {
    let client = connect(&target.url).await?;
    client
        .batch_execute(CHECKPOINTS)
        .await
        .map_err(|e| pg_failed(target, "creating basin_pipeline_checkpoints", e))?;
    let keys: Vec<String> = client
        .query(PRIMARY_KEY, &[&target.table])
        .await
        .map_err(|e| pg_failed(target, "reading the primary key", e))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if target.upserts && keys.is_empty() {
        return Err(StreamError::Unsupported(format!(
            "postgres {}: the query keeps updating its rows (GROUP BY without a window, or top-N), \
             and the table has no primary key to upsert on; add one on the grouping columns",
            target.table
        )));
    }
    for k in &keys {
        if target.schema.field_with_name(k).is_err() {
            return Err(StreamError::Unsupported(format!(
                "postgres {}: primary key column {k} is not among the columns the pipeline writes",
                target.table
            )));
        }
    }
    let last: Option<i64> = client
        .query_opt(
            "SELECT checkpoint FROM basin_pipeline_checkpoints WHERE job = $1 AND target = $2",
            &[&job, &target.table],
        )
        .await
        .map_err(|e| pg_failed(target, "reading the last checkpoint", e))?
        .map(|r| r.get(0));
    client
        .batch_execute("BEGIN")
        .await
        .map_err(|e| pg_failed(target, "beginning a transaction", e))?;
    Ok((client, keys, last.map(|l| l as u64)))
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// One statement for a batch of rows given as a JSON array in `$1`: an
/// upsert on `keys` (the last row of the batch wins for a key), or a
/// plain insert when the table has no primary key.
fn insert_sql(target: &PgTarget, keys: &[String]) -> String {
    let t = &target.table;
    let cols: Vec<String> = target
        .schema
        .fields()
        .iter()
        .map(|f| quote(f.name()))
        .collect();
    let list = cols.join(", ");
    let rows = format!("json_populate_recordset(NULL::{t}, $1::text::json) WITH ORDINALITY AS r");
    if keys.is_empty() {
        return format!("INSERT INTO {t} ({list}) SELECT {list} FROM {rows}");
    }
    let key_list = keys.iter().map(|k| quote(k)).collect::<Vec<_>>().join(", ");
    let updates: Vec<String> = cols
        .iter()
        .filter(|c| !keys.iter().any(|k| quote(k) == **c))
        .map(|c| format!("{c} = EXCLUDED.{c}"))
        .collect();
    let action = if updates.is_empty() {
        "NOTHING".to_string()
    } else {
        format!("UPDATE SET {}", updates.join(", "))
    };
    format!(
        "INSERT INTO {t} ({list}) SELECT DISTINCT ON ({key_list}) {list} FROM {rows} \
         ORDER BY {key_list}, r.ordinality DESC ON CONFLICT ({key_list}) DO {action}"
    )
}

/// `batch` with the table's column names and types, by position.
fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    if batch.num_columns() != schema.fields().len() {
        return Err(StreamError::Task(format!(
            "the pipeline gives {} columns, the postgres table takes {}",
            batch.num_columns(),
            schema.fields().len()
        )));
    }
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| cast(c, f.data_type()))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// The rows as one JSON array of objects.
fn json_rows(batch: &RecordBatch) -> Result<String> {
    let mut writer = datafusion::arrow::json::ArrayWriter::new(Vec::new());
    writer.write(batch)?;
    writer.finish()?;
    String::from_utf8(writer.into_inner())
        .map_err(|e| StreamError::Task(format!("rows as JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn target() -> PgTarget {
        PgTarget {
            url: "postgres://x".into(),
            table: "\"s\".\"t\"".into(),
            schema: Arc::new(Schema::new(vec![
                Field::new("k", DataType::Int64, false),
                Field::new("v", DataType::Int64, true),
            ])),
            upserts: false,
        }
    }

    #[test]
    fn upserts_on_the_primary_key_and_inserts_without_one() {
        let up = insert_sql(&target(), &["k".into()]);
        assert!(up.contains("DISTINCT ON (\"k\")"), "{up}");
        assert!(
            up.ends_with("ON CONFLICT (\"k\") DO UPDATE SET \"v\" = EXCLUDED.\"v\""),
            "{up}"
        );
        let plain = insert_sql(&target(), &[]);
        assert!(!plain.contains("ON CONFLICT"), "{plain}");
        let all_keys = insert_sql(&target(), &["k".into(), "v".into()]);
        assert!(all_keys.ends_with("DO NOTHING"), "{all_keys}");
    }
}
