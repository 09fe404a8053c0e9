//! DataFusion face of the lake: the `lake` schema (a `SchemaProvider`), the
//! table provider that scans a table's live version, and the sink that
//! writes a new version and commits it (see `lake.rs` for the protocol).

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, RecordBatch, StringArray, UInt32Array};
use datafusion::arrow::compute::{cast, take_record_batch};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::{SchemaProvider, Session, TableProvider};
use datafusion::common::{exec_err, DataFusionError};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::sink::{DataSink, DataSinkExec};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::ExecutionPlanProperties;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, SendableRecordBatchStream,
};
use futures::StreamExt;

use crate::lake::{Lake, LakeMeta};

type DfResult<T> = datafusion::error::Result<T>;

fn df_err(e: impl std::fmt::Display) -> DataFusionError {
    DataFusionError::Execution(e.to_string())
}

/// The `lake` schema: every folder of `<data-dir>/lake` with a `_table.json`.
#[derive(Debug)]
pub struct LakeSchema {
    lake: Lake,
}

impl LakeSchema {
    pub fn new(lake: Lake) -> LakeSchema {
        LakeSchema { lake }
    }
}

#[async_trait]
impl SchemaProvider for LakeSchema {
    fn table_names(&self) -> Vec<String> {
        self.lake.table_names()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let meta = self.lake.meta(name).map_err(df_err)?;
        Ok(meta.map(|meta| {
            Arc::new(LakeTable {
                lake: self.lake.clone(),
                meta,
            }) as Arc<dyn TableProvider>
        }))
    }

    fn register_table(
        &self,
        name: String,
        _table: Arc<dyn TableProvider>,
    ) -> DfResult<Option<Arc<dyn TableProvider>>> {
        exec_err!("lake tables are created with CREATE TABLE lake.{name} AS SELECT ...")
    }

    fn deregister_table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let Some(meta) = self.lake.meta(name).map_err(df_err)? else {
            return Ok(None);
        };
        self.lake.drop_table(name).map_err(df_err)?;
        Ok(Some(Arc::new(LakeTable {
            lake: self.lake.clone(),
            meta,
        })))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.lake
            .table_dir(name)
            .join(crate::lake::META_FILE)
            .exists()
    }
}

/// One lake table as of when it was looked up.
#[derive(Debug)]
pub struct LakeTable {
    lake: Lake,
    meta: LakeMeta,
}

impl LakeTable {
    pub fn new(lake: Lake, meta: LakeMeta) -> LakeTable {
        LakeTable { lake, meta }
    }

    pub fn lake(&self) -> &Lake {
        &self.lake
    }

    pub fn meta(&self) -> &LakeMeta {
        &self.meta
    }

    fn listing(&self) -> DfResult<Option<ListingTable>> {
        if self.meta.version == 0 {
            return Ok(None);
        }
        let dir = self.lake.version_dir(&self.meta.name, self.meta.version);
        let url = ListingTableUrl::parse(format!("{}/", dir.display()))?;
        let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
            .with_file_extension(".parquet")
            .with_table_partition_cols(self.meta.partition_fields());
        let config = ListingTableConfig::new(url)
            .with_listing_options(options)
            .with_schema(self.meta.file_schema());
        ListingTable::try_new(config).map(Some)
    }
}

#[async_trait]
impl TableProvider for LakeTable {
    fn schema(&self) -> SchemaRef {
        self.meta.schema_ref()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        match self.listing()? {
            Some(table) => table.scan(state, projection, filters, limit).await,
            None => {
                let schema = match projection {
                    Some(p) => Arc::new(self.meta.schema.project(p)?),
                    None => self.schema(),
                };
                Ok(Arc::new(EmptyExec::new(schema)))
            }
        }
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        match self.listing()? {
            Some(table) => table.supports_filters_pushdown(filters),
            None => Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()]),
        }
    }

    async fn insert_into(
        &self,
        state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        op: InsertOp,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let append = match op {
            InsertOp::Append => true,
            InsertOp::Overwrite => false,
            InsertOp::Replace => {
                return exec_err!("INSERT OR REPLACE is not supported on lake tables")
            }
        };
        // Sorted input keeps its order in one file sequence; otherwise
        // batches spread over parallel writers.
        let writers = if input.output_ordering().is_some() {
            1
        } else {
            state.config().target_partitions().max(1)
        };
        let sink = LakeSink {
            lake: self.lake.clone(),
            schema: self.meta.schema_ref(),
            meta: self.meta.clone(),
            append,
            writers,
        };
        Ok(Arc::new(DataSinkExec::new(input, Arc::new(sink), None)))
    }
}

