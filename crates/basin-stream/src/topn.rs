//! `ROW_NUMBER() OVER (PARTITION BY k ORDER BY o) ... WHERE rn <= N` on a
//! stream: per key, the first N rows by the ordering seen so far (N = 1 is
//! de-duplication: the first, or with `DESC` the latest, row per key). The
//! result is an upsert stream keyed by (k, rn): rows of keys that changed
//! are emitted again with their ranks at each tick, or, into sinks that
//! cannot take updates, once at the end of a bounded run.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, UInt64Array};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::physical_expr::{PhysicalExpr, PhysicalSortExpr};

use crate::error::Result;
use crate::hash::{fast_map, fast_set, FastMap, FastSet};
use crate::ops::Operator;
use crate::ttl::{Ttl, UNSTAMPED};

/// What a top-N stage computes.
#[derive(Debug, Clone)]
pub struct TopNSpec {
    pub partition_by: Vec<Arc<dyn PhysicalExpr>>,
    pub order_by: Vec<PhysicalSortExpr>,
    pub limit: usize,
    pub input_schema: SchemaRef,
    /// The input's columns and the row number (UInt64).
    pub output_schema: SchemaRef,
    /// Emit changed keys at each tick (else only at the end of input).
    pub updating: bool,
    /// Drop keys not offered a row for this long (event time).
    pub ttl_ms: Option<i64>,
}

/// One kept row: its ordering bytes, then the whole row's bytes.
type Ranked = (Box<[u8]>, Box<[u8]>);

pub struct TopN {
    spec: TopNSpec,
    keys: RowConverter,
    order: RowConverter,
    rows: RowConverter,
    groups: FastMap<Box<[u8]>, Vec<Ranked>>,
    dirty: FastSet<Box<[u8]>>,
    watermark: i64,
    ttl: Option<Ttl>,
    /// With a TTL: each key's stamp (see [`crate::ttl`]).
    touched: FastMap<Box<[u8]>, i64>,
}

impl TopN {
    pub fn new(spec: TopNSpec) -> Result<TopN> {
        let schema = &spec.input_schema;
        let field = |e: &Arc<dyn PhysicalExpr>| e.data_type(schema);
        let keys = spec
            .partition_by
            .iter()
            .map(|e| field(e).map(SortField::new))
            .collect::<datafusion::common::Result<Vec<_>>>()?;
        let order = spec
            .order_by
            .iter()
            .map(|s| field(&s.expr).map(|t| SortField::new_with_options(t, s.options)))
            .collect::<datafusion::common::Result<Vec<_>>>()?;
        let rows = schema
            .fields()
            .iter()
            .map(|f| SortField::new(f.data_type().clone()))
            .collect();
        Ok(TopN {
            keys: RowConverter::new(keys)?,
            order: RowConverter::new(order)?,
            rows: RowConverter::new(rows)?,
            groups: fast_map(),
            dirty: fast_set(),
            watermark: UNSTAMPED,
            ttl: spec.ttl_ms.map(Ttl::new),
            touched: fast_map(),
            spec,
        })
    }

    fn convert(&self, batch: &RecordBatch) -> Result<(Rows, Rows, Rows)> {
        let n = batch.num_rows();
        let eval = |e: &Arc<dyn PhysicalExpr>| e.evaluate(batch).and_then(|v| v.into_array(n));
        let keys: Vec<ArrayRef> = self
            .spec
            .partition_by
            .iter()
            .map(eval)
            .collect::<datafusion::common::Result<_>>()?;
        let order: Vec<ArrayRef> = self
            .spec
            .order_by
            .iter()
            .map(|s| eval(&s.expr))
            .collect::<datafusion::common::Result<_>>()?;
        Ok((
            self.keys.convert_columns(&keys)?,
            self.order.convert_columns(&order)?,
            self.rows.convert_columns(batch.columns())?,
        ))
    }

    /// Offer every row of `batch`; `mark` records keys whose top N changed.
    fn offer(&mut self, batch: &RecordBatch, mark: bool) -> Result<()> {
        let (keys, order, rows) = self.convert(batch)?;
        for i in 0..batch.num_rows() {
            let key = keys.row(i);
            let key = key.as_ref();
            if self.ttl.is_some() {
                // Stamped with the watermark at the next sweep.
                self.touched.insert(key.into(), UNSTAMPED);
            }
            let (o, r) = (order.row(i), rows.row(i));
            // Rows are copied out only when kept, keys only when new.
            if !self.groups.contains_key(key) {
                self.groups.insert(key.into(), Vec::new());
            }
            let list = self.groups.get_mut(key).expect("inserted");
            let at = list.partition_point(|(lo, lr)| (&**lo, &**lr) <= (o.as_ref(), r.as_ref()));
            if at >= self.spec.limit {
                continue;
            }
            list.insert(at, (o.as_ref().into(), r.as_ref().into()));
            list.truncate(self.spec.limit);
            if mark && !self.dirty.contains(key) {
                self.dirty.insert(key.into());
            }
        }
        Ok(())
    }

