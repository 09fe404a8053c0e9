//! Inner equi-joins of two streams. Each side keeps the rows it has seen,
//! indexed by join key; a new row is matched against the other side's
//! rows, the pairs pass the join's extra condition, and the row is kept
//! for later matches. When both sides join on a window's end (a windowed
//! join, or a join of windowed aggregates), rows are kept per window and
//! dropped once the watermark passes it, so state stays bounded; other
//! joins keep every row (state grows with the input, as in Flink without
//! a state TTL), or, with a TTL, keep rows in buckets by the watermark at
//! which they came and drop buckets older than the TTL.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BinaryArray, RecordBatch, TimestampMillisecondArray, UInt32Array, UInt8Array,
};
use datafusion::arrow::compute::{cast, filter_record_batch, take};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::JoinSide;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::joins::utils::{ColumnIndex, JoinFilter};

use crate::error::{Result, StreamError};
use crate::ops::{tag_watermark, tagged_watermark, Operator};
use crate::ttl::{Ttl, UNSTAMPED};

/// One side of a join.
#[derive(Debug, Clone)]
pub struct JoinSideSpec {
    pub schema: SchemaRef,
    pub keys: Vec<Arc<dyn PhysicalExpr>>,
    /// The key (by position in `keys`) holding the window end, when windowed.
    pub window_end: Option<usize>,
    /// An interval join: when a row of this side stops matching.
    pub expiry: Option<Expiry>,
    /// A bounded input (a lake table, files): once read, complete for good
    /// (a stream's end in a `--bounded` run is not: a later run reads on).
    pub bounded: bool,
}

/// A row of an interval join's side can match nothing once the watermark
/// passes its event time (`column`) plus `offset_ms`; rows are kept in
/// buckets by that time rounded up to `grain_ms`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Expiry {
    pub column: usize,
    pub offset_ms: i64,
    pub grain_ms: i64,
}

impl Expiry {
    fn bucket(&self, time: i64) -> i64 {
        let t = time.saturating_add(self.offset_ms);
        t.saturating_add((self.grain_ms - t.rem_euclid(self.grain_ms)) % self.grain_ms)
    }
}

/// What a join computes: the plan's `HashJoinExec`, taken apart.
#[derive(Debug, Clone)]
pub struct JoinSpec {
    pub left: JoinSideSpec,
    pub right: JoinSideSpec,
    pub filter: Option<JoinFilter>,
    /// Columns of left ++ right kept, in order.
    pub projection: Option<Vec<usize>>,
    /// A semi join: only rows of this side (0 left, 1 right) that have a
    /// match come out, each once.
    pub semi: Option<usize>,
    pub output_schema: SchemaRef,
    /// Unwindowed: drop stored rows older than this (event time).
    pub ttl_ms: Option<i64>,
}

/// Rows of one side within one window (or all rows, unwindowed).
#[derive(Default)]
struct Bucket {
    index: HashMap<Box<[u8]>, Vec<u32>>,
    rows: Vec<Box<[u8]>>,
}

struct SideState {
    spec: JoinSideSpec,
    keys: RowConverter,
    rows: RowConverter,
    buckets: BTreeMap<i64, Bucket>,
}

impl SideState {
    fn new(spec: JoinSideSpec) -> Result<SideState> {
        let key_fields = spec
            .keys
            .iter()
            .map(|k| k.data_type(&spec.schema).map(SortField::new))
            .collect::<datafusion::common::Result<Vec<_>>>()?;
        let row_fields = spec
            .schema
            .fields()
            .iter()
            .map(|f| SortField::new(f.data_type().clone()))
            .collect();
        Ok(SideState {
            keys: RowConverter::new(key_fields)?,
            rows: RowConverter::new(row_fields)?,
            spec,
            buckets: BTreeMap::new(),
        })
    }