/// Writes a new version of a lake table and commits it.
#[derive(Debug)]
pub struct LakeSink {
    lake: Lake,
    meta: LakeMeta,
    schema: SchemaRef,
    append: bool,
    /// Parquet writers encoding in parallel, each on its own thread.
    writers: usize,
}

impl DisplayAs for LakeSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "LakeSink: table=lake.{} append={}",
            self.meta.name, self.append
        )
    }
}

#[async_trait]
impl DataSink for LakeSink {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    async fn write_all(
        &self,
        mut data: SendableRecordBatchStream,
        _ctx: &Arc<TaskContext>,
    ) -> DfResult<u64> {
        let (version, dir) = self.lake.stage(&self.meta, self.append).map_err(df_err)?;
        let outcome = self.write_files(&mut data, &dir).await;
        match outcome {
            Ok(rows) => {
                let meta = LakeMeta {
                    version,
                    ..self.meta.clone()
                };
                self.lake.commit(&meta).map_err(df_err)?;
                Ok(rows)
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                Err(e)
            }
        }
    }
}

impl LakeSink {
    /// Spread the batches over `self.writers` writer threads; all files
    /// written and fsynced, or an error.
    async fn write_files(&self, data: &mut SendableRecordBatchStream, dir: &Path) -> DfResult<u64> {
        let write_id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
        let mut senders = Vec::with_capacity(self.writers);
        let mut workers = Vec::with_capacity(self.writers);
        for n in 0..self.writers {
            let (tx, mut rx) = tokio::sync::mpsc::channel::<RecordBatch>(2);
            let mut writers =
                PartitionWriters::new(dir.to_path_buf(), &self.meta, format!("{write_id}-{n}"));
            workers.push(tokio::task::spawn_blocking(move || {
                while let Some(batch) = rx.blocking_recv() {
                    writers.write(&batch)?;
                }
                writers.close()
            }));
            senders.push(tx);
        }
        let mut rows = 0u64;
        let mut next = 0;
        let mut failed = None;
        while let Some(batch) = data.next().await {
            let batch = match batch {
                Ok(b) => b,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            };
            rows += batch.num_rows() as u64;
            if senders[next].send(batch).await.is_err() {
                break; // that writer failed: its error is reported below
            }
            next = (next + 1) % senders.len();
        }
        drop(senders);
        for worker in workers {
            let result = worker
                .await
                .map_err(|e| DataFusionError::Execution(format!("lake writer: {e}")))?;
            if let Err(e) = result {
                failed.get_or_insert(e);
            }
        }
        match failed {
            Some(e) => Err(e),
            None => sync_tree(dir).map_err(df_err).map(|()| rows),
        }
    }
}

const ROWS_PER_FILE: usize = 1_000_000;
const NULL_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";

/// Open Parquet writers, one per partition folder, rolling files at
/// `ROWS_PER_FILE` rows.
struct PartitionWriters {
    root: PathBuf,
    partition_cols: Vec<String>,
    file_schema: SchemaRef,
    open: HashMap<String, (ArrowWriter<File>, usize)>,
    file_counter: usize,
    write_id: String,
}

impl PartitionWriters {
    fn new(root: PathBuf, meta: &LakeMeta, write_id: String) -> PartitionWriters {
        PartitionWriters {
            root,
            partition_cols: meta.partition_cols.clone(),
            file_schema: meta.file_schema(),
            open: HashMap::new(),
            file_counter: 0,
            write_id,
        }
    }