    /// The kept rows of `keys` (all keys when `None`), with their ranks.
    fn rows_of(&self, keys: Option<&FastSet<Box<[u8]>>>, ranked: bool) -> Result<RecordBatch> {
        let parser = self.rows.parser();
        let mut picked = Vec::new();
        let mut ranks = Vec::new();
        let lists: Box<dyn Iterator<Item = &Vec<Ranked>>> = match keys {
            Some(keys) => Box::new(keys.iter().filter_map(|k| self.groups.get(k))),
            None => Box::new(self.groups.values()),
        };
        for list in lists {
            for (rank, (_, row)) in list.iter().enumerate() {
                picked.push(parser.parse(row));
                ranks.push(rank as u64 + 1);
            }
        }
        let mut columns = self.rows.convert_rows(picked)?;
        let schema = if ranked {
            columns.push(Arc::new(UInt64Array::from(ranks)));
            self.spec.output_schema.clone()
        } else {
            self.spec.input_schema.clone()
        };
        Ok(RecordBatch::try_new(schema, columns)?)
    }

    fn emit_dirty(&mut self, out: &mut Vec<RecordBatch>) -> Result<()> {
        if self.dirty.is_empty() {
            return Ok(());
        }
        let dirty = std::mem::take(&mut self.dirty);
        let batch = self.rows_of(Some(&dirty), true)?;
        if batch.num_rows() > 0 {
            out.push(batch);
        }
        Ok(())
    }
}

impl TopN {
    /// Drop keys whose stamp is older than the TTL; their pending updates
    /// go out first.
    fn expire(&mut self, out: &mut Vec<RecordBatch>) -> Result<()> {
        let watermark = self.watermark;
        let Some(cutoff) = self.ttl.as_mut().and_then(|t| t.due(watermark)) else {
            return Ok(());
        };
        for key in self.groups.keys() {
            let stamp = self.touched.entry(key.clone()).or_insert(watermark);
            if *stamp == UNSTAMPED {
                *stamp = watermark;
            }
        }
        let pending = self
            .dirty
            .iter()
            .any(|key| self.touched.get(key).is_some_and(|t| *t < cutoff));
        if self.spec.updating && pending {
            self.emit_dirty(out)?;
        }
        let touched = &mut self.touched;
        self.groups
            .retain(|key, _| touched.get(key).is_some_and(|t| *t >= cutoff));
        let groups = &self.groups;
        touched.retain(|key, _| groups.contains_key(key));
        Ok(())
    }
}

impl Operator for TopN {
    fn on_batch(&mut self, batch: RecordBatch, _out: &mut Vec<RecordBatch>) -> Result<()> {
        self.offer(&batch, true)
    }

    fn on_watermark(&mut self, watermark: i64, out: &mut Vec<RecordBatch>) -> Result<()> {
        self.watermark = self.watermark.max(watermark);
        if watermark == i64::MAX {
            self.emit_dirty(out)?;
        }
        self.expire(out)
    }

    fn on_tick(&mut self, out: &mut Vec<RecordBatch>) -> Result<()> {
        if self.spec.updating {
            self.emit_dirty(out)?;
        }
        Ok(())
    }

    fn snapshot(&mut self) -> Result<Option<RecordBatch>> {
        // Emitted (updating) or not yet (final): the dirty set is saved by
        // emitting only at ticks and barriers, so it is empty in updating
        // mode; in final mode every key is dirty until the end.
        let mut state = self.rows_of(None, false)?;
        if !self.spec.updating {
            let mut metadata = state.schema().metadata().clone();
            metadata.insert("basin.all_dirty".into(), "true".into());
            let schema = Arc::new(state.schema().as_ref().clone().with_metadata(metadata));
            state = RecordBatch::try_new(schema, state.columns().to_vec())?;
        }
        Ok(Some(state))
    }

    fn restore(&mut self, state: &RecordBatch) -> Result<()> {
        self.groups.clear();
        let mark = state.schema().metadata().contains_key("basin.all_dirty");
        let state = RecordBatch::try_new(self.spec.input_schema.clone(), state.columns().to_vec())?;
        self.offer(&state, mark)
    }
}