    /// Key columns, and each row's bucket (window end or `i64::MAX`); rows
    /// with a NULL key match nothing (`None`).
    fn keys_of(&self, batch: &RecordBatch) -> Result<(Vec<ArrayRef>, Vec<Option<i64>>)> {
        let n = batch.num_rows();
        let keys: Vec<ArrayRef> = self
            .spec
            .keys
            .iter()
            .map(|k| k.evaluate(batch).and_then(|v| v.into_array(n)))
            .collect::<datafusion::common::Result<_>>()?;
        let millis = |column: &ArrayRef| -> Result<Vec<Option<i64>>> {
            let ms = cast(column, &DataType::Timestamp(TimeUnit::Millisecond, None))?;
            let ms = ms
                .as_any()
                .downcast_ref::<TimestampMillisecondArray>()
                .expect("ms")
                .clone();
            Ok(ms.iter().collect())
        };
        let ends = match (self.spec.window_end, self.spec.expiry) {
            (Some(w), _) => millis(&keys[w])?,
            (None, Some(e)) => millis(batch.column(e.column))?
                .into_iter()
                .map(|t| t.map(|t| e.bucket(t)))
                .collect(),
            (None, None) => vec![Some(i64::MAX); n],
        };
        let buckets = (0..n)
            .map(|i| ends[i].filter(|_| keys.iter().all(|k| k.is_valid(i))))
            .collect();
        Ok((keys, buckets))
    }

    fn insert(
        &mut self,
        batch: &RecordBatch,
        keys: &[ArrayRef],
        buckets: &[Option<i64>],
    ) -> Result<()> {
        let key_rows = self.keys.convert_columns(keys)?;
        let rows = self.rows.convert_columns(batch.columns())?;
        for (i, b) in buckets.iter().enumerate() {
            let Some(b) = b else { continue };
            let bucket = self.buckets.entry(*b).or_default();
            let id = bucket.rows.len() as u32;
            bucket.rows.push(rows.row(i).as_ref().into());
            bucket
                .index
                .entry(key_rows.row(i).as_ref().into())
                .or_default()
                .push(id);
        }
        Ok(())
    }
}

impl Bucket {
    /// Take in `other`'s rows (their ids move up past this bucket's).
    fn absorb(&mut self, other: Bucket) {
        let base = self.rows.len() as u32;
        self.rows.extend(other.rows);
        for (key, ids) in other.index {
            self.index
                .entry(key)
                .or_default()
                .extend(ids.into_iter().map(|id| id + base));
        }
    }
}

/// An inner join of two streams.
pub struct Join {
    spec: JoinSpec,
    sides: [SideState; 2],
    watermark: i64,
    /// Per side: its input is complete (a bounded input, fully read).
    complete: [bool; 2],
    ttl: Option<Ttl>,
    late: u64,
}

impl Join {
    pub fn new(spec: JoinSpec) -> Result<Join> {
        let sides = [
            SideState::new(spec.left.clone())?,
            SideState::new(spec.right.clone())?,
        ];
        Ok(Join {
            sides,
            watermark: i64::MIN,
            complete: [false; 2],
            ttl: spec.ttl_ms.map(Ttl::new),
            late: 0,
            spec,
        })
    }

    /// Pairs of a row of `batch` (from `side`) and a stored row of the
    /// other side with the same key: (batch row, bucket, stored row id).
    fn pairs(
        &self,
        side: usize,
        keys: &[ArrayRef],
        buckets: &[Option<i64>],
    ) -> Result<Vec<(u32, i64, u32)>> {
        let other = &self.sides[1 - side];
        let key_rows = other.keys.convert_columns(keys)?;
        let mut pairs = Vec::new();
        // Windowed rows match in their window's bucket; others sit in one
        // bucket, or by arrival (TTL), or by expiry (interval): probe all.
        let every_bucket = other.spec.window_end.is_none();
        for (i, b) in buckets.iter().enumerate() {
            let Some(b) = b else { continue };
            let key = key_rows.row(i);
            let mut probe = |b: i64, bucket: &Bucket| {
                if let Some(ids) = bucket.index.get(key.as_ref()) {
                    pairs.extend(ids.iter().map(|id| (i as u32, b, *id)));
                }
            };
            if every_bucket {
                other
                    .buckets
                    .iter()
                    .for_each(|(b, bucket)| probe(*b, bucket));
            } else if let Some(bucket) = other.buckets.get(b) {
                probe(*b, bucket);
            }
        }
        Ok(pairs)
    }

