//! PostgreSQL tables as Basin tables, through a real connection:
//!
//! ```sql
//! CREATE EXTERNAL TABLE customers STORED AS POSTGRES
//!   LOCATION 'postgres://user:pass@host:5432/db' OPTIONS ('table' 'public.customers');
//! ```
//!
//! Columns may be declared (they must exist in PostgreSQL, and are read as
//! the declared types) or left out (they come from the PostgreSQL catalog).
//! A scan sends one `COPY (SELECT ...) TO STDOUT` with the projection, the
//! translatable filters and the limit pushed into the query (EXPLAIN shows
//! it), and parses the CSV stream into Arrow batches as it arrives. An insert
//! is one transaction: `TRUNCATE` for `INSERT OVERWRITE`, then `COPY ... FROM
//! STDIN`, so readers see all of the rows or none.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use datafusion::arrow::csv::reader::Format;
use datafusion::arrow::csv::{ReaderBuilder, WriterBuilder};
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{Session, TableProvider, TableProviderFactory};
use datafusion::common::{plan_err, DataFusionError};
use datafusion::datasource::sink::{DataSink, DataSinkExec};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{CreateExternalTable, Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, SendableRecordBatchStream,
};
use futures::{SinkExt, StreamExt, TryStreamExt};
use tokio_postgres::{Client, NoTls};

use crate::channel_exec::{BatchSender, ChannelExec, Producer};
use crate::pg_sql::{arrow_type, filter_sql, ident, select_item, table_ident};

type DfResult<T> = datafusion::error::Result<T>;

const ROWS_PER_BATCH: usize = 8192;
/// How COPY spells NULL both ways, so empty strings stay empty strings.
const NULL_TEXT: &str = "\\N";

fn pg_err(what: &str, location: &str, e: impl fmt::Display) -> DataFusionError {
    DataFusionError::External(format!("postgres {location}: {what}: {e}").into())
}

fn pg_error(what: &str, location: &str, e: tokio_postgres::Error) -> DataFusionError {
    pg_err(what, location, describe(&e))
}

/// A PostgreSQL error with the server's own message, detail and context
/// (`Display` of a server error alone says only "db error").
pub fn describe(e: &tokio_postgres::Error) -> String {
    let Some(db) = e.as_db_error() else {
        return e.to_string();
    };
    let mut text = format!("{} ({})", db.message(), db.code().code());
    if let Some(detail) = db.detail() {
        text.push_str(&format!("; {detail}"));
    }
    if let Some(context) = db.where_() {
        text.push_str(&format!("; {context}"));
    }
    text
}

/// `url` without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

/// Open a session with the settings the CSV exchange relies on.
/// A client with Basin's session settings (UTC, ISO dates); its connection
/// runs as a task on the current tokio runtime.
pub async fn connect(url: &str) -> DfResult<Client> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .map_err(|e| pg_error("cannot connect", &redact(url), e))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "postgres connection ended with an error");
        }
    });
    client
        .batch_execute("SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'")
        .await
        .map_err(|e| pg_error("session setup", &redact(url), e))?;
    Ok(client)
}

/// Makes `PostgresTable`s for `STORED AS POSTGRES`.
#[derive(Debug, Default)]
pub struct PostgresTableFactory;

#[async_trait]
impl TableProviderFactory for PostgresTableFactory {
    async fn create(
        &self,
        _state: &dyn Session,
        cmd: &CreateExternalTable,
    ) -> DfResult<Arc<dyn TableProvider>> {
        let Some(url) = cmd.locations.first() else {
            return plan_err!("STORED AS POSTGRES needs LOCATION 'postgres://user@host:port/db'");
        };
        let table = cmd
            .options
            .get("table")
            .or_else(|| cmd.options.get("format.table"))
            .cloned()
            .unwrap_or_else(|| cmd.name.table().to_string());
        let declared = cmd.schema.as_arrow();
        let client = connect(url).await?;
        let schema = resolve_schema(&client, url, &table, declared).await?;
        Ok(Arc::new(PostgresTable {
            url: url.clone(),
            table,
            schema,
        }))
    }
}

