//! Late rows into a side table. A topic table declared with `OPTIONS
//! ('late.rows' 'lake.late_bids')` and read through a window has its late
//! rows written to that lake table instead of being dropped: a row is late
//! when the last window it belongs to has already closed under the watermark
//! its source task has sent (for a session window, when its time plus the
//! gap has). The side table takes the source's columns by name (value
//! columns and `_partition`, `_offset`, `_timestamp`, `_key`; missing ones are
//! NULL) and gets its rows exactly once: Parquet files staged per
//! checkpoint and committed with it, as the lake sink does.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{new_null_array, ArrayRef, BooleanArray, TimestampMillisecondArray};
use datafusion::arrow::compute::{cast, filter_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;

use crate::error::Result;
use crate::sink::{Sink, SinkTarget};
use crate::window::{WindowKind, WindowSpec};

/// The staging folder of a side table's files, under a job's staging folder.
pub fn staging_dir(staging: &Path, table: &str) -> PathBuf {
    staging.join(format!("late-{table}"))
}

/// The side table a staged file belongs to, from its folder's name.
pub fn table_of(file: &Path) -> Option<String> {
    let dir = file.parent()?.file_name()?.to_str()?;
    dir.strip_prefix("late-").map(str::to_string)
}

/// A source task's writer of late rows.
pub struct LateRows {
    window: WindowSpec,
    schema: SchemaRef,
    sink: Box<dyn Sink>,
}

impl LateRows {
    /// Rows of a windowed read into `target` (a lake table), staged in
    /// `staging` as subtask `subtask`.
    pub fn open(
        window: WindowSpec,
        target: &SinkTarget,
        staging: &Path,
        subtask: usize,
    ) -> Result<LateRows> {
        let SinkTarget::Lake { meta, .. } = target else {
            return Err(crate::error::StreamError::Unsupported(
                "late rows go to lake tables".into(),
            ));
        };
        let dir = staging_dir(staging, &meta.name);
        Ok(LateRows {
            window,
            schema: meta.schema_ref(),
            sink: target.open(&dir, subtask, None)?,
        })
    }

    /// The rows of `batch` (a decoded source batch) that are not late
    /// under `watermark`; the late ones go to the side table. Also says
    /// how many were late.
    pub fn split(&mut self, batch: RecordBatch, watermark: i64) -> Result<(RecordBatch, usize)> {
        let late = self.late_mask(&batch, watermark)?;
        let n = late.true_count();
        if n == 0 {
            return Ok((batch, 0));
        }
        let rows = filter_record_batch(&batch, &late)?;
        self.sink.write(&self.by_name(&rows)?)?;
        let on_time = datafusion::arrow::compute::not(&late)?;
        Ok((filter_record_batch(&batch, &on_time)?, n))
    }

    /// Stage what was written for checkpoint `id`.
    pub fn prepare(&mut self, id: u64) -> Result<Vec<PathBuf>> {
        self.sink.prepare(id)
    }

    /// The end of the last window holding each row, against the watermark.
    fn late_mask(&self, batch: &RecordBatch, watermark: i64) -> Result<BooleanArray> {
        let column = batch
            .column_by_name(&self.window.time_col)
            .expect("checked at planning");
        let ms = cast(column, &DataType::Timestamp(TimeUnit::Millisecond, None))?;
        let ms = ms
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .expect("cast to ms");
        let last_end = |t: i64| match self.window.kind {
            WindowKind::Tumble { size_ms } => t - t.rem_euclid(size_ms) + size_ms,
            WindowKind::Hop { slide_ms, size_ms } => t - t.rem_euclid(slide_ms) + size_ms,
            WindowKind::Session { gap_ms, .. } => t.saturating_add(gap_ms),
        };
        Ok(ms
            .iter()
            .map(|t| Some(t.is_some_and(|t| last_end(t) <= watermark)))
            .collect())
    }

    /// The side table's columns, taken from `rows` by name (the sink
    /// then casts them to the table's types).
    fn by_name(&self, rows: &RecordBatch) -> Result<RecordBatch> {
        let mut fields = Vec::with_capacity(self.schema.fields().len());
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(fields.capacity());
        for f in self.schema.fields() {
            let column = match rows.column_by_name(f.name()) {
                Some(c) => c.clone(),
                None => new_null_array(f.data_type(), rows.num_rows()),
            };
            fields.push(Field::new(f.name(), column.data_type().clone(), true));
            columns.push(column);
        }
        Ok(RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            columns,
        )?)
    }
}
