//! Grouped aggregation over a stream. Groups live in panes keyed by the
//! time the pane fires: a window's end for windowed `GROUP BY` (the pane is
//! emitted and dropped once the watermark reaches it, so state stays
//! bounded), or the end of input for a plain `GROUP BY`. Aggregates are
//! DataFusion's own `GroupsAccumulator`s, so every aggregate function
//! DataFusion has works, with the same results as batch mode. A row whose
//! pane has already fired is late: dropped and counted. HOP windows are
//! pre-aggregated per slice (see [`hop`]).

mod expire;
mod hop;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Int64Array, TimestampMillisecondArray, UInt32Array,
};
use datafusion::arrow::compute::{cast, concat_batches, take};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_expr::{GroupsAccumulatorAdapter, PhysicalExpr};

use crate::error::{Result, StreamError};
use crate::hash::{fast_map, FastMap};
use crate::ops::{tag_watermark, tagged_watermark, Operator};
use crate::ttl::{Ttl, UNSTAMPED};

/// When a group's pane fires.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Trigger {
    /// At the window end held in group column `0`.
    WindowEnd(usize),
    /// At the window start in group column `0` plus the window size.
    WindowStart(usize, i64),
    /// At the end of input.
    EndOfInput,
    /// No window: groups that changed are emitted again at each tick (an
    /// upsert stream keyed by the group columns).
    Updating,
    /// HOP windows of `size` every `slide` ms, from slices of `slice` ms
    /// (their gcd): group columns `start` / `end` hold a slice's bounds on
    /// input and a window's on output.
    Hop {
        start: Option<usize>,
        end: Option<usize>,
        size: i64,
        slide: i64,
        slice: i64,
    },
}

/// What one aggregation computes: the plan's `AggregateExec`, taken apart.
#[derive(Debug, Clone)]
pub struct AggSpec {
    pub group_exprs: Vec<Arc<dyn PhysicalExpr>>,
    pub group_schema: SchemaRef,
    pub aggs: Vec<Arc<AggregateFunctionExpr>>,
    pub filters: Vec<Option<Arc<dyn PhysicalExpr>>>,
    pub output_schema: SchemaRef,
    pub trigger: Trigger,
    /// Updating mode: drop groups not updated for this long (event time).
    pub ttl_ms: Option<i64>,
}

impl AggSpec {
    /// Schema of checkpointed state: fire time, group columns, accumulator states.
    fn state_schema(&self) -> Result<SchemaRef> {
        let mut fields = vec![Field::new("__fire", DataType::Int64, false)];
        fields.extend(
            self.group_schema
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true)),
        );
        for agg in &self.aggs {
            fields.extend(
                agg.state_fields()?
                    .iter()
                    .map(|f| f.as_ref().clone().with_nullable(true)),
            );
        }
        Ok(Arc::new(Schema::new(fields)))
    }

    fn accumulator(&self, agg: &Arc<AggregateFunctionExpr>) -> Result<Box<dyn GroupsAccumulator>> {
        if agg.groups_accumulator_supported() {
            return Ok(agg.create_groups_accumulator()?);
        }
        let agg = agg.clone();
        Ok(Box::new(GroupsAccumulatorAdapter::new(move || {
            agg.create_accumulator()
        })))
    }

    /// Evaluate group keys, aggregate inputs and filters on a batch.
    fn evaluate(&self, batch: &RecordBatch) -> Result<Inputs> {
        let n = batch.num_rows();
        let eval = |e: &Arc<dyn PhysicalExpr>| e.evaluate(batch).and_then(|v| v.into_array(n));
        let keys = self
            .group_exprs
            .iter()
            .map(eval)
            .collect::<datafusion::common::Result<Vec<_>>>()?;
        let mut values = Vec::with_capacity(self.aggs.len());
        for agg in &self.aggs {
            values.push(
                agg.expressions()
                    .iter()
                    .map(eval)
                    .collect::<datafusion::common::Result<Vec<_>>>()?,
            );
        }
        let filters = self
            .filters
            .iter()
            .map(|f| f.as_ref().map(eval).transpose())
            .collect::<datafusion::common::Result<Vec<_>>>()?;
        Ok(Inputs {
            keys,
            values,
            filters,
        })
    }
}