/// The table's Arrow schema: the declared columns, checked against
/// PostgreSQL, or all of PostgreSQL's columns when none are declared.
async fn resolve_schema(
    client: &Client,
    url: &str,
    table: &str,
    declared: &Schema,
) -> DfResult<SchemaRef> {
    let location = redact(url);
    let rows = client
        .query(
            "SELECT a.attname::text, t.typname::text, a.atttypmod, a.attnotnull \
             FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
             WHERE a.attrelid = $1::text::regclass AND a.attnum > 0 AND NOT a.attisdropped \
             ORDER BY a.attnum",
            &[&table_ident(table)],
        )
        .await
        .map_err(|e| pg_error(&format!("table {table}"), &location, e))?;
    let remote: Vec<Field> = rows
        .iter()
        .map(|r| {
            let (name, typname): (String, String) = (r.get(0), r.get(1));
            Field::new(name, arrow_type(&typname, r.get(2)), !r.get::<_, bool>(3))
        })
        .collect();
    if declared.fields().is_empty() {
        return Ok(Arc::new(Schema::new(remote)));
    }
    for field in declared.fields() {
        if !remote.iter().any(|r| r.name() == field.name()) {
            let names: Vec<&str> = remote.iter().map(|f| f.name().as_str()).collect();
            return plan_err!(
                "column '{}' is not in postgres table {table} at {location} (its columns: {})",
                field.name(),
                names.join(", ")
            );
        }
        if select_item(field.name(), field.data_type()).is_none() {
            return plan_err!(
                "column '{}': type {} cannot be read from postgres",
                field.name(),
                field.data_type()
            );
        }
    }
    Ok(Arc::new(declared.clone()))
}

/// A PostgreSQL table read and written over a connection per statement.
#[derive(Debug)]
pub struct PostgresTable {
    url: String,
    table: String,
    schema: SchemaRef,
}

impl PostgresTable {
    /// The connection URL (with its password: do not print it).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The table's name in PostgreSQL, quoted (`"schema"."table"`).
    pub fn quoted_name(&self) -> String {
        table_ident(&self.table)
    }

    /// The `SELECT` for a scan: projected columns, pushed filters, limit.
    fn select_sql(&self, schema: &Schema, filters: &[Expr], limit: Option<usize>) -> String {
        let items: Vec<String> = schema
            .fields()
            .iter()
            .map(|f| select_item(f.name(), f.data_type()).expect("checked at CREATE"))
            .collect();
        // A projection of no columns (COUNT(*)) still needs one row per row.
        let items = if items.is_empty() {
            "1".to_string()
        } else {
            items.join(", ")
        };
        let mut sql = format!("SELECT {items} FROM {}", table_ident(&self.table));
        let pushed: Vec<String> = filters.iter().filter_map(filter_sql).collect();
        if !pushed.is_empty() {
            sql.push_str(&format!(" WHERE {}", pushed.join(" AND ")));
        }
        if let Some(limit) = limit {
            sql.push_str(&format!(" LIMIT {limit}"));
        }
        sql
    }
}

#[async_trait]
impl TableProvider for PostgresTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| match filter_sql(f) {
                Some(_) => TableProviderFilterPushDown::Exact,
                None => TableProviderFilterPushDown::Unsupported,
            })
            .collect())
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let schema = match projection {
            Some(p) => Arc::new(self.schema.project(p)?),
            None => self.schema.clone(),
        };
        let sql = self.select_sql(&schema, filters, limit);
        let (url, query, read_schema) = (self.url.clone(), sql.clone(), schema.clone());
        let produce: Producer = Arc::new(move |_, tx: BatchSender| {
            let (url, sql, schema) = (url.clone(), query.clone(), read_schema.clone());
            tokio::spawn(async move {
                if let Err(e) = copy_out(&url, &sql, schema, &tx).await {
                    let _ = tx.send(Err(e)).await;
                }
            });
        });
        Ok(Arc::new(ChannelExec::new(
            "PostgresScan",
            sql,
            schema,
            1,
            produce,
        )))
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        op: InsertOp,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if op == InsertOp::Replace {
            return plan_err!("postgres tables take INSERT INTO or INSERT OVERWRITE");
        }
        let sink = PostgresSink {
            url: self.url.clone(),
            table: self.table.clone(),
            schema: self.schema.clone(),
            overwrite: op == InsertOp::Overwrite,
        };
        Ok(Arc::new(DataSinkExec::new(input, Arc::new(sink), None)))
    }
}

