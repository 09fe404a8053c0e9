//! Session windows: per key, rows whose event times lie closer than the
//! gap form one session, `[first time, last time + gap)`. A source marks
//! each row with a one-row session (`window_start` = its time,
//! `window_end` = time + gap); [`assign_sessions`] merges them. Batch mode
//! merges over all rows at once; in stream mode [`SessionOp`] (ahead of the
//! aggregation, keyed by the GROUP BY columns) holds rows of open sessions
//! and releases a session's rows, merged, once the watermark reaches its end.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, TimestampMillisecondArray, UInt32Array};
use datafusion::arrow::compute::{cast, concat_batches, take};
use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{RowConverter, Rows, SortField};

use crate::error::Result;
use crate::ops::{tag_watermark, tagged_watermark, Operator};

/// Where the session columns and keys are in a batch.
#[derive(Debug, Clone)]
pub struct SessionLayout {
    pub keys: Vec<usize>,
    pub start: usize,
    pub end: usize,
    pub gap_ms: i64,
}

/// Rows of sessions ending at or before `close_by`, with their merged
/// windows, and the rows of sessions still open.
pub fn assign_sessions(
    batch: &RecordBatch,
    layout: &SessionLayout,
    close_by: i64,
) -> Result<(RecordBatch, RecordBatch)> {
    let times = millis(batch.column(layout.start))?;
    let keys = key_rows(batch, &layout.keys)?;
    let mut order: Vec<u32> = (0..batch.num_rows() as u32)
        .filter(|&i| times.is_valid(i as usize))
        .collect();
    order.sort_by(|&a, &b| {
        keys.row(a as usize)
            .cmp(&keys.row(b as usize))
            .then(times.value(a as usize).cmp(&times.value(b as usize)))
    });
    let (mut closed, mut open) = (Vec::new(), Vec::new());
    let (mut starts, mut ends) = (Vec::new(), Vec::new());
    let mut i = 0;
    while i < order.len() {
        let (first, mut end) = (
            order[i] as usize,
            times.value(order[i] as usize) + layout.gap_ms,
        );
        let mut j = i + 1;
        while j < order.len()
            && keys.row(order[j] as usize) == keys.row(first)
            && times.value(order[j] as usize) < end
        {
            end = end.max(times.value(order[j] as usize) + layout.gap_ms);
            j += 1;
        }
        let members = &order[i..j];
        if end <= close_by {
            closed.extend_from_slice(members);
            starts.extend(std::iter::repeat_n(times.value(first), members.len()));
            ends.extend(std::iter::repeat_n(end, members.len()));
        } else {
            open.extend_from_slice(members);
        }
        i = j;
    }
    let closed_batch = with_windows(&take_rows(batch, closed)?, layout, starts, ends)?;
    Ok((closed_batch, take_rows(batch, open)?))
}

fn millis(column: &ArrayRef) -> Result<TimestampMillisecondArray> {
    let ms = cast(column, &DataType::Timestamp(TimeUnit::Millisecond, None))?;
    Ok(ms
        .as_any()
        .downcast_ref::<TimestampMillisecondArray>()
        .expect("ms")
        .clone())
}

fn key_rows(batch: &RecordBatch, keys: &[usize]) -> Result<Rows> {
    let fields = keys
        .iter()
        .map(|&k| SortField::new(batch.column(k).data_type().clone()))
        .collect();
    let converter = RowConverter::new(fields)?;
    let columns: Vec<ArrayRef> = keys.iter().map(|&k| batch.column(k).clone()).collect();
    Ok(converter.convert_columns(&columns)?)
}

