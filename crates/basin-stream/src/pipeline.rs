//! Running a pipeline file, in either mode. Both modes register the
//! file's tables in a SQL session over the data dir (tables of the
//! persistent catalog and the lake are visible too) and plan the same
//! rewritten SQL with DataFusion:
//! - batch: every statement runs to completion over what the sources hold
//!   now (topics from earliest to their end);
//! - stream: each `INSERT` (or bare query) becomes a job ([`crate::runtime`])
//!   over live topics, with watermarks and checkpoints.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use basin_sql::postgres::PostgresTable;
use basin_sql::topic::TopicTable;
use basin_sql::{Engine, LakeTable};
use datafusion::catalog::TableProvider;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use regex::Regex;
use tracing::info;

use crate::agg::Trigger;
use crate::error::{Result, StreamError};
use crate::pg::PgTarget;
use crate::plan::{job_graph, Graph, KeyedOp, StageKind};
use crate::proctime::ProcTimeTable;
use crate::runtime::{run_job, Fnv, JobConfig, JobStats};
use crate::script::{Script, Statement, StatementKind, Watermark};
use crate::sink::SinkTarget;
use crate::source::{SourceInfo, StreamSourceTable};
use crate::window::WindowedTable;

/// Default time between checkpoints.
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Stream,
    Batch,
}

/// How to run a pipeline.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub mode: Mode,
    pub data_dir: PathBuf,
    /// Names the pipeline's checkpoint folder.
    pub name: String,
    pub parallelism: usize,
    pub checkpoint_interval: Duration,
    /// Stream mode: stop once the sources' current ends are processed.
    pub bounded: bool,
    /// Stream mode: forget earlier checkpoints and start from the beginning.
    pub reset: bool,
    /// Count the rows of bare queries instead of printing them.
    pub discard: bool,
    /// Set to stop the stream jobs (they keep their last checkpoint).
    pub stop: Arc<std::sync::atomic::AtomicBool>,
    /// Drop state not bounded by windows (updating GROUP BY groups, top-N
    /// keys, unwindowed join rows) once not updated for this long, in
    /// event time; `None` keeps it forever.
    pub state_ttl: Option<Duration>,
    /// Stream mode: run the jobs together with every process started with
    /// the same group name, sharing their partitions ([`crate::group`]).
    pub group: Option<String>,
}

/// What a run did.
#[derive(Debug, Default)]
pub struct RunSummary {
    pub jobs: Vec<JobSummary>,
}

#[derive(Debug)]
pub struct JobSummary {
    pub name: String,
    pub sink: String,
    pub stats: Arc<JobStats>,
}

/// Stream jobs at work.
pub struct Running {
    pub summary: RunSummary,
    handles: Vec<tokio::task::JoinHandle<Result<()>>>,
}

impl Running {
    /// Wait for every job to end (bounded input) or fail.
    pub async fn wait(self) -> Result<RunSummary> {
        for h in self.handles {
            h.await.map_err(|e| StreamError::Task(e.to_string()))??;
        }
        Ok(self.summary)
    }
}

/// A parsed pipeline with its SQL session.
pub struct Pipeline {
    script: Script,
    fingerprint: String,
    engine: Engine,
    mode: Mode,
}

impl Pipeline {
    /// Parse `text` and register its tables.
    pub async fn open(text: &str, options: &RunOptions) -> Result<Pipeline> {
        let script = Script::parse(text)?;
        let engine = Engine::open(&options.data_dir).await?;
        crate::udf::register(engine.context());
        if options.mode == Mode::Stream {
            engine
                .context()
                .sql("SET datafusion.execution.target_partitions = 1")
                .await?;
        }
        let mut fnv = Fnv(0xcbf2_9ce4_8422_2325);
        std::hash::Hasher::write(&mut fnv, text.as_bytes());
        let fingerprint = format!("{:016x}", std::hash::Hasher::finish(&fnv));
        Ok(Pipeline {
            script,
            fingerprint,
            engine,
            mode: options.mode,
        })
    }

    /// The hook that moves `predict()` to newly promoted versions.
    fn refresh_models(&self) -> crate::runtime::CheckpointHook {
        let models = self.engine.models().clone();
        crate::runtime::CheckpointHook(Arc::new(move || {
            models.refresh();
        }))
    }

    fn ctx(&self) -> &SessionContext {
        self.engine.context()
    }

    /// Run the pipeline: batch to completion, or stream jobs until their
    /// bounded input ends (or forever).
    pub async fn run(self, options: &RunOptions) -> Result<RunSummary> {
        self.start(options).await?.wait().await
    }

