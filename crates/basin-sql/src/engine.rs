//! The SQL engine: a DataFusion session with Basin's catalog (persistent
//! external tables, the `lake` schema), statement routing (DDL persistence,
//! lake CTAS) and errors that point at the SQL.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::catalog::TableProvider;
use datafusion::dataframe::DataFrame;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::{collect, ExecutionPlanProperties};
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use datafusion::sql::parser::CreateExternalTable;
use datafusion::sql::parser::Statement;
use datafusion::sql::planner::object_name_to_table_reference;
use datafusion::sql::sqlparser::ast::{
    Ident, Insert, ObjectName, ObjectType, Statement as SqlStatement, TableObject,
};
use tracing::warn;

use crate::catalog::{render_external, Catalog};
use crate::checked_files::CheckedFileFactory;
use crate::error::{Result, SqlError};
use crate::lake::{Lake, LakeMeta, Leftover};
use crate::lake_table::{LakeSchema, LakeTable};
use crate::model_sql::{parse_script, Stmt};
use crate::partitioned::{extract_partitioned_by, PartitionSpec};
use crate::postgres::PostgresTableFactory;
use crate::progress::{ScanProgress, TrackScans};
use crate::rejects::{rejects_batch, rejects_schema, RejectLog, REJECTS_TABLE};
use crate::schema_check::{check_declared, check_insert};
use crate::topic::{TopicTable, TopicTableFactory};
use basin_ml::Models;
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};

/// The result of one statement.
pub enum Output {
    /// A query: its rows, still to be streamed.
    Rows(DataFrame),
    /// DDL or DML: a line saying what happened.
    Message(String),
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Output::Rows(df) => write!(f, "Rows({})", df.schema()),
            Output::Message(m) => write!(f, "Message({m:?})"),
        }
    }
}

/// A statement of a script, parsed, waiting to run.
pub struct Parsed {
    statement: Stmt,
    partitions: Arc<Vec<PartitionSpec>>,
}

impl Parsed {
    /// Whether this is a `CREATE MODEL`.
    pub fn is_create_model(&self) -> bool {
        matches!(self.statement, Stmt::CreateModel(_))
    }
}

/// A SQL session over a Basin data dir.
pub struct Engine {
    ctx: SessionContext,
    catalog: Catalog,
    lake: Lake,
    data_dir: PathBuf,
    leftovers: Vec<Leftover>,
    rejects: Arc<RejectLog>,
    progress: Arc<ScanProgress>,
    models: Arc<Models>,
}

impl Engine {
    /// Open the catalog and lake under `data_dir`, cleaning up unfinished writes.
    pub async fn open(data_dir: &Path) -> Result<Engine> {
        let mut config = SessionConfig::new().with_information_schema(true);
        config.options_mut().sql_parser.collect_spans = true;
        let progress = Arc::new(ScanProgress::default());
        let track = TrackScans {
            progress: progress.clone(),
        };
        let mut state = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features()
            .with_physical_optimizer_rule(Arc::new(track))
            .build();
        let rejects = Arc::new(RejectLog::default());
        register_factories(&mut state, &rejects);
        let ctx = SessionContext::new_with_state(state).enable_url_table();
        let models = Models::open(data_dir);
        crate::predict::register(&ctx, &models);
        let lake = Lake::open(data_dir)?;
        let leftovers = lake.clean_leftovers()?;
        let catalog = Catalog::open(data_dir)?;
        let default = ctx.catalog("datafusion").expect("default catalog");
        default
            .register_schema("lake", Arc::new(LakeSchema::new(lake.clone())))
            .map_err(SqlError::from)?;
        let engine = Engine {
            ctx,
            catalog,
            lake,
            data_dir: data_dir.to_path_buf(),
            leftovers,
            rejects,
            progress,
            models,
        };
        engine.replay_catalog().await;
        Ok(engine)
    }