    /// The joined rows of `pairs` (left columns, then right), and which
    /// pairs pass the join's extra condition.
    fn joined(
        &self,
        side: usize,
        batch: &RecordBatch,
        pairs: &[(u32, i64, u32)],
    ) -> Result<(Vec<ArrayRef>, Vec<bool>)> {
        let other = &self.sides[1 - side];
        let parser = other.rows.parser();
        let theirs = pairs
            .iter()
            .map(|(_, b, id)| parser.parse(&other.buckets[b].rows[*id as usize]));
        let their_columns = other.rows.convert_rows(theirs)?;
        let indices = UInt32Array::from_iter_values(pairs.iter().map(|p| p.0));
        let my_columns = batch
            .columns()
            .iter()
            .map(|c| take(c, &indices, None))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let columns: Vec<ArrayRef> = if side == 0 {
            my_columns.into_iter().chain(their_columns).collect()
        } else {
            their_columns.into_iter().chain(my_columns).collect()
        };
        let Some(filter) = &self.spec.filter else {
            return Ok((columns, vec![true; pairs.len()]));
        };
        let left_len = self.spec.left.schema.fields().len();
        let picked: Vec<ArrayRef> = filter
            .column_indices()
            .iter()
            .map(|ColumnIndex { index, side }| match side {
                JoinSide::Left => columns[*index].clone(),
                _ => columns[left_len + *index].clone(),
            })
            .collect();
        let intermediate = RecordBatch::try_new(filter.schema().clone(), picked)?;
        let mask = filter
            .expression()
            .evaluate(&intermediate)?
            .into_array(pairs.len())?;
        let mask = mask
            .as_any()
            .downcast_ref::<datafusion::arrow::array::BooleanArray>()
            .ok_or_else(|| StreamError::Task("join condition is not boolean".into()))?;
        Ok((
            columns,
            (0..pairs.len())
                .map(|i| mask.is_valid(i) && mask.value(i))
                .collect(),
        ))
    }

    /// Inner join: the passing pairs, projected.
    fn inner(&self, columns: Vec<ArrayRef>, pass: &[bool]) -> Result<RecordBatch> {
        let mask = datafusion::arrow::array::BooleanArray::from(pass.to_vec());
        let all = RecordBatch::try_new(joined_schema(&self.spec), columns)?;
        let mut columns = filter_record_batch(&all, &mask)?.columns().to_vec();
        if let Some(p) = &self.spec.projection {
            columns = p.iter().map(|&i| columns[i].clone()).collect();
        }
        Ok(RecordBatch::try_new(
            self.spec.output_schema.clone(),
            columns,
        )?)
    }

    fn on_side(
        &mut self,
        side: usize,
        batch: RecordBatch,
        out: &mut Vec<RecordBatch>,
    ) -> Result<()> {
        let (keys, mut buckets) = self.sides[side].keys_of(&batch)?;
        self.drop_late(side, &batch, &mut buckets)?;
        let pairs = self.pairs(side, &keys, &buckets)?;
        if !pairs.is_empty() {
            let (columns, pass) = self.joined(side, &batch, &pairs)?;
            match self.spec.semi {
                None => out.push(self.inner(columns, &pass)?),
                Some(kept) if kept == side => {
                    // Rows of the kept side that matched are emitted once
                    // and need not be stored.
                    let mut matched: Vec<u32> = pairs
                        .iter()
                        .zip(&pass)
                        .filter(|(_, p)| **p)
                        .map(|(q, _)| q.0)
                        .collect();
                    matched.dedup();
                    matched.iter().for_each(|&i| buckets[i as usize] = None);
                    let rows = take_batch(&batch, matched)?;
                    out.push(self.semi_output(rows.columns().to_vec())?);
                }
                Some(_) => out.push(self.release(&pairs, &pass)?),
            }
        }
        // A row of a window the watermark has passed, or facing a complete
        // input (a lookup join against a lake table), can match nothing new.
        if self.complete[1 - side] {
            return Ok(());
        }
        let buckets: Vec<Option<i64>> = buckets
            .into_iter()
            .map(|b| b.filter(|b| *b > self.watermark))
            .collect();
        let buckets = self.stamp(side, buckets);
        self.sides[side].insert(&batch, &keys, &buckets)
    }