    /// Run the batch statements and start the stream jobs; [`Running`]
    /// gives their live counters and waits for them.
    pub async fn start(self, options: &RunOptions) -> Result<Running> {
        let mut jobs = Vec::new();
        let mut registered = 0;
        for (n, st) in self.script.statements.iter().enumerate() {
            registered = self.register_windows(registered).await?;
            let located = |e: StreamError| located(st, e);
            match &st.kind {
                StatementKind::Create {
                    watermark,
                    proctime,
                } => self
                    .create(st, watermark.as_ref(), proctime.as_deref())
                    .await
                    .map_err(located)?,
                StatementKind::Other => {
                    self.ctx()
                        .sql(&st.sql)
                        .await
                        .map_err(StreamError::from)
                        .map_err(located)?
                        .collect()
                        .await
                        .map_err(StreamError::from)
                        .map_err(located)?;
                }
                StatementKind::Insert | StatementKind::Query if self.mode == Mode::Batch => {
                    self.run_batch(st, options.discard).await.map_err(located)?
                }
                StatementKind::Insert | StatementKind::Query => {
                    jobs.push(self.plan_job(st, n, options).await.map_err(located)?)
                }
            }
        }
        let mut summary = RunSummary::default();
        let mut handles = Vec::new();
        for (plan, sink, config) in jobs {
            let stats = Arc::new(JobStats::for_graph(&plan));
            summary.jobs.push(JobSummary {
                name: config.name.clone(),
                sink: sink.describe(),
                stats: stats.clone(),
            });
            info!(job = %config.name, sink = %sink.describe(), "job starting");
            let group = options.group.clone();
            handles.push(tokio::task::spawn_blocking(move || match group {
                Some(group) => crate::group::run_group(plan, sink, config, stats, &group),
                None => run_job(plan, sink, config, stats),
            }));
        }
        Ok(Running { summary, handles })
    }

    /// Register the window tables whose sources now exist.
    async fn register_windows(&self, from: usize) -> Result<usize> {
        let mut next = from;
        for w in &self.script.windows[from..] {
            let Ok(source) = self.ctx().table_provider(w.source.as_str()).await else {
                break;
            };
            let table = WindowedTable::try_new(source, w.spec.clone())?;
            self.ctx()
                .register_table(w.name.as_str(), Arc::new(table))?;
            next += 1;
        }
        Ok(next)
    }

    async fn create(
        &self,
        st: &Statement,
        watermark: Option<&Watermark>,
        proctime: Option<&str>,
    ) -> Result<()> {
        let name = created_name(&st.sql);
        if name.as_deref().is_some_and(|n| n.starts_with("lake.")) {
            // Lake tables persist: the engine writes their metadata.
            self.engine.execute(&st.sql).await?;
            return Ok(());
        }
        // Other tables live for this run only (not in the catalog), and
        // shadow a catalog table of the same name.
        if let Some(n) = &name {
            if self.ctx().table_exist(n.as_str())? {
                info!(table = %n, "the pipeline's definition replaces the catalog's for this run");
                self.ctx().deregister_table(n.as_str())?;
            }
        }
        self.ctx().sql(&st.sql).await?.collect().await?;
        let Some(name) = name else {
            return Ok(());
        };
        let provider = self.ctx().table_provider(name.as_str()).await?;
        let Some(topic) = provider.downcast_ref::<TopicTable>() else {
            if watermark.is_some() || proctime.is_some() {
                return Err(StreamError::Unsupported(format!(
                    "WATERMARK or PROCTIME() on {name}: only topic tables have them"
                )));
            }
            return Ok(());
        };
        if self.mode == Mode::Batch {
            if let Some(p) = proctime {
                let column = topic.schema().index_of(p)?;
                self.ctx().deregister_table(name.as_str())?;
                let table = ProcTimeTable {
                    inner: provider.clone(),
                    column,
                };
                self.ctx().register_table(name.as_str(), Arc::new(table))?;
            }
        }
        if self.mode == Mode::Stream {
            let mut info = SourceInfo::from_table(&name, topic, watermark.cloned(), proctime)?;
            info.late_rows = self.late_rows_table(&name, &st.sql).await?;
            self.ctx().deregister_table(name.as_str())?;
            self.ctx().register_table(
                name.as_str(),
                Arc::new(StreamSourceTable {
                    snapshot: topic.compact().then(|| provider.clone()),
                    info: Arc::new(info),
                }),
            )?;
        }
        Ok(())
    }