    /// Writes that an earlier, killed job left behind and `open` removed.
    pub fn leftovers(&self) -> &[Leftover] {
        &self.leftovers
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// The model registry and the versions `predict()` scores with.
    pub fn models(&self) -> &Arc<Models> {
        &self.models
    }

    pub(crate) fn lake(&self) -> &Lake {
        &self.lake
    }

    async fn replay_catalog(&self) {
        for (name, ddl) in self.catalog.definitions() {
            if let Err(e) = self.ctx.sql(&ddl).await {
                warn!(table = %name, error = %e, "could not restore external table; skipping it");
            }
        }
    }

    /// Run every statement of `sql` in order; the outputs of all of them.
    pub async fn execute(&self, sql: &str) -> Result<Vec<Output>> {
        let statements = self.parse(sql)?;
        let mut outputs = Vec::with_capacity(statements.len());
        for statement in statements {
            outputs.push(self.run_statement(statement).await?);
        }
        Ok(outputs)
    }

    /// The statements of `sql`, parsed, to run one by one with
    /// `run_statement` (so each one's output can be shown as it finishes).
    pub fn parse(&self, sql: &str) -> Result<Vec<Parsed>> {
        let (sql, partitions) = extract_partitioned_by(sql);
        let partitions = Arc::new(partitions);
        let statements = parse_script(&sql).map_err(SqlError::from)?;
        Ok(statements
            .into_iter()
            .map(|statement| Parsed {
                statement,
                partitions: partitions.clone(),
            })
            .collect())
    }

    /// Run one parsed statement. A write keeps its rejected rows in
    /// `lake._rejects` and says so; a failed statement keeps none.
    pub async fn run_statement(&self, parsed: Parsed) -> Result<Output> {
        self.progress.reset();
        self.models.refresh();
        let run = match parsed.statement {
            Stmt::Sql(statement) => self.run(statement, &parsed.partitions).await,
            Stmt::CreateModel(m) => self.create_model(m).await,
        };
        let output = match run {
            Ok(output) => output,
            Err(e) => {
                // The statement wrote nothing; neither do its rejects.
                self.discard_rejects();
                return Err(e);
            }
        };
        Ok(match output {
            Output::Message(m) => Output::Message(self.with_saved_rejects(m).await?),
            rows => rows,
        })
    }

    /// Rows and bytes the running statement's scans have read. Reset when a
    /// statement starts; reset it before reading the rows of a query.
    pub fn progress(&self) -> Arc<ScanProgress> {
        self.progress.clone()
    }

    /// Up to how many bad input rows a statement may reject (default 0).
    pub fn set_max_rejects(&self, max: u64) {
        self.rejects.set_max(max);
    }

    /// Forget the rejects gathered so far (the statement that made them failed).
    pub fn discard_rejects(&self) {
        self.rejects.take();
    }

    /// Append the rejects gathered since the last call to `lake._rejects`;
    /// a line saying how many, when there were any. Call it after reading
    /// the rows of a query (writes call it themselves).
    pub async fn save_rejects(&self) -> Result<Option<String>> {
        let rejects = self.rejects.take();
        if rejects.is_empty() {
            return Ok(None);
        }
        let job = uuid::Uuid::new_v4().simple().to_string();
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let batch = rejects_batch(&rejects, &job, now_ms);
        let meta = match self.lake.meta(REJECTS_TABLE)? {
            Some(meta) => meta,
            None => LakeMeta {
                name: REJECTS_TABLE.to_string(),
                schema: rejects_schema().as_ref().clone(),
                partition_cols: vec![],
                version: 0,
            },
        };
        let df = self.ctx.read_batch(batch)?;
        self.write(df, meta, InsertOp::Append).await?;
        Ok(Some(format!(
            "{} bad input row{} rejected: see lake.{REJECTS_TABLE} (job {job})",
            rejects.len(),
            if rejects.len() == 1 { "" } else { "s" }
        )))
    }

    async fn with_saved_rejects(&self, message: String) -> Result<String> {
        Ok(match self.save_rejects().await? {
            Some(note) => format!("{message}; {note}"),
            None => message,
        })
    }

    async fn run(&self, statement: Statement, partitions: &[PartitionSpec]) -> Result<Output> {
        match &statement {
            Statement::CreateExternalTable(c) => {
                let ddl = render_external(c);
                let key = catalog_key(&c.name)?;
                let existed = self.ctx.table_exist(key.as_str())?;
                self.plan_and_run(statement.clone()).await?;
                if existed && c.if_not_exists {
                    return Ok(Output::Message(format!(
                        "{key} already exists; nothing done"
                    )));
                }
                if let Err(e) = self.check_parquet_columns(c, &key).await {
                    self.ctx.deregister_table(key.as_str())?;
                    return Err(e);
                }
                self.catalog.put(&key, ddl)?;
                Ok(Output::Message(format!("created external table {key}")))
            }
            Statement::Statement(s) => match s.as_ref() {
                SqlStatement::CreateTable(ct)
                    if ct.query.is_some() && is_lake(&ct.name.to_string()) =>
                {
                    let name = lake_name(&ct.name.to_string());
                    let spec = partitions.iter().find(|p| lake_name(&p.table) == name);
                    let query = ct.query.clone().expect("checked");
                    let query = Statement::Statement(Box::new(SqlStatement::Query(query)));
                    self.create_lake_table(&name, query, spec, ct.or_replace, ct.if_not_exists)
                        .await
                }
                SqlStatement::CreateTable(ct) if is_lake(&ct.name.to_string()) => {
                    let name = lake_name(&ct.name.to_string());
                    let spec = partitions.iter().find(|p| lake_name(&p.table) == name);
                    self.create_empty_lake_table(&name, statement.clone(), spec, ct.if_not_exists)
                        .await
                }
                SqlStatement::Insert(insert) => {
                    let insert = self.with_topic_columns(insert).await;
                    self.check_insert(&insert).await?;
                    let statement = Statement::Statement(Box::new(SqlStatement::Insert(insert)));
                    self.plan_and_run(statement).await
                }
                SqlStatement::Drop {
                    object_type: ObjectType::Table,
                    names,
                    ..
                } => {
                    let names = names.iter().map(catalog_key).collect::<Result<Vec<_>>>()?;
                    self.plan_and_run(statement.clone()).await?;
                    for name in &names {
                        self.catalog.remove(name)?;
                    }
                    Ok(Output::Message(format!("dropped {}", names.join(", "))))
                }
                _ => self.plan_and_run(statement.clone()).await,
            },
            _ => self.plan_and_run(statement.clone()).await,
        }
    }

    /// Declared columns of a Parquet table must be in its files, with types
    /// their values fit.
    async fn check_parquet_columns(&self, c: &CreateExternalTable, key: &str) -> Result<()> {
        if !c.file_type.eq_ignore_ascii_case("parquet") || c.columns.is_empty() {
            return Ok(());
        }
        let declared = self.ctx.table_provider(key).await?.schema();
        let files = self
            .ctx
            .read_parquet(c.locations.clone(), ParquetReadOptions::default())
            .await?;
        let files = files.schema().as_arrow();
        check_declared(key, &c.locations.join(", "), &declared, files)
    }

    /// `INSERT INTO topic_table SELECT ...` without a column list means the
    /// declared columns, not the Kafka metadata columns the table also has.
    async fn with_topic_columns(&self, insert: &Insert) -> Insert {
        let mut insert = insert.clone();
        let TableObject::TableName(name) = &insert.table else {
            return insert;
        };
        if !insert.columns.is_empty() {
            return insert;
        }
        let Ok(reference) = object_name_to_table_reference(name.clone(), true) else {
            return insert;
        };
        let Ok(table) = self.ctx.table_provider(reference).await else {
            return insert;
        };
        if let Some(topic) = table.downcast_ref::<TopicTable>() {
            insert.columns = value_columns(&topic.value_schema());
        }
        insert
    }

    /// An INSERT's query must give the target's columns, with types that fit.
    async fn check_insert(&self, insert: &Insert) -> Result<()> {
        let (TableObject::TableName(name), Some(source)) = (&insert.table, &insert.source) else {
            return Ok(());
        };
        let reference = object_name_to_table_reference(name.clone(), true)?;
        let Ok(table) = self.ctx.table_provider(reference.clone()).await else {
            return Ok(()); // DataFusion reports the missing table
        };
        let query = Statement::Statement(Box::new(SqlStatement::Query(source.clone())));
        let plan = self.ctx.state().statement_to_plan(query).await?;
        let columns: Vec<String> = insert.columns.iter().map(column_name).collect();
        check_insert(
            &reference.to_string(),
            &table.schema(),
            &columns,
            plan.schema().as_arrow(),
        )
    }

    async fn plan_and_run(&self, statement: Statement) -> Result<Output> {
        let plan = self.ctx.state().statement_to_plan(statement).await?;
        let is_dml = matches!(plan, LogicalPlan::Dml(_) | LogicalPlan::Copy(_));
        let df = self.ctx.execute_logical_plan(plan).await?;
        if !is_dml {
            return Ok(Output::Rows(df));
        }
        let rows = count_of(&df.collect().await?);
        Ok(Output::Message(format!("{rows} rows written")))
    }

    /// `CREATE TABLE lake.x [PARTITIONED BY (...)] AS SELECT ...`: write the
    /// query's rows as a new version of the table, committed atomically.
    async fn create_lake_table(
        &self,
        name: &str,
        query: Statement,
        spec: Option<&PartitionSpec>,
        or_replace: bool,
        if_not_exists: bool,
    ) -> Result<Output> {
        let existing = self.lake.meta(name)?;
        if existing.is_some() && if_not_exists {
            return Ok(Output::Message(format!(
                "lake.{name} already exists; nothing done"
            )));
        }
        if existing.is_some() && !or_replace {
            return Err(SqlError::Invalid(format!(
                "table lake.{name} already exists (use CREATE OR REPLACE TABLE)"
            )));
        }
        let plan = self.ctx.state().statement_to_plan(query).await?;
        let df = self.ctx.execute_logical_plan(plan).await?;
        let partition_cols = spec.map(|s| s.columns.clone()).unwrap_or_default();
        let (df, schema) = partition_columns_last(df, &partition_cols)?;
        let meta = LakeMeta {
            name: name.to_string(),
            // Like Spark's, CTAS columns are nullable: a literal's NOT NULL
            // would refuse later inserts for no reason the user wrote.
            schema: nullable(&schema),
            partition_cols,
            version: existing.map_or(0, |m| m.version),
        };
        let rows = self.write(df, meta, InsertOp::Overwrite).await?;
        Ok(Output::Message(format!(
            "created lake.{name} with {rows} rows"
        )))
    }

    /// `CREATE TABLE lake.x (columns)`: an empty table that inserts and
    /// stream jobs fill.
    async fn create_empty_lake_table(
        &self,
        name: &str,
        statement: Statement,
        spec: Option<&PartitionSpec>,
        if_not_exists: bool,
    ) -> Result<Output> {
        if self.lake.meta(name)?.is_some() {
            if if_not_exists {
                return Ok(Output::Message(format!(
                    "lake.{name} already exists; nothing done"
                )));
            }
            return Err(SqlError::Invalid(format!(
                "table lake.{name} already exists"
            )));
        }
        let plan = self.ctx.state().statement_to_plan(statement).await?;
        let schema = plan.schema().as_arrow().clone();
        if schema.fields().is_empty() {
            return Err(SqlError::Invalid(format!(
                "CREATE TABLE lake.{name} needs columns, e.g. (id BIGINT, name VARCHAR), or AS SELECT ..."
            )));
        }
        let partition_cols = spec.map(|s| s.columns.clone()).unwrap_or_default();
        let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        for col in partition_cols.iter().rev() {
            let Some(i) = fields.iter().position(|f| f.name() == col) else {
                return Err(SqlError::Invalid(format!(
                    "PARTITIONED BY {col}: lake.{name} has no such column"
                )));
            };
            let field = fields.remove(i);
            fields.push(field);
        }
        let meta = LakeMeta {
            name: name.to_string(),
            schema: nullable(&Schema::new(fields)),
            partition_cols,
            version: 0,
        };
        self.lake.commit(&meta)?;
        Ok(Output::Message(format!("created lake.{name}")))
    }

    async fn write(&self, df: DataFrame, meta: LakeMeta, op: InsertOp) -> Result<u64> {
        let table = LakeTable::new(self.lake.clone(), meta);
        let state = self.ctx.state();
        let mut input = df.create_physical_plan().await?;
        // The sink reads one input partition; the optimizer that would
        // merge them has already run, so merge them here (a filtered scan
        // of one file has one partition per core: all but the first were
        // lost before).
        if input.output_partitioning().partition_count() > 1 {
            input = Arc::new(CoalescePartitionsExec::new(input));
        }
        let sink = table.insert_into(&state, input, op).await?;
        let batches = collect(sink, self.ctx.task_ctx()).await?;
        Ok(count_of(&batches))
    }
}

/// Basin's sources: checked CSV/JSON files, topics, PostgreSQL tables.
fn register_factories(state: &mut SessionState, rejects: &Arc<RejectLog>) {
    let factories = state.table_factories_mut();
    let csv = Arc::new(CheckedFileFactory::csv(rejects.clone()));
    factories.insert("CSV".into(), csv);
    for name in ["JSON", "NDJSON"] {
        let json = Arc::new(CheckedFileFactory::json(rejects.clone()));
        factories.insert(name.into(), json);
    }
    factories.insert("TOPIC".into(), Arc::new(TopicTableFactory));
    for name in ["POSTGRES", "POSTGRESQL"] {
        factories.insert(name.into(), Arc::new(PostgresTableFactory));
    }
}

/// The catalog key of a table name: DataFusion's normalised, fully
/// resolved reference (`datafusion.public.trips` for `TRIPS` or `trips`).
fn catalog_key(name: &ObjectName) -> Result<String> {
    let reference = object_name_to_table_reference(name.clone(), true)?;
    Ok(reference.resolve("datafusion", "public").to_string())
}

fn nullable(schema: &Schema) -> Schema {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    Schema::new(fields).with_metadata(schema.metadata().clone())
}

/// A column named in an INSERT, normalised as DataFusion does (unquoted
/// names fold to lower case).
/// The columns of `schema` as an INSERT's column list.
pub fn value_columns(schema: &Schema) -> Vec<ObjectName> {
    schema
        .fields()
        .iter()
        .map(|f| ObjectName::from(vec![Ident::with_quote('"', f.name())]))
        .collect()
}

fn column_name(name: &ObjectName) -> String {
    match name.0.last().and_then(|part| part.as_ident()) {
        Some(ident) if ident.quote_style.is_some() => ident.value.clone(),
        Some(ident) => ident.value.to_lowercase(),
        None => name.to_string(),
    }
}

fn is_lake(name: &str) -> bool {
    let parts: Vec<&str> = name.split('.').collect();
    parts.len() >= 2 && parts[parts.len() - 2].trim_matches('"') == "lake"
}

fn lake_name(name: &str) -> String {
    name.rsplit('.')
        .next()
        .unwrap_or(name)
        .trim_matches('"')
        .to_string()
}

/// Reorder `df` so partition columns come last (the lake's layout), and
/// check they exist.
fn partition_columns_last(
    df: DataFrame,
    partition_cols: &[String],
) -> Result<(DataFrame, SchemaRef)> {
    let fields: Vec<String> = df
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    for col in partition_cols {
        if !fields.contains(col) {
            return Err(SqlError::Invalid(format!(
                "PARTITIONED BY column {col} is not in the query's columns ({})",
                fields.join(", ")
            )));
        }
    }
    let mut order: Vec<&str> = fields
        .iter()
        .filter(|f| !partition_cols.contains(f))
        .map(String::as_str)
        .collect();
    order.extend(partition_cols.iter().map(String::as_str));
    let df = df.select_columns(&order)?;
    let schema: Schema = df.schema().as_arrow().clone();
    Ok((df, Arc::new(schema)))
}

fn count_of(batches: &[datafusion::arrow::array::RecordBatch]) -> u64 {
    use datafusion::arrow::array::{Array, UInt64Array};
    batches
        .iter()
        .filter_map(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<UInt64Array>()
                .map(|a| a.value(0))
        })
        .sum()
}
