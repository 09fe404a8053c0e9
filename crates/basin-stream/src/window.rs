//! Window table functions: a windowed table is its source plus two
//! columns, `window_start` and `window_end` (timestamps, ms). TUMBLE puts
//! each row in one window, HOP in `size / slide` overlapping ones. The same
//! assignment code serves batch mode ([`WindowedTable`] over DataFusion's
//! scan) and stream mode (the source task assigns after decoding), so both
//! modes put a row in the same windows.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, TimestampMillisecondArray, UInt32Array};
use datafusion::arrow::compute::{cast, take};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{plan_err, Result as DfResult};
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::ExecutionPlan;

use crate::exec::{MapExec, StreamScanExec};
use crate::session::{assign_sessions, SessionLayout};
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;

/// Which windows a row belongs to.
#[derive(Debug, Clone, PartialEq)]
pub enum WindowKind {
    Tumble {
        size_ms: i64,
    },
    Hop {
        slide_ms: i64,
        size_ms: i64,
    },
    Session {
        gap_ms: i64,
        partition_by: Vec<String>,
    },
}

/// A window table function's time column and kind.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowSpec {
    pub time_col: String,
    pub kind: WindowKind,
}

pub const WINDOW_START: &str = "window_start";
pub const WINDOW_END: &str = "window_end";

impl WindowSpec {
    /// The source schema with `window_start` and `window_end` appended.
    pub fn output_schema(&self, input: &Schema) -> DfResult<SchemaRef> {
        let Some((_, field)) = input.column_with_name(&self.time_col) else {
            return plan_err!(
                "window time column '{}' is not a column of the table",
                self.time_col
            );
        };
        let tz = match field.data_type() {
            DataType::Timestamp(_, tz) => tz.clone(),
            other => {
                return plan_err!(
                    "window time column '{}' must be a TIMESTAMP, not {other}",
                    self.time_col
                )
            }
        };
        if let WindowKind::Session { partition_by, .. } = &self.kind {
            if let Some(k) = partition_by.iter().find(|k| input.index_of(k).is_err()) {
                return plan_err!("SESSION ... PARTITION BY {k}: not a column of the table");
            }
        }
        let ts = DataType::Timestamp(TimeUnit::Millisecond, tz);
        let mut fields: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new(WINDOW_START, ts.clone(), false));
        fields.push(Field::new(WINDOW_END, ts, false));
        Ok(Arc::new(Schema::new(fields)))
    }

    /// Append the window columns to `batch`; HOP repeats a row once per
    /// window; rows without a time are dropped.
    pub fn assign(&self, batch: &RecordBatch, schema: &SchemaRef) -> DfResult<RecordBatch> {
        let column = batch
            .column_by_name(&self.time_col)
            .expect("checked at planning");
        let millis = cast(column, &DataType::Timestamp(TimeUnit::Millisecond, None))?;
        let millis = millis
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .expect("cast to ms");
        let (rows, starts, size) = self.windows_of(millis);
        let indices = UInt32Array::from(rows);
        let mut columns: Vec<ArrayRef> = batch
            .columns()
            .iter()
            .map(|c| take(c, &indices, None))
            .collect::<Result<_, _>>()?;
        let tz = match schema.field(schema.fields().len() - 1).data_type() {
            DataType::Timestamp(_, tz) => tz.clone(),
            _ => None,
        };
        let ends: Vec<i64> = starts.iter().map(|s| s + size).collect();
        columns.push(Arc::new(
            TimestampMillisecondArray::from(starts).with_timezone_opt(tz.clone()),
        ));
        columns.push(Arc::new(
            TimestampMillisecondArray::from(ends).with_timezone_opt(tz),
        ));
        Ok(RecordBatch::try_new(schema.clone(), columns)?)
    }

    /// Row index and window start of every (row, window) pair, and the size.
    fn windows_of(&self, times: &TimestampMillisecondArray) -> (Vec<u32>, Vec<i64>, i64) {
        let mut rows = Vec::with_capacity(times.len());
        let mut starts = Vec::with_capacity(times.len());
        match self.kind {
            WindowKind::Tumble { size_ms } => {
                for (i, t) in times.iter().enumerate() {
                    if let Some(t) = t {
                        rows.push(i as u32);
                        starts.push(t - t.rem_euclid(size_ms));
                    }
                }
                (rows, starts, size_ms)
            }
            WindowKind::Hop { slide_ms, size_ms } => {
                for (i, t) in times.iter().enumerate() {
                    let Some(t) = t else { continue };
                    // Windows start at multiples of the slide, as in Flink.
                    let last = t - t.rem_euclid(slide_ms);
                    let mut start = last;
                    while start - slide_ms > t - size_ms {
                        start -= slide_ms;
                    }
                    while start <= last {
                        rows.push(i as u32);
                        starts.push(start);
                        start += slide_ms;
                    }
                }
                (rows, starts, size_ms)
            }
            // A one-row session; merged later (see crate::session).
            WindowKind::Session { gap_ms, .. } => {
                for (i, t) in times.iter().enumerate() {
                    if let Some(t) = t {
                        rows.push(i as u32);
                        starts.push(t);
                    }
                }
                (rows, starts, gap_ms)
            }
        }
    }
}