    /// An interval join drops rows at or behind the watermark: rows they
    /// could have matched may be gone already.
    fn drop_late(
        &mut self,
        side: usize,
        batch: &RecordBatch,
        buckets: &mut [Option<i64>],
    ) -> Result<()> {
        let Some(expiry) = self.sides[side].spec.expiry else {
            return Ok(());
        };
        if self.watermark == i64::MIN {
            return Ok(());
        }
        let ms = cast(
            batch.column(expiry.column),
            &DataType::Timestamp(TimeUnit::Millisecond, None),
        )?;
        let ms = ms
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .expect("ms");
        for (i, b) in buckets.iter_mut().enumerate() {
            if b.is_some() && ms.is_valid(i) && ms.value(i) <= self.watermark {
                *b = None;
                self.late += 1;
            }
        }
        Ok(())
    }

    /// Whether `side` keeps its rows in buckets by arrival (a TTL on an
    /// unwindowed join).
    fn stamped(&self, side: usize) -> bool {
        let spec = &self.sides[side].spec;
        self.ttl.is_some() && spec.window_end.is_none() && spec.expiry.is_none()
    }

    /// The buckets of rows arriving now on `side`: with a TTL, the
    /// unstamped one, dated at the next watermark.
    fn stamp(&self, side: usize, buckets: Vec<Option<i64>>) -> Vec<Option<i64>> {
        if !self.stamped(side) {
            return buckets;
        }
        buckets.into_iter().map(|b| b.map(|_| UNSTAMPED)).collect()
    }

    /// With a TTL: date the rows that came since the last watermark, and
    /// drop buckets older than the TTL on sides that are still being read.
    fn expire(&mut self) {
        let watermark = self.watermark;
        let Some(ttl) = self.ttl.as_mut() else { return };
        let now = ttl.coarse(watermark);
        let cutoff = ttl.due(watermark);
        for s in 0..2 {
            if !self.stamped(s) || self.complete[s] {
                continue;
            }
            let side = &mut self.sides[s];
            if let Some(fresh) = side.buckets.remove(&UNSTAMPED) {
                side.buckets.entry(now).or_default().absorb(fresh);
            }
            if let Some(cutoff) = cutoff {
                side.buckets = side.buckets.split_off(&cutoff);
            }
        }
    }

    /// Semi join, new row on the probing side: stored rows of the kept
    /// side that now match are emitted and forgotten.
    fn release(&mut self, pairs: &[(u32, i64, u32)], pass: &[bool]) -> Result<RecordBatch> {
        let kept = self.spec.semi.expect("semi join");
        let side = &mut self.sides[kept];
        let mut released: Vec<(i64, u32)> = pairs
            .iter()
            .zip(pass)
            .filter(|(_, p)| **p)
            .map(|(q, _)| (q.1, q.2))
            .collect();
        released.sort_unstable();
        released.dedup();
        let parser = side.rows.parser();
        let rows = released
            .iter()
            .map(|(b, id)| parser.parse(&side.buckets[b].rows[*id as usize]));
        let columns = side.rows.convert_rows(rows)?;
        let released_ids = released.clone();
        for (b, id) in &released_ids {
            if let Some(bucket) = side.buckets.get_mut(b) {
                bucket
                    .index
                    .values_mut()
                    .for_each(|ids| ids.retain(|i| i != id));
            }
        }
        self.semi_output(columns)
    }

    /// Rows of the kept side of a semi join, projected.
    fn semi_output(&self, mut columns: Vec<ArrayRef>) -> Result<RecordBatch> {
        if let Some(p) = &self.spec.projection {
            columns = p.iter().map(|&i| columns[i].clone()).collect();
        }
        Ok(RecordBatch::try_new(
            self.spec.output_schema.clone(),
            columns,
        )?)
    }
}