    fn write(&mut self, batch: &RecordBatch) -> DfResult<()> {
        if self.partition_cols.is_empty() {
            return self.write_to(String::new(), batch.clone());
        }
        for (folder, rows) in partition_rows(batch, &self.partition_cols)? {
            let part = take_record_batch(batch, &UInt32Array::from(rows))?;
            let data = part.project(&self.data_columns(batch.schema_ref()))?;
            self.write_to(folder, data)?;
        }
        Ok(())
    }

    fn data_columns(&self, schema: &SchemaRef) -> Vec<usize> {
        (0..schema.fields().len())
            .filter(|&i| !self.partition_cols.contains(schema.field(i).name()))
            .collect()
    }

    fn write_to(&mut self, folder: String, batch: RecordBatch) -> DfResult<()> {
        let batch = RecordBatch::try_new(self.file_schema.clone(), batch.columns().to_vec())?;
        if !self.open.contains_key(&folder) {
            let writer = self.new_writer(&folder)?;
            self.open.insert(folder.clone(), (writer, 0));
        }
        let (writer, rows) = self.open.get_mut(&folder).expect("just opened");
        writer.write(&batch)?;
        *rows += batch.num_rows();
        if *rows >= ROWS_PER_FILE {
            let (writer, _) = self.open.remove(&folder).expect("present");
            writer.into_inner()?.sync_all().map_err(df_err)?;
        }
        Ok(())
    }

    fn new_writer(&mut self, folder: &str) -> DfResult<ArrowWriter<File>> {
        let dir = if folder.is_empty() {
            self.root.clone()
        } else {
            self.root.join(folder)
        };
        std::fs::create_dir_all(&dir).map_err(df_err)?;
        self.file_counter += 1;
        let path = dir.join(format!(
            "part-{}-{:05}.parquet",
            self.write_id, self.file_counter
        ));
        let file = File::create(&path).map_err(df_err)?;
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).map_err(df_err)?))
            .build();
        Ok(ArrowWriter::try_new(
            file,
            self.file_schema.clone(),
            Some(props),
        )?)
    }

    /// Finish every file and fsync it (the folders are synced by the sink).
    fn close(self) -> DfResult<()> {
        for (_, (writer, _)) in self.open {
            let file = writer.into_inner()?;
            file.sync_all().map_err(df_err)?;
        }
        Ok(())
    }
}

fn sync_tree(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            sync_tree(&entry.path())?;
        }
    }
    File::open(dir)?.sync_all()
}

/// Row indices of `batch` grouped by hive folder (`a=1/b=x`).
fn partition_rows(batch: &RecordBatch, cols: &[String]) -> DfResult<Vec<(String, Vec<u32>)>> {
    let values: Vec<ArrayRef> = cols
        .iter()
        .map(|c| {
            let column = batch
                .column_by_name(c)
                .ok_or_else(|| df_err(format!("partition column {c} missing")))?;
            Ok(cast(column, &DataType::Utf8)?)
        })
        .collect::<DfResult<_>>()?;
    let strings: Vec<&StringArray> = values
        .iter()
        .map(|a| a.as_any().downcast_ref().expect("cast to Utf8"))
        .collect();
    let mut groups: Vec<(String, Vec<u32>)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for row in 0..batch.num_rows() {
        let folder = cols
            .iter()
            .zip(&strings)
            .map(|(c, s)| {
                format!(
                    "{c}={}",
                    if s.is_null(row) {
                        NULL_PARTITION
                    } else {
                        s.value(row)
                    }
                )
            })
            .collect::<Vec<_>>()
            .join("/");
        let slot = *index.entry(folder.clone()).or_insert_with(|| {
            groups.push((folder, Vec::new()));
            groups.len() - 1
        });
        groups[slot].1.push(row as u32);
    }
    Ok(groups)
}