/// `TABLE(TUMBLE(TABLE source, ...))` as a table: the source's scan with
/// windows assigned. Over a stream source the scan stays a placeholder
/// that carries the window to the stream planner.
pub struct WindowedTable {
    source: Arc<dyn TableProvider>,
    spec: WindowSpec,
    schema: SchemaRef,
}

impl WindowedTable {
    pub fn try_new(source: Arc<dyn TableProvider>, spec: WindowSpec) -> DfResult<WindowedTable> {
        let schema = spec.output_schema(&source.schema())?;
        Ok(WindowedTable {
            source,
            spec,
            schema,
        })
    }
}

impl fmt::Debug for WindowedTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WindowedTable({:?})", self.spec)
    }
}

#[async_trait]
impl TableProvider for WindowedTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
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
        let input = self.source.scan(state, None, &[], None).await?;
        let windowed: Arc<dyn ExecutionPlan> = match input.downcast_ref::<StreamScanExec>() {
            Some(scan) => Arc::new(scan.with_window(self.spec.clone(), self.schema.clone())),
            None => {
                let spec = self.spec.clone();
                let schema = self.schema.clone();
                let map = move |b: RecordBatch| spec.assign(&b, &schema);
                let assigned = Arc::new(MapExec::new(
                    "WindowAssign",
                    input,
                    self.schema.clone(),
                    Arc::new(map),
                ));
                self.merge_sessions(assigned)?
            }
        };
        match projection {
            None => Ok(windowed),
            Some(p) => project(windowed, p),
        }
    }
}

impl WindowedTable {
    /// Batch mode: sessions merge over the whole input.
    fn merge_sessions(&self, assigned: Arc<dyn ExecutionPlan>) -> DfResult<Arc<dyn ExecutionPlan>> {
        let WindowKind::Session {
            gap_ms,
            partition_by,
        } = &self.spec.kind
        else {
            return Ok(assigned);
        };
        let n = self.schema.fields().len();
        let layout = SessionLayout {
            keys: partition_by
                .iter()
                .map(|k| self.schema.index_of(k))
                .collect::<Result<_, _>>()?,
            start: n - 2,
            end: n - 1,
            gap_ms: *gap_ms,
        };
        let merge = move |b: RecordBatch| {
            assign_sessions(&b, &layout, i64::MAX)
                .map(|(closed, _)| closed)
                .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))
        };
        let single = Arc::new(CoalescePartitionsExec::new(assigned));
        Ok(Arc::new(MapExec::whole(
            "SessionMerge",
            single,
            self.schema.clone(),
            Arc::new(merge),
        )))
    }
}

/// A projection of `input`'s columns by index.
pub fn project(
    input: Arc<dyn ExecutionPlan>,
    indices: &[usize],
) -> DfResult<Arc<dyn ExecutionPlan>> {
    let schema = input.schema();
    let exprs: Vec<(Arc<dyn datafusion::physical_expr::PhysicalExpr>, String)> = indices
        .iter()
        .map(|&i| {
            let name = schema.field(i).name().clone();
            let col: Arc<dyn datafusion::physical_expr::PhysicalExpr> = Arc::new(
                datafusion::physical_expr::expressions::Column::new(&name, i),
            );
            (col, name)
        })
        .collect();
    Ok(Arc::new(ProjectionExec::try_new(exprs, input)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int64Array;

    fn batch(times: Vec<Option<i64>>) -> RecordBatch {
        let schema = Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
        ]);
        let ids = Int64Array::from_iter_values(0..times.len() as i64);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(ids),
                Arc::new(TimestampMillisecondArray::from(times)),
            ],
        )
        .unwrap()
    }

    fn starts(b: &RecordBatch) -> Vec<i64> {
        let c = b
            .column(2)
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .unwrap();
        c.values().to_vec()
    }

    #[test]
    fn tumble_puts_each_row_in_one_window() {
        let input = batch(vec![Some(0), Some(9_999), Some(10_000), None, Some(-1)]);
        let spec = WindowSpec {
            time_col: "ts".into(),
            kind: WindowKind::Tumble { size_ms: 10_000 },
        };
        let schema = spec.output_schema(&input.schema()).unwrap();
        let out = spec.assign(&input, &schema).unwrap();
        assert_eq!(starts(&out), vec![0, 0, 10_000, -10_000]);
        let ends = out
            .column(3)
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .unwrap();
        assert_eq!(ends.value(0), 10_000);
    }

    #[test]
    fn hop_repeats_a_row_per_window() {
        let input = batch(vec![Some(5_000)]);
        let spec = WindowSpec {
            time_col: "ts".into(),
            kind: WindowKind::Hop {
                slide_ms: 2_000,
                size_ms: 6_000,
            },
        };
        let schema = spec.output_schema(&input.schema()).unwrap();
        let out = spec.assign(&input, &schema).unwrap();
        // windows [0,6000), [2000,8000), [4000,10000) contain 5000
        assert_eq!(starts(&out), vec![0, 2_000, 4_000]);
    }

    #[test]
    fn time_column_must_exist_and_be_a_timestamp() {
        let input = batch(vec![]);
        let spec = WindowSpec {
            time_col: "id".into(),
            kind: WindowKind::Tumble { size_ms: 1 },
        };
        let err = spec.output_schema(&input.schema()).unwrap_err().to_string();
        assert!(err.contains("must be a TIMESTAMP"), "{err}");
    }
}