fn take_batch(batch: &RecordBatch, rows: Vec<u32>) -> Result<RecordBatch> {
    let indices = UInt32Array::from(rows);
    let columns = batch
        .columns()
        .iter()
        .map(|c| take(c, &indices, None))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

/// Left columns then right columns, all nullable.
fn joined_schema(spec: &JoinSpec) -> SchemaRef {
    let fields: Vec<Field> = spec
        .left
        .schema
        .fields()
        .iter()
        .chain(spec.right.schema.fields())
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    Arc::new(Schema::new(fields))
}

impl Operator for Join {
    fn on_batch(&mut self, batch: RecordBatch, out: &mut Vec<RecordBatch>) -> Result<()> {
        self.on_side(0, batch, out)
    }

    fn on_input(
        &mut self,
        input: usize,
        batch: RecordBatch,
        out: &mut Vec<RecordBatch>,
    ) -> Result<()> {
        self.on_side(input.min(1), batch, out)
    }

    fn late_rows(&self) -> u64 {
        self.late
    }

    fn on_input_watermark(&mut self, input: usize, watermark: i64) {
        let side = input.min(1);
        let spec = if side == 0 {
            &self.spec.left
        } else {
            &self.spec.right
        };
        if watermark == i64::MAX && spec.bounded {
            self.complete[side] = true;
        }
    }

    fn on_watermark(&mut self, watermark: i64, _out: &mut Vec<RecordBatch>) -> Result<()> {
        if watermark <= self.watermark {
            return Ok(());
        }
        self.watermark = watermark;
        for side in &mut self.sides {
            if side.spec.window_end.is_some() || side.spec.expiry.is_some() {
                let keep = side.buckets.split_off(&watermark.saturating_add(1));
                side.buckets = keep;
            }
        }
        self.expire();
        Ok(())
    }

    /// State: (side, row bytes) of every kept row.
    fn snapshot(&mut self) -> Result<Option<RecordBatch>> {
        let (mut sides, mut rows): (Vec<u8>, Vec<&[u8]>) = (Vec::new(), Vec::new());
        for (s, side) in self.sides.iter().enumerate() {
            for bucket in side.buckets.values() {
                for r in &bucket.rows {
                    sides.push(s as u8);
                    rows.push(r);
                }
            }
        }
        let schema = Schema::new(vec![
            Field::new("side", DataType::UInt8, false),
            Field::new("row", DataType::Binary, false),
        ]);
        let columns: Vec<ArrayRef> = vec![
            Arc::new(UInt8Array::from(sides)),
            Arc::new(BinaryArray::from(rows)),
        ];
        let state = RecordBatch::try_new(Arc::new(schema), columns)?;
        Ok(Some(tag_watermark(state, self.watermark)?))
    }

    fn restore(&mut self, state: &RecordBatch) -> Result<()> {
        self.watermark = tagged_watermark(state);
        let sides = state
            .column(0)
            .as_any()
            .downcast_ref::<UInt8Array>()
            .expect("side");
        let rows = state
            .column(1)
            .as_any()
            .downcast_ref::<BinaryArray>()
            .expect("rows");
        for s in 0..2 {
            let side = &mut self.sides[s];
            let parser = side.rows.parser();
            let picked: Vec<_> = (0..state.num_rows())
                .filter(|&i| sides.value(i) as usize == s)
                .map(|i| parser.parse(rows.value(i)))
                .collect();
            if picked.is_empty() {
                continue;
            }
            let columns = side.rows.convert_rows(picked)?;
            let batch = RecordBatch::try_new(side.spec.schema.clone(), columns)?;
            let (keys, buckets) = side.keys_of(&batch)?;
            let buckets = self.stamp(s, buckets);
            self.sides[s].insert(&batch, &keys, &buckets)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int64Array;
    use datafusion::physical_expr::expressions::Column;

    fn side() -> JoinSideSpec {
        JoinSideSpec {
            schema: Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, false)])),
            keys: vec![Arc::new(Column::new("k", 0))],
            window_end: None,
            expiry: None,
            bounded: false,
        }
    }

    fn key(k: i64) -> RecordBatch {
        RecordBatch::try_new(side().schema, vec![Arc::new(Int64Array::from(vec![k]))]).unwrap()
    }

    /// Rows joined after the watermark moved `gap` ms past the first one.
    fn matches_after(ttl_ms: Option<i64>, gap: i64) -> usize {
        let spec = JoinSpec {
            left: side(),
            right: side(),
            filter: None,
            projection: None,
            semi: None,
            output_schema: joined_schema(&JoinSpec {
                left: side(),
                right: side(),
                filter: None,
                projection: None,
                semi: None,
                output_schema: Arc::new(Schema::empty()),
                ttl_ms: None,
            }),
            ttl_ms,
        };
        let mut join = Join::new(spec).unwrap();
        let mut out = Vec::new();
        join.on_input(0, key(7), &mut out).unwrap();
        join.on_watermark(100_000, &mut out).unwrap();
        join.on_input(0, key(8), &mut out).unwrap();
        join.on_watermark(100_000 + gap, &mut out).unwrap();
        join.on_input(1, key(7), &mut out).unwrap();
        join.on_input(1, key(8), &mut out).unwrap();
        out.iter().map(|b| b.num_rows()).sum()
    }

    #[test]
    fn unwindowed_rows_expire_after_the_ttl() {
        assert_eq!(matches_after(None, 60_000), 2, "no TTL keeps every row");
        assert_eq!(matches_after(Some(10_000), 5_000), 2, "within the TTL");
        // Key 7 came before the watermark of 100 s, key 8 after it (stamped
        // at 160 s): only key 8 is still within 10 s.
        assert_eq!(matches_after(Some(10_000), 60_000), 1);
    }
}