/// Run `sql` as `COPY ... TO STDOUT` and send its rows on as Arrow batches.
async fn copy_out(url: &str, sql: &str, schema: SchemaRef, tx: &BatchSender) -> DfResult<()> {
    let location = redact(url);
    let client = connect(url).await?;
    let copy = format!("COPY ({sql}) TO STDOUT (FORMAT csv, NULL '{NULL_TEXT}')");
    let stream = client
        .copy_out(&copy)
        .await
        .map_err(|e| pg_error(sql, &location, e))?;
    let counted = schema.fields().is_empty();
    // With no columns (COUNT(*)) the query selects a constant: count lines.
    let read_schema = if counted {
        Arc::new(Schema::new(vec![Field::new(
            "one",
            datafusion::arrow::datatypes::DataType::Int32,
            false,
        )]))
    } else {
        schema.clone()
    };
    let null = regex::Regex::new(r"^\\N$").expect("valid regex");
    let mut decoder = ReaderBuilder::new(read_schema)
        .with_format(Format::default().with_null_regex(null))
        .with_batch_size(ROWS_PER_BATCH)
        .build_decoder();
    let mut stream = std::pin::pin!(stream);
    let send = |batch: RecordBatch| {
        let batch = if counted {
            RecordBatch::try_new_with_options(
                schema.clone(),
                vec![],
                &datafusion::arrow::record_batch::RecordBatchOptions::new()
                    .with_row_count(Some(batch.num_rows())),
            )
        } else {
            Ok(batch)
        };
        batch.map_err(DataFusionError::from)
    };
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| pg_error(sql, &location, e))?;
        let mut buf: &[u8] = &chunk;
        while !buf.is_empty() {
            let read = decoder.decode(buf)?;
            buf = &buf[read..];
            if read == 0 || decoder.capacity() == 0 {
                if let Some(batch) = decoder.flush()? {
                    if tx.send(send(batch)).await.is_err() {
                        return Ok(()); // the consumer stopped reading (LIMIT)
                    }
                }
            }
        }
    }
    if let Some(batch) = decoder.flush()? {
        let _ = tx.send(send(batch)).await;
    }
    Ok(())
}

/// Writes inserted rows with `COPY FROM STDIN` in one transaction.
#[derive(Debug)]
struct PostgresSink {
    url: String,
    table: String,
    schema: SchemaRef,
    overwrite: bool,
}

impl DisplayAs for PostgresSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "PostgresSink: table={}", self.table)
    }
}

#[async_trait]
impl DataSink for PostgresSink {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    async fn write_all(
        &self,
        mut data: SendableRecordBatchStream,
        _ctx: &Arc<TaskContext>,
    ) -> DfResult<u64> {
        let location = redact(&self.url);
        let err = |what: &str, e: tokio_postgres::Error| pg_error(what, &location, e);
        let mut client = connect(&self.url).await?;
        let tx = client.transaction().await.map_err(|e| err("BEGIN", e))?;
        let target = table_ident(&self.table);
        if self.overwrite {
            tx.batch_execute(&format!("TRUNCATE {target}"))
                .await
                .map_err(|e| err("TRUNCATE", e))?;
        }
        let columns: Vec<String> = self
            .schema
            .fields()
            .iter()
            .map(|f| ident(f.name()))
            .collect();
        let copy = format!(
            "COPY {target} ({}) FROM STDIN (FORMAT csv, NULL '{NULL_TEXT}')",
            columns.join(", ")
        );
        let sink = tx
            .copy_in::<_, Bytes>(&copy)
            .await
            .map_err(|e| err(&copy, e))?;
        let mut sink = std::pin::pin!(sink);
        while let Some(batch) = data.try_next().await? {
            sink.send(Bytes::from(csv_bytes(&batch)?))
                .await
                .map_err(|e| err(&copy, e))?;
        }
        let rows = sink.as_mut().finish().await.map_err(|e| err(&copy, e))?;
        tx.commit().await.map_err(|e| err("COMMIT", e))?;
        Ok(rows)
    }
}

/// A batch as CSV lines in the form `COPY ... (FORMAT csv, NULL '\N')` reads.
fn csv_bytes(batch: &RecordBatch) -> DfResult<Vec<u8>> {
    let mut buf = Vec::new();
    let mut writer = WriterBuilder::new()
        .with_header(false)
        .with_null(NULL_TEXT.to_string())
        .build(&mut buf);
    writer.write(batch)?;
    drop(writer);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact("postgres://me:secret@db:5432/x"),
            "postgres://me@db:5432/x"
        );
        assert_eq!(redact("postgres://me@db/x"), "postgres://me@db/x");
        assert_eq!(redact("host=db user=me"), "host=db user=me");
    }
}
