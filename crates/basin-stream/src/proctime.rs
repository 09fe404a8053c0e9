//! Processing time: a source column declared `p AS PROCTIME()` (as in
//! Flink) holds the wall-clock time at which Basin read the row. In stream
//! mode the source fills it as it decodes, and a source without an
//! event-time WATERMARK then has the wall clock as its watermark, so windows
//! over `p` close as real time passes. In batch mode the scan fills it.
//! Results over processing time depend on when rows are read, so they are
//! not comparable between runs or modes.

use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, TimestampMillisecondArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::Result as DfResult;
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::ExecutionPlan;

use crate::exec::MapExec;
use crate::window::project;

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `batch` with column `col` set to the current time.
pub fn fill(batch: &RecordBatch, col: usize) -> DfResult<RecordBatch> {
    let now: ArrayRef = Arc::new(TimestampMillisecondArray::from(vec![
        now_ms();
        batch.num_rows()
    ]));
    let mut columns = batch.columns().to_vec();
    columns[col] = cast(&now, batch.schema().field(col).data_type())?;
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

/// Batch mode: a table whose processing-time column is filled on scan.
pub struct ProcTimeTable {
    pub inner: Arc<dyn TableProvider>,
    pub column: usize,
}

impl fmt::Debug for ProcTimeTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProcTimeTable(column {})", self.column)
    }
}

#[async_trait]
impl TableProvider for ProcTimeTable {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let input = self.inner.scan(state, None, &[], None).await?;
        let column = self.column;
        let map = move |b: RecordBatch| fill(&b, column);
        let filled = Arc::new(MapExec::new(
            "ProcTime",
            input,
            self.schema(),
            Arc::new(map),
        ));
        match projection {
            None => Ok(filled),
            Some(p) => project(filled, p),
        }
    }
}