#[cfg(test)]
mod interval_tests {
    use super::*;
    use datafusion::arrow::array::Int64Array;
    use datafusion::physical_expr::expressions::Column;

    fn side(offset_ms: i64) -> JoinSideSpec {
        let ts = DataType::Timestamp(TimeUnit::Millisecond, None);
        JoinSideSpec {
            schema: Arc::new(Schema::new(vec![
                Field::new("k", DataType::Int64, false),
                Field::new("t", ts, false),
            ])),
            keys: vec![Arc::new(Column::new("k", 0))],
            window_end: None,
            expiry: Some(Expiry {
                column: 1,
                offset_ms,
                grain_ms: 100,
            }),
            bounded: false,
        }
    }

    fn row(k: i64, t: i64) -> RecordBatch {
        RecordBatch::try_new(
            side(0).schema,
            vec![
                Arc::new(Int64Array::from(vec![k])),
                Arc::new(TimestampMillisecondArray::from(vec![t])),
            ],
        )
        .unwrap()
    }

    /// Left rows stop matching 2 s after their time, right rows at theirs
    /// (`r.t BETWEEN l.t AND l.t + 2 s`): the watermark evicts them and
    /// rows behind it are dropped as late.
    #[test]
    fn interval_join_state_is_evicted_by_the_watermark() {
        let probe = JoinSpec {
            left: side(2000),
            right: side(0),
            filter: None,
            projection: None,
            semi: None,
            output_schema: Arc::new(Schema::empty()),
            ttl_ms: None,
        };
        let spec = JoinSpec {
            output_schema: joined_schema(&probe),
            ..probe
        };
        let mut join = Join::new(spec).unwrap();
        let mut out = Vec::new();
        for t in 0..50 {
            join.on_input(0, row(1, t * 1000), &mut out).unwrap();
        }
        join.on_watermark(45_000, &mut out).unwrap();
        let kept: usize = join.sides[0].buckets.values().map(|b| b.rows.len()).sum();
        assert_eq!(kept, 6, "left rows from 44 s on may still match");
        join.on_input(1, row(1, 45_500), &mut out).unwrap();
        // (No condition in this spec: every kept row with the key matches.)
        assert_eq!(out.iter().map(|b| b.num_rows()).sum::<usize>(), 6);
        join.on_input(1, row(1, 40_000), &mut out).unwrap();
        assert_eq!(join.late_rows(), 1);
    }
}