fn take_rows(batch: &RecordBatch, rows: Vec<u32>) -> Result<RecordBatch> {
    let indices = UInt32Array::from(rows);
    let columns = batch
        .columns()
        .iter()
        .map(|c| take(c, &indices, None))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

/// Replace the provisional window columns with the merged sessions.
fn with_windows(
    batch: &RecordBatch,
    layout: &SessionLayout,
    starts: Vec<i64>,
    ends: Vec<i64>,
) -> Result<RecordBatch> {
    let mut columns = batch.columns().to_vec();
    for (col, values) in [(layout.start, starts), (layout.end, ends)] {
        let array: ArrayRef = Arc::new(TimestampMillisecondArray::from(values));
        columns[col] = cast(&array, batch.schema().field(col).data_type())?;
    }
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

/// Holds rows of open sessions until the watermark closes them.
pub struct SessionOp {
    layout: SessionLayout,
    schema: SchemaRef,
    pending: Vec<RecordBatch>,
    watermark: i64,
}

impl SessionOp {
    pub fn new(layout: SessionLayout, schema: SchemaRef) -> SessionOp {
        SessionOp {
            layout,
            schema,
            pending: Vec::new(),
            watermark: i64::MIN,
        }
    }

    fn buffered(&self) -> Result<RecordBatch> {
        Ok(concat_batches(&self.schema, &self.pending)?)
    }
}

impl Operator for SessionOp {
    /// Rows are held; one that merges into no open session forms a session
    /// that closes at the next watermark, and the aggregation downstream
    /// drops it as late if its window has already been emitted.
    fn on_batch(&mut self, batch: RecordBatch, _out: &mut Vec<RecordBatch>) -> Result<()> {
        if batch.num_rows() > 0 {
            self.pending.push(batch);
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: i64, out: &mut Vec<RecordBatch>) -> Result<()> {
        if watermark <= self.watermark {
            return Ok(());
        }
        self.watermark = watermark;
        if self.pending.is_empty() {
            return Ok(());
        }
        let all = self.buffered()?;
        let (closed, open) = assign_sessions(&all, &self.layout, watermark)?;
        self.pending = if open.num_rows() > 0 {
            vec![open]
        } else {
            vec![]
        };
        if closed.num_rows() > 0 {
            out.push(closed);
        }
        Ok(())
    }

    fn snapshot(&mut self) -> Result<Option<RecordBatch>> {
        Ok(Some(tag_watermark(self.buffered()?, self.watermark)?))
    }

    fn restore(&mut self, state: &RecordBatch) -> Result<()> {
        self.watermark = tagged_watermark(state);
        self.pending = vec![RecordBatch::try_new(
            self.schema.clone(),
            state.columns().to_vec(),
        )?];
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{Field, Schema};

    fn batch(rows: &[(i64, i64)], gap: i64) -> RecordBatch {
        let ts = DataType::Timestamp(TimeUnit::Millisecond, None);
        let schema = Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("window_start", ts.clone(), false),
            Field::new("window_end", ts, false),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(TimestampMillisecondArray::from_iter_values(
                    rows.iter().map(|r| r.1),
                )),
                Arc::new(TimestampMillisecondArray::from_iter_values(
                    rows.iter().map(|r| r.1 + gap),
                )),
            ],
        )
        .unwrap()
    }

    fn windows(b: &RecordBatch) -> Vec<(i64, i64, i64)> {
        let k = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        let s = millis(b.column(1)).unwrap();
        let e = millis(b.column(2)).unwrap();
        let mut out: Vec<_> = (0..b.num_rows())
            .map(|i| (k.value(i), s.value(i), e.value(i)))
            .collect();
        out.sort();
        out
    }

    const LAYOUT: SessionLayout = SessionLayout {
        keys: Vec::new(),
        start: 1,
        end: 2,
        gap_ms: 10,
    };

    #[test]
    fn rows_closer_than_the_gap_share_a_session_per_key() {
        let layout = SessionLayout {
            keys: vec![0],
            ..LAYOUT
        };
        let input = batch(&[(1, 0), (1, 5), (2, 7), (1, 14), (1, 30), (2, 100)], 10);
        let (closed, open) = assign_sessions(&input, &layout, 40).unwrap();
        assert_eq!(
            windows(&closed),
            vec![(1, 0, 24), (1, 0, 24), (1, 0, 24), (1, 30, 40), (2, 7, 17)]
        );
        assert_eq!(windows(&open), vec![(2, 100, 110)]);
    }

    #[test]
    fn operator_releases_sessions_as_the_watermark_passes() {
        let layout = SessionLayout {
            keys: vec![0],
            ..LAYOUT
        };
        let mut op = SessionOp::new(layout, batch(&[], 10).schema());
        let mut out = Vec::new();
        op.on_batch(batch(&[(1, 0), (1, 8)], 10), &mut out).unwrap();
        op.on_watermark(17, &mut out).unwrap();
        assert!(out.is_empty(), "session [0, 18) is still open at 17");
        let state = op.snapshot().unwrap().unwrap();
        let mut restored = SessionOp::new(op.layout.clone(), op.schema.clone());
        restored.restore(&state).unwrap();
        // 2 is behind the watermark but merges into the open session.
        restored
            .on_batch(batch(&[(1, 15), (1, 2)], 10), &mut out)
            .unwrap();
        restored.on_watermark(30, &mut out).unwrap();
        assert_eq!(windows(&out[0]), vec![(1, 0, 25); 4]);
    }
}
