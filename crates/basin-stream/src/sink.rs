//! Where a job's rows go. Each task that ends a job owns a [`Sink`]; at a
//! checkpoint barrier the sink makes what it has written durable and says
//! what the coordinator must commit once the checkpoint is recorded:
//! - `print`: JSON lines on stdout;
//! - topics: one Kafka transaction per checkpoint, committed once the
//!   checkpoint is recorded (exactly-once for `read_committed` readers);
//! - lake tables: Parquet files staged per checkpoint and linked into a
//!   new table version when the checkpoint commits; committing again after
//!   a crash finds the files already there, so each row lands once;
//! - PostgreSQL tables: one database transaction per checkpoint, holding
//!   the rows (upserts on the primary key) and the checkpoint id.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use basin_sql::lake::{Lake, LakeMeta};
use basin_sql::topic::{csv_lines, json_lines, record_keys, ValueFormat};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::json::LineDelimitedWriter;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::ArrowWriter;

use crate::checkpoint::Manifest;
use crate::error::{IoContext, Result, StreamError};
use crate::pg::{PgTarget, PgTxn};
use crate::remote::{RepartitionSink, RepartitionTarget};
use crate::source::SourceInfo;
use crate::txn::TxnTopic;

/// A task's writer into the job's target.
pub trait Sink: Send {
    fn write(&mut self, batch: &RecordBatch) -> Result<()>;
    /// Make everything written durable; files the coordinator commits.
    fn prepare(&mut self, checkpoint: u64) -> Result<Vec<PathBuf>>;

    /// Called once the task has acknowledged `checkpoint`: a transactional
    /// sink waits here until the checkpoint's transaction commits.
    fn after_ack(&mut self, _checkpoint: u64) -> Result<()> {
        Ok(())
    }

    /// The task's output watermark advanced (repartition topics carry it).
    fn watermark(&mut self, _watermark: i64) -> Result<()> {
        Ok(())
    }

    /// Rows go to another stage of the job, not out of it.
    fn internal(&self) -> bool {
        false
    }
}

/// The target of a job, shared by its tasks and its coordinator.
#[derive(Debug, Clone)]
pub enum SinkTarget {
    Print,
    /// Count rows, keep nothing (benchmarks).
    Discard,
    Topic(Arc<SourceInfo>),
    Lake {
        lake: Lake,
        meta: LakeMeta,
    },
    Postgres(PgTarget),
    /// A repartition topic to the job's next keyed stage (group mode).
    Repartition(Arc<RepartitionTarget>),
}

/// The transaction a job's sink tasks write in, committed by the
/// coordinator with each checkpoint.
#[derive(Debug, Clone)]
pub enum JobTxn {
    Topic(Arc<TxnTopic>),
    Postgres(Arc<PgTxn>),
}

impl JobTxn {
    /// Commit checkpoint `manifest`'s output (with its source offsets, for topics).
    pub fn commit(&self, manifest: &Manifest, topics: &HashMap<String, String>) -> Result<()> {
        match self {
            JobTxn::Topic(t) => t.commit(manifest, topics),
            JobTxn::Postgres(p) => p.commit(manifest.id),
        }
    }

    /// The checkpoint whose output was committed last.
    pub fn last_committed(
        &self,
        manifest: &Manifest,
        topics: &HashMap<String, String>,
    ) -> Result<Option<u64>> {
        match self {
            JobTxn::Topic(t) => t.last_committed(manifest, topics),
            JobTxn::Postgres(p) => Ok(p.last_committed()),
        }
    }

    /// The transactional producer, for a topic transaction.
    pub fn topic(&self) -> Option<&Arc<TxnTopic>> {
        match self {
            JobTxn::Topic(t) => Some(t),
            JobTxn::Postgres(_) => None,
        }
    }

    /// Wake waiting sink tasks: the job is failing.
    pub fn fail(&self) {
        match self {
            JobTxn::Topic(t) => t.fail(),
            JobTxn::Postgres(p) => p.fail(),
        }
    }
}

impl SinkTarget {
    pub fn describe(&self) -> String {
        match self {
            SinkTarget::Print => "stdout".into(),
            SinkTarget::Discard => "discard".into(),
            SinkTarget::Topic(info) => format!("topic {}", info.topic),
            SinkTarget::Lake { meta, .. } => format!("lake.{}", meta.name),
            SinkTarget::Postgres(t) => format!("postgres {}", t.table),
            SinkTarget::Repartition(t) => format!("repartition topic {}", t.topic),
        }
    }

