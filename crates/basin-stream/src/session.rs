//! Session windows: per key, rows whose event times lie closer than the
//! gap form one session, `[first time, last time + gap)`. A source marks
//! each row with a one-row session (`window_start` = its time,
//! `window_end` = time + gap); [`assign_sessions`] merges them. Batch mode
//! merges over all rows at once; in stream mode [`SessionOp`] (ahead of the
//! aggregation, keyed by the GROUP BY columns) holds rows of open sessions,
//! placing each row in its key's sessions as it arrives, and releases a
//! session's rows, merged, once the watermark reaches its end.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, TimestampMillisecondArray, UInt32Array};
use datafusion::arrow::compute::{cast, interleave, take};
use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{RowConverter, Rows, SortField};

use crate::error::Result;
use crate::hash::{fast_map, FastMap};
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

/// One open session of a key: its span and where its rows are.
struct Session {
    start: i64,
    /// The latest row time; the session ends at `last + gap`.
    last: i64,
    members: Vec<(u64, u32)>,
}

/// A batch holding rows of open sessions, and how many are still open.
struct Held {
    batch: RecordBatch,
    live: usize,
}

/// Holds rows of open sessions until the watermark closes them. State is
/// incremental: each key's open sessions (disjoint, by start) and a heap of
/// session ends, so a row is placed once when it arrives and copied once
/// when its session closes, however long the session stays open.
pub struct SessionOp {
    layout: SessionLayout,
    schema: SchemaRef,
    converter: Option<RowConverter>,
    held: FastMap<u64, Held>,
    next_batch: u64,
    /// Key bytes → key id; ids index `sessions` and `keys`.
    ids: FastMap<Box<[u8]>, u32>,
    keys: Vec<Option<Box<[u8]>>>,
    sessions: Vec<Vec<Session>>,
    free: Vec<u32>,
    /// (session end, key id), smallest first; entries left by sessions
    /// that grew or merged are skipped when popped.
    ends: BinaryHeap<Reverse<(i64, u32)>>,
    watermark: i64,
}

impl SessionOp {
    pub fn new(layout: SessionLayout, schema: SchemaRef) -> SessionOp {
        SessionOp {
            layout,
            schema,
            converter: None,
            held: fast_map(),
            next_batch: 0,
            ids: fast_map(),
            keys: Vec::new(),
            sessions: Vec::new(),
            free: Vec::new(),
            ends: BinaryHeap::new(),
            watermark: i64::MIN,
        }
    }

    fn key_rows(&mut self, batch: &RecordBatch) -> Result<Rows> {
        if self.converter.is_none() {
            let fields = self
                .layout
                .keys
                .iter()
                .map(|&k| SortField::new(batch.column(k).data_type().clone()))
                .collect();
            self.converter = Some(RowConverter::new(fields)?);
        }
        let columns: Vec<ArrayRef> = self
            .layout
            .keys
            .iter()
            .map(|&k| batch.column(k).clone())
            .collect();
        Ok(self
            .converter
            .as_ref()
            .expect("set")
            .convert_columns(&columns)?)
    }