struct Inputs {
    keys: Vec<ArrayRef>,
    values: Vec<Vec<ArrayRef>>,
    filters: Vec<Option<ArrayRef>>,
}

impl Inputs {
    fn take(&self, indices: &UInt32Array) -> Result<Inputs> {
        let t = |a: &ArrayRef| take(a, indices, None);
        Ok(Inputs {
            keys: self
                .keys
                .iter()
                .map(t)
                .collect::<std::result::Result<_, _>>()?,
            values: self
                .values
                .iter()
                .map(|v| v.iter().map(t).collect::<std::result::Result<_, _>>())
                .collect::<std::result::Result<_, _>>()?,
            filters: self
                .filters
                .iter()
                .map(|f| f.as_ref().map(t).transpose())
                .collect::<std::result::Result<_, _>>()?,
        })
    }
}

/// The groups of one pane and their accumulators.
struct Pane {
    index: FastMap<Box<[u8]>, usize>,
    rows: Rows,
    accs: Vec<Box<dyn GroupsAccumulator>>,
}

/// A grouped aggregation emitting panes as event time passes them.
pub struct Aggregate {
    spec: AggSpec,
    converter: RowConverter,
    panes: BTreeMap<i64, Pane>,
    watermark: i64,
    late: u64,
    /// Updating mode: groups changed since the last tick.
    dirty: Vec<bool>,
    /// HOP mode: ends of the windows still to fire.
    windows: BTreeSet<i64>,
    /// Updating mode with a TTL: the sweep clock, and each group's stamp.
    ttl: Option<Ttl>,
    touched: Vec<i64>,
}

impl Aggregate {
    pub fn new(spec: AggSpec) -> Result<Aggregate> {
        let fields = spec
            .group_schema
            .fields()
            .iter()
            .map(|f| SortField::new(f.data_type().clone()))
            .collect();
        Ok(Aggregate {
            converter: RowConverter::new(fields)?,
            panes: BTreeMap::new(),
            watermark: i64::MIN,
            late: 0,
            dirty: Vec::new(),
            windows: BTreeSet::new(),
            ttl: spec.ttl_ms.map(Ttl::new),
            touched: Vec::new(),
            spec,
        })
    }

    /// Fire time of each row.
    fn fire_times(&self, keys: &[ArrayRef], n: usize) -> Result<Vec<i64>> {
        let (col, add) = match self.spec.trigger {
            Trigger::EndOfInput | Trigger::Updating => return Ok(vec![i64::MAX; n]),
            Trigger::WindowEnd(c) => (c, 0),
            Trigger::WindowStart(c, size) => (c, size),
            Trigger::Hop { start: Some(c), .. } => (c, 0),
            Trigger::Hop {
                end: Some(c),
                slice,
                ..
            } => (c, -slice),
            Trigger::Hop { .. } => return Ok(vec![i64::MAX; n]),
        };
        let ms = cast(
            &keys[col],
            &DataType::Timestamp(TimeUnit::Millisecond, None),
        )?;
        let ms = ms
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .expect("ms");
        Ok(ms
            .iter()
            .map(|t| t.map_or(i64::MAX, |t| t.saturating_add(add)))
            .collect())
    }

    fn new_pane(&self) -> Result<Pane> {
        let accs = self
            .spec
            .aggs
            .iter()
            .map(|a| self.spec.accumulator(a))
            .collect::<Result<_>>()?;
        Ok(Pane {
            index: fast_map(),
            rows: self.converter.empty_rows(0, 0),
            accs,
        })
    }

    /// Group index of every row of `keys` in the pane firing at `fire`.
    fn group_indices(&mut self, fire: i64, keys: &[ArrayRef]) -> Result<(&mut Pane, Vec<usize>)> {
        if !self.panes.contains_key(&fire) {
            let pane = self.new_pane()?;
            self.panes.insert(fire, pane);
            self.register_windows(fire);
        }
        let rows = self.converter.convert_columns(keys)?;
        let pane = self.panes.get_mut(&fire).expect("inserted");
        let mut indices = Vec::with_capacity(rows.num_rows());
        for row in rows.iter() {
            // Look up before inserting: a known group costs no allocation.
            let idx = match pane.index.get(row.as_ref()) {
                Some(idx) => *idx,
                None => {
                    let next = pane.index.len();
                    pane.index.insert(row.as_ref().into(), next);
                    pane.rows.push(row);
                    next
                }
            };
            indices.push(idx);
        }
        Ok((pane, indices))
    }