    /// The job's transaction, for sinks that write in one.
    pub fn open_txn(&self, job: &str) -> Result<Option<JobTxn>> {
        Ok(match self {
            SinkTarget::Topic(info) => {
                if info.compact {
                    futures::executor::block_on(basin_sql::topic::ensure_keyed_topic(
                        &info.brokers,
                        &info.topic,
                    ))
                    .map_err(StreamError::Kafka)?;
                }
                Some(JobTxn::Topic(Arc::new(TxnTopic::open(&info.brokers, job)?)))
            }
            SinkTarget::Repartition(target) => Some(JobTxn::Topic(Arc::new(TxnTopic::open(
                &target.brokers,
                job,
            )?))),
            SinkTarget::Postgres(target) => Some(JobTxn::Postgres(Arc::new(PgTxn::open(
                target.clone(),
                job,
            )?))),
            _ => None,
        })
    }

    /// The writer of subtask `subtask`; lake files are staged in `staging`;
    /// topic rows go through the job's transactional producer when given.
    pub fn open(
        &self,
        staging: &Path,
        subtask: usize,
        txn: Option<&JobTxn>,
    ) -> Result<Box<dyn Sink>> {
        Ok(match self {
            SinkTarget::Print => Box::new(PrintSink),
            SinkTarget::Discard => Box::new(DiscardSink),
            SinkTarget::Topic(info) => {
                let Some(JobTxn::Topic(txn)) = txn else {
                    return Err(StreamError::Task(
                        "a topic sink needs the job's transactional producer".into(),
                    ));
                };
                Box::new(TxnSink {
                    info: info.clone(),
                    txn: txn.clone(),
                })
            }
            SinkTarget::Repartition(target) => {
                let Some(JobTxn::Topic(txn)) = txn else {
                    return Err(StreamError::Task(
                        "a repartition topic needs the job's transactional producer".into(),
                    ));
                };
                Box::new(RepartitionSink::new(target.clone(), txn.clone())?)
            }
            SinkTarget::Postgres(_) => {
                let Some(JobTxn::Postgres(txn)) = txn else {
                    return Err(StreamError::Task(
                        "a postgres sink needs the job's connection".into(),
                    ));
                };
                Box::new(PgSink { txn: txn.clone() })
            }
            SinkTarget::Lake { meta, .. } => {
                if !meta.partition_cols.is_empty() {
                    return Err(StreamError::Unsupported(format!(
                        "writing partitioned lake table {} from a stream",
                        meta.name
                    )));
                }
                fs::create_dir_all(staging).at(staging)?;
                Box::new(LakeSink {
                    schema: meta.schema_ref(),
                    staging: staging.to_path_buf(),
                    subtask,
                    writer: None,
                })
            }
        })
    }

    /// Publish the files of a recorded checkpoint (idempotent).
    pub fn commit(&self, job: &str, files: &[PathBuf]) -> Result<()> {
        let SinkTarget::Lake { lake, meta } = self else {
            return Ok(());
        };
        commit_lake(lake, &meta.name, job, files)
    }
}

struct PrintSink;

struct DiscardSink;

impl Sink for DiscardSink {
    fn write(&mut self, _batch: &RecordBatch) -> Result<()> {
        Ok(())
    }

    fn prepare(&mut self, _checkpoint: u64) -> Result<Vec<PathBuf>> {
        Ok(vec![])
    }
}

impl Sink for PrintSink {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let mut buf = Vec::new();
        let mut writer = LineDelimitedWriter::new(&mut buf);
        writer.write(batch)?;
        writer.finish()?;
        let stdout = std::io::stdout();
        let mut lock = stdout.lock();
        lock.write_all(&buf).at(Path::new("stdout"))?;
        Ok(())
    }

    fn prepare(&mut self, _checkpoint: u64) -> Result<Vec<PathBuf>> {
        std::io::stdout().flush().at(Path::new("stdout"))?;
        Ok(vec![])
    }
}

/// Rows of one checkpoint go out in one transaction (see [`crate::txn`]).
struct TxnSink {
    info: Arc<SourceInfo>,
    txn: Arc<TxnTopic>,
}