    /// The side table of `OPTIONS ('late.rows' 'lake.t')` on source `name`.
    async fn late_rows_table(&self, name: &str, sql: &str) -> Result<Option<SinkTarget>> {
        let re = Regex::new(r"(?i)'late\.rows'\s+'([^']+)'").expect("valid regex");
        let Some(caps) = re.captures(sql) else {
            return Ok(None);
        };
        let table = caps[1].to_lowercase();
        let missing = || {
            StreamError::Unsupported(format!(
                "{name}: 'late.rows' names {table}, which is not a lake table; create it first \
                 with the columns of {name} to keep (and _partition, _offset, _timestamp, _key)"
            ))
        };
        if !table.starts_with("lake.") {
            return Err(missing());
        }
        let provider = self
            .ctx()
            .table_provider(table.as_str())
            .await
            .map_err(|_| missing())?;
        let lake = provider.downcast_ref::<LakeTable>().ok_or_else(missing)?;
        Ok(Some(SinkTarget::Lake {
            lake: lake.lake().clone(),
            meta: lake.meta().clone(),
        }))
    }

    async fn run_batch(&self, st: &Statement, discard: bool) -> Result<()> {
        if st.kind == StatementKind::Insert {
            // The engine's INSERT: a topic target without a column list
            // takes its declared columns, and the query is checked first.
            self.engine.execute(&st.sql).await?;
            return Ok(());
        }
        let df = self.ctx().sql(&st.sql).await?;
        if discard {
            df.collect().await?;
            return Ok(());
        }
        let batches = df.collect().await?;
        let mut buf = Vec::new();
        let mut writer = datafusion::arrow::json::LineDelimitedWriter::new(&mut buf);
        for b in &batches {
            writer.write(b)?;
        }
        writer.finish()?;
        use std::io::Write;
        std::io::stdout()
            .write_all(&buf)
            .map_err(|e| StreamError::Task(format!("stdout: {e}")))?;
        Ok(())
    }

    /// Plan a statement; `INSERT INTO topic SELECT ...` without a column
    /// list means the topic's declared columns (not its metadata columns).
    async fn logical_plan(
        &self,
        state: &datafusion::execution::SessionState,
        sql: &str,
    ) -> Result<LogicalPlan> {
        use datafusion::sql::parser::Statement as DfStatement;
        use datafusion::sql::sqlparser::ast::{Statement as SqlStatement, TableObject};
        let dialect = state.config().options().sql_parser.dialect;
        let mut statement = state.sql_to_statement(sql, &dialect)?;
        if let DfStatement::Statement(s) = &mut statement {
            if let SqlStatement::Insert(insert) = s.as_mut() {
                if let (TableObject::TableName(name), true) =
                    (&insert.table, insert.columns.is_empty())
                {
                    let provider = self.ctx().table_provider(name.to_string().as_str()).await;
                    if let Some(source) = provider.ok().and_then(|p| {
                        p.downcast_ref::<StreamSourceTable>()
                            .map(|s| s.info.clone())
                    }) {
                        insert.columns = basin_sql::value_columns(&source.value_schema);
                    }
                }
            }
        }
        Ok(state.statement_to_plan(statement).await?)
    }

    async fn plan_job(
        &self,
        st: &Statement,
        n: usize,
        options: &RunOptions,
    ) -> Result<(Graph, SinkTarget, JobConfig)> {
        let state = self.ctx().state();
        let logical = self.logical_plan(&state, &st.sql).await?;
        let (query, mut sink) = match logical {
            LogicalPlan::Dml(dml) => {
                let provider = self.ctx().table_provider(dml.table_name.clone()).await?;
                (
                    dml.input.as_ref().clone(),
                    sink_target(dml.table_name.to_string(), provider.as_ref())?,
                )
            }
            other if options.discard => (other, SinkTarget::Discard),
            other => (other, SinkTarget::Print),
        };
        let physical = state.create_physical_plan(&query).await?;
        tracing::debug!(plan = %datafusion::physical_plan::displayable(physical.as_ref()).indent(true), "stream plan");
        let mut plan = job_graph(&physical)?;
        if updating_or_final(&mut plan, &sink, options.bounded)? {
            if let SinkTarget::Postgres(target) = &mut sink {
                target.upserts = true;
            }
        }
        if let Some(ttl) = options.state_ttl {
            set_state_ttl(&mut plan, ttl.as_millis() as i64);
        }
        if options.group.is_none() {
            crate::plan::share::share_stages(&mut plan);
        }
        let name = format!("{}-{n}", options.name);
        let config = JobConfig {
            checkpoint_dir: options
                .data_dir
                .join("pipelines")
                .join(&options.name)
                .join(format!("statement-{n}")),
            name,
            parallelism: options.parallelism.max(1),
            checkpoint_interval: options.checkpoint_interval,
            bounded: options.bounded,
            fingerprint: self.fingerprint.clone(),
            stop: options.stop.clone(),
            group: None,
            on_checkpoint: Some(self.refresh_models()),
        };
        if options.reset {
            crate::checkpoint::CheckpointStore::new(&config.checkpoint_dir)?.clear()?;
        }
        tracing::debug!(stages = plan.stages.len(), "stream job graph");
        Ok((plan, sink, config))
    }
}