    fn update(&mut self, fire: i64, inputs: &Inputs) -> Result<()> {
        let updating = self.spec.trigger == Trigger::Updating;
        let (pane, indices) = self.group_indices(fire, &inputs.keys)?;
        let groups = pane.index.len();
        for (i, acc) in pane.accs.iter_mut().enumerate() {
            let filter = inputs.filters[i].as_ref().map(|f| {
                f.as_any()
                    .downcast_ref::<BooleanArray>()
                    .cloned()
                    .expect("boolean filter")
            });
            acc.update_batch(&inputs.values[i], &indices, filter.as_ref(), groups)?;
        }
        if updating {
            self.dirty.resize(groups, false);
            indices.iter().for_each(|&i| self.dirty[i] = true);
            if self.ttl.is_some() {
                // Stamped with the watermark at the next sweep.
                self.touched.resize(groups, UNSTAMPED);
                indices.iter().for_each(|&i| self.touched[i] = UNSTAMPED);
            }
        }
        Ok(())
    }

    fn emit(&self, mut pane: Pane) -> Result<RecordBatch> {
        let mut columns = self.converter.convert_rows(pane.rows.iter())?;
        for acc in pane.accs.iter_mut() {
            columns.push(acc.evaluate(EmitTo::All)?);
        }
        let schema = &self.spec.output_schema;
        let columns = columns
            .into_iter()
            .zip(schema.fields())
            .map(|(c, f)| {
                if c.data_type() == f.data_type() {
                    Ok(c)
                } else {
                    cast(&c, f.data_type())
                }
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(RecordBatch::try_new(schema.clone(), columns)?)
    }

    /// The pane's state as rows of the state schema.
    fn pane_state(&self, fire: i64, pane: &mut Pane, schema: &SchemaRef) -> Result<RecordBatch> {
        let n = pane.index.len();
        let mut columns: Vec<ArrayRef> = vec![Arc::new(Int64Array::from(vec![fire; n]))];
        columns.extend(self.converter.convert_rows(pane.rows.iter())?);
        for acc in pane.accs.iter_mut() {
            columns.extend(acc.state(EmitTo::All)?);
        }
        let columns = columns
            .into_iter()
            .zip(schema.fields())
            .map(|(c, f)| {
                if c.data_type() == f.data_type() {
                    Ok(c)
                } else {
                    cast(&c, f.data_type())
                }
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(RecordBatch::try_new(schema.clone(), columns)?)
    }

    fn merge_state(&mut self, fire: i64, state: &RecordBatch) -> Result<()> {
        let groups = self.spec.group_schema.fields().len();
        let keys: Vec<ArrayRef> = (1..=groups).map(|i| state.column(i).clone()).collect();
        let widths = self
            .spec
            .aggs
            .iter()
            .map(|a| a.state_fields().map(|f| f.len()))
            .collect::<datafusion::common::Result<Vec<_>>>()?;
        let (pane, indices) = self.group_indices(fire, &keys)?;
        let total = pane.index.len();
        let mut col = 1 + groups;
        for (acc, width) in pane.accs.iter_mut().zip(widths) {
            acc.merge_batch(&state.columns()[col..col + width], &indices, total)?;
            col += width;
        }
        Ok(())
    }
}

impl Operator for Aggregate {
    fn on_batch(&mut self, batch: RecordBatch, _out: &mut Vec<RecordBatch>) -> Result<()> {
        let n = batch.num_rows();
        let inputs = self.spec.evaluate(&batch)?;
        let fires = self.fire_times(&inputs.keys, n)?;
        let mut buckets: BTreeMap<i64, Vec<u32>> = BTreeMap::new();
        for (i, &fire) in fires.iter().enumerate() {
            if self.is_late(fire) {
                self.late += 1;
            } else {
                buckets.entry(fire).or_default().push(i as u32);
            }
        }
        for (fire, rows) in buckets {
            if rows.len() == n {
                self.update(fire, &inputs)?;
            } else {
                let part = inputs.take(&UInt32Array::from(rows))?;
                self.update(fire, &part)?;
            }
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: i64, out: &mut Vec<RecordBatch>) -> Result<()> {
        if watermark <= self.watermark {
            return Ok(());
        }
        if self.spec.trigger == Trigger::Updating {
            // Updates never come late; the end of input must not make the
            // rows of a later run late either.
            if watermark < i64::MAX {
                self.watermark = watermark;
            }
            return self.expire(out);
        }
        self.watermark = watermark;
        if matches!(self.spec.trigger, Trigger::Hop { .. }) {
            return self.fire_windows(out);
        }
        let later = match watermark.checked_add(1) {
            Some(next) => self.panes.split_off(&next),
            None => BTreeMap::new(),
        };
        let ready = std::mem::replace(&mut self.panes, later);
        for (_, pane) in ready {
            let batch = self.emit(pane)?;
            if batch.num_rows() > 0 {
                out.push(batch);
            }
        }
        Ok(())
    }

    fn snapshot(&mut self) -> Result<Option<RecordBatch>> {
        let schema = self.spec.state_schema()?;
        let panes = std::mem::take(&mut self.panes);
        let mut parts = Vec::with_capacity(panes.len());
        for (fire, mut pane) in panes {
            parts.push(self.pane_state(fire, &mut pane, &schema)?);
        }
        let state = concat_batches(&schema, &parts)?;
        // state() drained the accumulators: load the state back.
        self.restore_panes(&state)?;
        Ok(Some(tag_watermark(state, self.watermark)?))
    }

    fn restore(&mut self, state: &RecordBatch) -> Result<()> {
        self.watermark = tagged_watermark(state);
        self.panes.clear();
        self.windows.clear();
        self.restore_panes(state)
    }

    fn late_rows(&self) -> u64 {
        self.late
    }

    fn on_tick(&mut self, out: &mut Vec<RecordBatch>) -> Result<()> {
        if self.spec.trigger != Trigger::Updating || !self.dirty.contains(&true) {
            return Ok(());
        }
        let Some(mut pane) = self.panes.remove(&i64::MAX) else {
            return Ok(());
        };
        let schema = self.spec.state_schema()?;
        let state = self.pane_state(i64::MAX, &mut pane, &schema)?;
        // state() drained the accumulators: load everything back.
        self.merge_state(i64::MAX, &state)?;
        let changed: Vec<u32> = (0..self.dirty.len() as u32)
            .filter(|&i| self.dirty[i as usize])
            .collect();
        self.dirty.iter_mut().for_each(|d| *d = false);
        let changed = take_rows(&state, &UInt32Array::from(changed))?;
        let mut temp = Aggregate::new(AggSpec {
            trigger: Trigger::EndOfInput,
            ..self.spec.clone()
        })?;
        temp.merge_state(i64::MAX, &changed)?;
        temp.on_watermark(i64::MAX, out)
    }
}

fn take_rows(batch: &RecordBatch, indices: &UInt32Array) -> Result<RecordBatch> {
    let columns = batch
        .columns()
        .iter()
        .map(|c| take(c, indices, None))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

impl Aggregate {
    fn restore_panes(&mut self, state: &RecordBatch) -> Result<()> {
        if state.num_rows() == 0 {
            return Ok(());
        }
        let fires = state
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .ok_or_else(|| StreamError::Task("aggregate state has no fire column".into()))?;
        let mut buckets: BTreeMap<i64, Vec<u32>> = BTreeMap::new();
        for (i, f) in fires.values().iter().enumerate() {
            buckets.entry(*f).or_default().push(i as u32);
        }
        for (fire, rows) in buckets {
            let indices = UInt32Array::from(rows);
            let columns = state
                .columns()
                .iter()
                .map(|c| take(c, &indices, None))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            let part = RecordBatch::try_new(state.schema(), columns)?;
            self.merge_state(fire, &part)?;
        }
        Ok(())
    }
}