impl Sink for TxnSink {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let values: Vec<usize> = (0..self.info.value_schema.fields().len()).collect();
        let batch = batch.project(&values)?;
        let keys = record_keys(&batch, &self.info.key)?;
        let lines = match self.info.format {
            ValueFormat::Json => json_lines(&batch)?,
            ValueFormat::Csv => csv_lines(&batch)?,
        };
        for (line, key) in lines.iter().zip(keys) {
            self.txn.send(&self.info.topic, line, key.as_deref())?;
        }
        Ok(())
    }

    fn prepare(&mut self, _checkpoint: u64) -> Result<Vec<PathBuf>> {
        self.txn.flush()?;
        Ok(vec![])
    }

    fn after_ack(&mut self, checkpoint: u64) -> Result<()> {
        self.txn.wait_committed(checkpoint)
    }
}

/// Rows go into the job's open PostgreSQL transaction (see [`crate::pg`]).
struct PgSink {
    txn: Arc<PgTxn>,
}

impl Sink for PgSink {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.txn.write(batch)
    }

    fn prepare(&mut self, _checkpoint: u64) -> Result<Vec<PathBuf>> {
        Ok(vec![])
    }

    fn after_ack(&mut self, checkpoint: u64) -> Result<()> {
        self.txn.wait_committed(checkpoint)
    }
}

struct LakeSink {
    schema: SchemaRef,
    staging: PathBuf,
    subtask: usize,
    writer: Option<(PathBuf, ArrowWriter<fs::File>)>,
}

impl LakeSink {
    fn conform(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let columns = batch
            .columns()
            .iter()
            .zip(self.schema.fields())
            .map(|(c, f)| cast(c, f.data_type()))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

impl Sink for LakeSink {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let batch = self.conform(batch)?;
        if self.writer.is_none() {
            let path = self.staging.join(format!("open-{}.parquet", self.subtask));
            let file = fs::File::create(&path).at(&path)?;
            let writer = ArrowWriter::try_new(file, self.schema.clone(), None)
                .map_err(|e| StreamError::Task(format!("parquet {}: {e}", path.display())))?;
            self.writer = Some((path, writer));
        }
        let (path, writer) = self.writer.as_mut().expect("opened");
        writer
            .write(&batch)
            .map_err(|e| StreamError::Task(format!("parquet {}: {e}", path.display())))
    }

    fn prepare(&mut self, checkpoint: u64) -> Result<Vec<PathBuf>> {
        let Some((open, writer)) = self.writer.take() else {
            return Ok(vec![]);
        };
        let file = writer
            .into_inner()
            .map_err(|e| StreamError::Task(format!("parquet {}: {e}", open.display())))?;
        file.sync_all().at(&open)?;
        let staged = self
            .staging
            .join(format!("{checkpoint:012}-{}.parquet", self.subtask));
        fs::rename(&open, &staged).at(&staged)?;
        fs::File::open(&self.staging)
            .and_then(|d| d.sync_all())
            .at(&self.staging)?;
        Ok(vec![staged])
    }
}

/// Link staged files into a new version of the table, unless a commit
/// before a crash already did.
fn commit_lake(lake: &Lake, table: &str, job: &str, files: &[PathBuf]) -> Result<()> {
    let meta = lake
        .meta(table)?
        .ok_or_else(|| StreamError::Task(format!("lake table {table} no longer exists")))?;
    let live = lake.version_dir(table, meta.version);
    let name_of = |f: &PathBuf| {
        format!(
            "{job}-{}",
            f.file_name().unwrap_or_default().to_string_lossy()
        )
    };
    let pending: Vec<&PathBuf> = files
        .iter()
        .filter(|f| f.exists() && !(meta.version > 0 && live.join(name_of(f)).exists()))
        .collect();
    if !pending.is_empty() {
        let (version, dir) = lake.stage(&meta, true)?;
        for f in &pending {
            let target = dir.join(name_of(f));
            fs::hard_link(f, &target).at(&target)?;
        }
        fs::File::open(&dir).and_then(|d| d.sync_all()).at(&dir)?;
        lake.commit(&LakeMeta { version, ..meta })?;
    }
    for f in files {
        if f.exists() {
            fs::remove_file(f).at(f)?;
        }
    }
    Ok(())
}