/// A GROUP BY without a window, and a ROW_NUMBER top-N, keep updating
/// their rows. Feeding the sink, they emit updates (upserts by their key)
/// into topics and stdout; a lake table cannot take updates, so it gets
/// the final rows at the end of a bounded run. Feeding another stateful
/// operator, they give their final rows at the end of a bounded run.
/// True when the sink gets updates.
fn updating_or_final(graph: &mut Graph, sink: &SinkTarget, bounded: bool) -> Result<bool> {
    let last = graph.stages.len() - 1;
    let mut sink_updates = false;
    for (s, stage) in graph.stages.iter_mut().enumerate() {
        let StageKind::Keyed(keyed) = &mut stage.kind else {
            continue;
        };
        let updating = match &keyed.op {
            KeyedOp::Aggregate(a) => a.trigger == Trigger::EndOfInput,
            KeyedOp::TopN(_) => true,
            KeyedOp::Join(_) => false,
        };
        if !updating {
            continue;
        }
        let to_sink = s == last && !matches!(sink, SinkTarget::Lake { .. });
        if !to_sink && !bounded {
            return Err(StreamError::Unsupported(format!(
                "GROUP BY without a window and ROW_NUMBER top-N keep updating their rows, and {} cannot take updates; \
                 group by a window (TUMBLE, HOP, SESSION), write the result to a topic, or run with --bounded",
                if s == last { sink.describe() } else { "another stateful operator".to_string() }
            )));
        }
        match &mut keyed.op {
            KeyedOp::Aggregate(a) if to_sink => a.trigger = Trigger::Updating,
            KeyedOp::TopN(t) => t.updating = to_sink,
            _ => {}
        }
        sink_updates |= to_sink;
    }
    Ok(sink_updates)
}

/// A state TTL for the operators whose state windows do not bound: an
/// updating aggregate, an updating top-N, an unwindowed join.
fn set_state_ttl(graph: &mut Graph, ms: i64) {
    for stage in &mut graph.stages {
        let StageKind::Keyed(keyed) = &mut stage.kind else {
            continue;
        };
        match &mut keyed.op {
            KeyedOp::Aggregate(a) if a.trigger == Trigger::Updating => a.ttl_ms = Some(ms),
            KeyedOp::TopN(t) if t.updating => t.ttl_ms = Some(ms),
            KeyedOp::Join(j) if j.left.window_end.is_none() && j.left.expiry.is_none() => {
                j.ttl_ms = Some(ms)
            }
            _ => {}
        }
    }
}

fn sink_target(name: String, provider: &dyn TableProvider) -> Result<SinkTarget> {
    let any = provider;
    if let Some(s) = any.downcast_ref::<StreamSourceTable>() {
        return Ok(SinkTarget::Topic(s.info.clone()));
    }
    if let Some(lake) = any.downcast_ref::<LakeTable>() {
        return Ok(SinkTarget::Lake {
            lake: lake.lake().clone(),
            meta: lake.meta().clone(),
        });
    }
    if let Some(pg) = any.downcast_ref::<PostgresTable>() {
        return Ok(SinkTarget::Postgres(PgTarget {
            url: pg.url().to_string(),
            table: pg.quoted_name(),
            schema: pg.schema(),
            upserts: false,
        }));
    }
    Err(StreamError::Unsupported(format!(
        "{name} as a stream sink: stream jobs write to topic, lake and postgres tables"
    )))
}

/// The table a CREATE statement names.
fn created_name(sql: &str) -> Option<String> {
    let re = Regex::new(r"(?is)^\s*(?:--[^\n]*\n\s*)*CREATE\s+(?:OR\s+REPLACE\s+)?(?:EXTERNAL\s+|UNBOUNDED\s+EXTERNAL\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?([\w.]+)")
        .expect("valid regex");
    re.captures(sql).map(|c| c[1].to_lowercase())
}

fn located(st: &Statement, e: StreamError) -> StreamError {
    match e {
        StreamError::Script { .. } => e,
        other => StreamError::Script {
            at: format!("statement at line {}", st.line),
            message: other.to_string(),
        },
    }
}
