//! Golden-file tests: every `tests/slt/*.slt` file runs with the
//! `sqllogictest` runner against a fresh `Engine` over its own temp data dir.
//!
//! Before a file runs, two placeholders in its text are replaced:
//! `__DATA__` by the absolute path of `tests/slt/data` (the CSV/JSON
//! fixtures) and `__TMP__` by a scratch folder of that file's own; the
//! engine's data dir is `__TMP__/basin`, so a file can read the Parquet files
//! the lake wrote. Every `connection NAME` opens another `Engine` on the same
//! data dir, which is how a file checks what survives a new session.
//! `__PG_URL__`/`__PG_SCHEMA__` give a file a real PostgreSQL server and a
//! fresh schema prepared by its `NAME.pg.sql`; `__BROKERS__` a Basin broker.
//!
//! Queries render each cell as text (`NULL` for nulls, `(empty)` for empty
//! strings) with column types `I` (integers), `R` (floats and decimals), `T`
//! (strings) and `?` (anything else), checked strictly. A statement that
//! reports `N rows` (lake writes, INSERT) completes with count N, so
//! `statement count N` checks it.

use std::path::{Path, PathBuf};

mod support;

use async_trait::async_trait;
use basin_broker::{Broker, BrokerConfig};
use basin_sql::{Engine, Output, SqlError};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use sqllogictest::{strict_column_validator, AsyncDB, DBOutput, DefaultColumnType, Runner};

/// One session over a data dir.
struct Basin {
    engine: Engine,
}

#[async_trait]
impl AsyncDB for Basin {
    type Error = SqlError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, SqlError> {
        let Some(last) = self.engine.execute(sql).await?.pop() else {
            return Ok(DBOutput::StatementComplete(0));
        };
        let df = match last {
            Output::Message(message) => return Ok(DBOutput::StatementComplete(rows_in(&message))),
            Output::Rows(df) => df,
        };
        let schema = df.schema().as_arrow().clone();
        let batches = df.collect().await?;
        if schema.fields().is_empty() {
            // DDL that DataFusion runs itself (CREATE VIEW, ...).
            return Ok(DBOutput::StatementComplete(0));
        }
        let types = schema
            .fields()
            .iter()
            .map(|f| column_type(f.data_type()))
            .collect();
        let options = FormatOptions::default().with_null("NULL");
        let mut rows = Vec::new();
        for batch in &batches {
            let formatters = batch
                .columns()
                .iter()
                .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| SqlError::Invalid(e.to_string()))?;
            for row in 0..batch.num_rows() {
                rows.push(
                    formatters
                        .iter()
                        .map(|f| match f.value(row).to_string() {
                            s if s.is_empty() => "(empty)".to_string(),
                            s => s,
                        })
                        .collect(),
                );
            }
        }
        Ok(DBOutput::Rows { types, rows })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "basin"
    }

    async fn sleep(dur: std::time::Duration) {
        tokio::time::sleep(dur).await
    }
}

/// `created lake.t with 3 rows` / `3 rows written` → 3; other messages → 0.
fn rows_in(message: &str) -> u64 {
    let Some(end) = message.find(" rows") else {
        return 0;
    };
    let digits: String = message[..end]
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    digits.parse().unwrap_or(0)
}

fn column_type(t: &DataType) -> DefaultColumnType {
    match t {
        t if t.is_integer() => DefaultColumnType::Integer,
        t if t.is_floating()
            || matches!(t, DataType::Decimal128(..) | DataType::Decimal256(..)) =>
        {
            DefaultColumnType::FloatingPoint
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => DefaultColumnType::Text,
        _ => DefaultColumnType::Any,
    }
}

fn slt_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/slt")
}

/// `__PG_URL__` and `__PG_SCHEMA__`: the test server and a fresh schema in
/// it, set up by the file's sibling `NAME.pg.sql` (run in PostgreSQL).
async fn with_postgres(path: &Path, script: String) -> String {
    if !script.contains("__PG_URL__") {
        return script;
    }
    let url = support::pg_url();
    let client = support::pg_client(&url).await;
    let schema = support::fresh_schema(&client).await;
    let setup = path.with_extension("pg.sql");
    if let Ok(sql) = std::fs::read_to_string(&setup) {
        let sql = sql.replace("__PG_SCHEMA__", &schema);
        if let Err(e) = client.batch_execute(&sql).await {
            panic!("{}: {e:?}", setup.display());
        }
    }
    script
        .replace("__PG_URL__", &url)
        .replace("__PG_SCHEMA__", &schema)
}

/// `__BROKERS__`: a Basin broker started in this process for the file.
async fn with_broker(script: String, dir: &Path) -> (String, Option<tokio::task::JoinHandle<()>>) {
    if !script.contains("__BROKERS__") {
        return (script, None);
    }
    let config = BrokerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.join("broker"),
        ..Default::default()
    };
    let broker = Broker::bind(config).await.unwrap();
    let addr = broker.local_addr().to_string();
    let server = tokio::spawn(async move {
        let _ = broker.serve(std::future::pending::<()>()).await;
    });
    (script.replace("__BROKERS__", &addr), Some(server))
}

async fn run_file(path: &Path) -> Result<(), String> {
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let data_dir = tmp.path().join("basin");
    std::fs::create_dir_all(&data_dir).map_err(|e| e.to_string())?;
    let script = std::fs::read_to_string(path)
        .map_err(|e| e.to_string())?
        .replace("__DATA__", &slt_dir().join("data").display().to_string())
        .replace("__TMP__", &tmp.path().display().to_string());
    let script = with_postgres(path, script).await;
    let (script, broker) = with_broker(script, tmp.path()).await;
    let mut runner = Runner::new(move || {
        let data_dir = data_dir.clone();
        async move {
            Ok(Basin {
                engine: Engine::open(&data_dir).await?,
            })
        }
    });
    runner.with_column_validator(strict_column_validator);
    let name = path.file_name().unwrap().to_string_lossy().to_string();
    let result = runner
        .run_script_with_name_async(&script, name)
        .await
        .map_err(|e| e.display(false).to_string());
    if let Some(broker) = broker {
        broker.abort();
    }
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slt_files() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(slt_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "expected the .slt files, found {files:?}");
    let mut failures = Vec::new();
    for file in &files {
        if let Err(e) = run_file(file).await {
            failures.push(format!("{}:\n{e}", file.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} .slt files failed:\n\n{}",
        failures.len(),
        files.len(),
        failures.join("\n\n")
    );
}

#[test]
fn messages_give_row_counts() {
    assert_eq!(rows_in("created lake.t2 with 3 rows"), 3);
    assert_eq!(rows_in("12 rows written"), 12);
    assert_eq!(rows_in("created external table t"), 0);
}