    fn key_id(&mut self, key: &[u8]) -> u32 {
        if let Some(&id) = self.ids.get(key) {
            return id;
        }
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                self.keys.push(None);
                self.sessions.push(Vec::new());
                (self.keys.len() - 1) as u32
            }
        };
        self.keys[id as usize] = Some(key.into());
        self.ids.insert(key.into(), id);
        id
    }

    /// Put one row (at `t`) into its key's sessions, merging every session
    /// it joins (rows closer than the gap share a session).
    fn place(&mut self, key: u32, t: i64, at: (u64, u32)) {
        let gap = self.layout.gap_ms;
        let list = &mut self.sessions[key as usize];
        let joins = |s: &Session| t > s.start - gap && t < s.last + gap;
        let first = list.iter().position(joins);
        let mut merged = Session {
            start: t,
            last: t,
            members: vec![at],
        };
        let insert_at = match first {
            Some(i) => {
                let n = list[i..].iter().take_while(|s| joins(s)).count();
                for s in list.drain(i..i + n) {
                    merged.start = merged.start.min(s.start);
                    merged.last = merged.last.max(s.last);
                    merged.members.extend(s.members);
                }
                i
            }
            None => list.partition_point(|s| s.start < t),
        };
        self.ends.push(Reverse((merged.last + gap, key)));
        list.insert(insert_at, merged);
    }

    /// Close every session ending at or before `watermark`; their rows
    /// with merged windows.
    fn close(&mut self, watermark: i64) -> Result<Option<RecordBatch>> {
        let gap = self.layout.gap_ms;
        let (mut members, mut starts, mut ends) = (Vec::new(), Vec::new(), Vec::new());
        while let Some(&Reverse((end, key))) = self.ends.peek() {
            if end > watermark {
                break;
            }
            self.ends.pop();
            let list = &mut self.sessions[key as usize];
            let mut i = 0;
            while i < list.len() {
                if list[i].last + gap <= watermark {
                    let s = list.remove(i);
                    starts.extend(std::iter::repeat_n(s.start, s.members.len()));
                    ends.extend(std::iter::repeat_n(s.last + gap, s.members.len()));
                    members.extend(s.members);
                } else {
                    i += 1;
                }
            }
            if list.is_empty() {
                self.forget(key);
            }
        }
        if members.is_empty() {
            return Ok(None);
        }
        let rows = self.gather(&members)?;
        for (b, _) in &members {
            let held = self.held.get_mut(b).expect("held batch");
            held.live -= 1;
            if held.live == 0 {
                self.held.remove(b);
            }
        }
        Ok(Some(with_windows(&rows, &self.layout, starts, ends)?))
    }

    fn forget(&mut self, key: u32) {
        if let Some(bytes) = self.keys[key as usize].take() {
            self.ids.remove(&bytes);
            self.free.push(key);
        }
    }

    /// The rows at `members`, in that order.
    fn gather(&self, members: &[(u64, u32)]) -> Result<RecordBatch> {
        let mut slot: FastMap<u64, usize> = fast_map();
        let mut batches = Vec::new();
        let indices: Vec<(usize, usize)> = members
            .iter()
            .map(|(b, row)| {
                let i = *slot.entry(*b).or_insert_with(|| {
                    batches.push(&self.held[b].batch);
                    batches.len() - 1
                });
                (i, *row as usize)
            })
            .collect();
        let columns = (0..self.schema.fields().len())
            .map(|c| {
                let arrays: Vec<&dyn Array> =
                    batches.iter().map(|b| b.column(c).as_ref()).collect();
                interleave(&arrays, &indices)
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }

    /// Every held row of an open session, windows as they arrived.
    fn buffered(&self) -> Result<RecordBatch> {
        let members: Vec<(u64, u32)> = self
            .sessions
            .iter()
            .flatten()
            .flat_map(|s| s.members.iter().copied())
            .collect();
        if members.is_empty() {
            return Ok(RecordBatch::new_empty(self.schema.clone()));
        }
        self.gather(&members)
    }
}

impl Operator for SessionOp {
    /// Rows are placed in their key's sessions; one that merges into no
    /// open session forms a session that closes at the next watermark, and
    /// the aggregation downstream drops it as late if its window has
    /// already been emitted.
    fn on_batch(&mut self, batch: RecordBatch, _out: &mut Vec<RecordBatch>) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let times = millis(batch.column(self.layout.start))?;
        let keys = self.key_rows(&batch)?;
        let id = self.next_batch;
        self.next_batch += 1;
        let mut live = 0;
        for i in (0..batch.num_rows()).filter(|&i| times.is_valid(i)) {
            let key = self.key_id(keys.row(i).as_ref());
            self.place(key, times.value(i), (id, i as u32));
            live += 1;
        }
        if live > 0 {
            self.held.insert(id, Held { batch, live });
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: i64, out: &mut Vec<RecordBatch>) -> Result<()> {
        if watermark <= self.watermark {
            return Ok(());
        }
        self.watermark = watermark;
        if let Some(closed) = self.close(watermark)? {
            out.push(closed);
        }
        Ok(())
    }

    fn snapshot(&mut self) -> Result<Option<RecordBatch>> {
        Ok(Some(tag_watermark(self.buffered()?, self.watermark)?))
    }

    fn restore(&mut self, state: &RecordBatch) -> Result<()> {
        let watermark = tagged_watermark(state);
        *self = SessionOp::new(self.layout.clone(), self.schema.clone());
        self.watermark = watermark;
        let batch = RecordBatch::try_new(self.schema.clone(), state.columns().to_vec())?;
        self.on_batch(batch, &mut Vec::new())
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

    #[test]
    fn incremental_sessions_equal_batch_sessions_when_no_row_is_late() {
        let layout = SessionLayout {
            keys: vec![0],
            ..LAYOUT
        };
        let mut seed = 7u64;
        let mut next = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            seed >> 33
        };
        // Times rise with jitter up to 15 (gap 10), so sessions grow, bridge
        // and close while others stay open; the watermark trails by 20.
        let rows: Vec<(i64, i64)> = (0..3000)
            .map(|i| ((next() % 7) as i64, i / 3 + (next() % 15) as i64))
            .collect();
        let mut op = SessionOp::new(layout.clone(), batch(&[], 10).schema());
        let mut out = Vec::new();
        for chunk in rows.chunks(97) {
            op.on_batch(batch(chunk, 10), &mut out).unwrap();
            let max = chunk.iter().map(|r| r.1).max().unwrap();
            op.on_watermark(max - 20, &mut out).unwrap();
            if chunk[0].1 % 5 == 0 {
                let state = op.snapshot().unwrap().unwrap();
                let mut restored = SessionOp::new(layout.clone(), op.schema.clone());
                restored.restore(&state).unwrap();
                op = restored;
            }
        }
        op.on_watermark(i64::MAX, &mut out).unwrap();
        let mut streamed: Vec<_> = out.iter().flat_map(windows).collect();
        streamed.sort();
        let (closed, open) = assign_sessions(&batch(&rows, 10), &layout, i64::MAX).unwrap();
        assert_eq!(open.num_rows(), 0);
        assert_eq!(streamed, windows(&closed));
        assert!(op.held.is_empty() && op.ids.is_empty(), "state left behind");
    }
}
