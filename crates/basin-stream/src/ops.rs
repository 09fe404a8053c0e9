//! Stream operators: each takes batches and watermarks in and gives
//! batches out. Stateless steps ([`Step`]) evaluate DataFusion physical
//! expressions batch by batch; stateful operators ([`crate::agg`]) keep
//! state that a checkpoint saves as one Arrow batch.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BooleanArray};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::physical_expr::PhysicalExpr;

use crate::error::{Result, StreamError};

/// Something a task runs batches through.
pub trait Operator: Send {
    fn on_batch(&mut self, batch: RecordBatch, out: &mut Vec<RecordBatch>) -> Result<()>;

    /// A batch from input `input` (joins have two; others one).
    fn on_input(
        &mut self,
        _input: usize,
        batch: RecordBatch,
        out: &mut Vec<RecordBatch>,
    ) -> Result<()> {
        self.on_batch(batch, out)
    }

    /// Input `input`'s own watermark (`i64::MAX`: that input is complete).
    fn on_input_watermark(&mut self, _input: usize, _watermark: i64) {}

    /// Event time has passed `watermark` (ms): emit what is complete.
    fn on_watermark(&mut self, _watermark: i64, _out: &mut Vec<RecordBatch>) -> Result<()> {
        Ok(())
    }

    /// Wall-clock tick (about once a second, and before each checkpoint):
    /// operators that emit updates do it here.
    fn on_tick(&mut self, _out: &mut Vec<RecordBatch>) -> Result<()> {
        Ok(())
    }

    /// The state to checkpoint, if any.
    fn snapshot(&mut self) -> Result<Option<RecordBatch>> {
        Ok(None)
    }

    /// Load the state a checkpoint saved.
    fn restore(&mut self, _state: &RecordBatch) -> Result<()> {
        Ok(())
    }

    /// Rows dropped because their window had already been emitted.
    fn late_rows(&self) -> u64 {
        0
    }
}

/// A stateless step: a filter (with the columns it keeps) or a projection.
#[derive(Debug, Clone)]
pub enum Step {
    Filter {
        predicate: Arc<dyn PhysicalExpr>,
        projection: Option<Vec<usize>>,
    },
    Project {
        exprs: Vec<Arc<dyn PhysicalExpr>>,
        schema: SchemaRef,
    },
    /// Keep these columns, by index.
    Select(Vec<usize>),
}

impl Step {
    pub fn apply(&self, batch: RecordBatch) -> Result<RecordBatch> {
        match self {
            Step::Filter {
                predicate,
                projection,
            } => {
                let mask = predicate.evaluate(&batch)?.into_array(batch.num_rows())?;
                let mask = mask
                    .as_any()
                    .downcast_ref::<BooleanArray>()
                    .ok_or_else(|| StreamError::Task("filter predicate is not boolean".into()))?;
                let kept = filter_record_batch(&batch, mask)?;
                Ok(match projection {
                    Some(p) => kept.project(p)?,
                    None => kept,
                })
            }
            Step::Project { exprs, schema } => {
                let n = batch.num_rows();
                let columns: Vec<ArrayRef> = exprs
                    .iter()
                    .map(|e| e.evaluate(&batch).and_then(|v| v.into_array(n)))
                    .collect::<datafusion::common::Result<_>>()?;
                Ok(RecordBatch::try_new(schema.clone(), columns)?)
            }
            Step::Select(indices) => Ok(batch.project(indices)?),
        }
    }
}

/// Stateless steps in a row, as one operator.
#[derive(Debug, Clone, Default)]
pub struct Chain(pub Vec<Step>);

impl Chain {
    pub fn apply(&self, mut batch: RecordBatch) -> Result<RecordBatch> {
        for step in &self.0 {
            if batch.num_rows() == 0 {
                break;
            }
            batch = step.apply(batch)?;
        }
        Ok(batch)
    }
}

impl Operator for Chain {
    fn on_batch(&mut self, batch: RecordBatch, out: &mut Vec<RecordBatch>) -> Result<()> {
        let batch = self.apply(batch)?;
        if batch.num_rows() > 0 {
            out.push(batch);
        }
        Ok(())
    }
}

const WATERMARK_KEY: &str = "basin.watermark";

/// `state` re-labelled to carry an operator's watermark in its schema
/// metadata (checkpointed state keeps where event time was).
pub fn tag_watermark(state: RecordBatch, watermark: i64) -> Result<RecordBatch> {
    let mut metadata = state.schema().metadata().clone();
    metadata.insert(WATERMARK_KEY.into(), watermark.to_string());
    let schema = Arc::new(state.schema().as_ref().clone().with_metadata(metadata));
    Ok(RecordBatch::try_new(schema, state.columns().to_vec())?)
}

/// The watermark `tag_watermark` put on `state` (`i64::MIN` if none).
pub fn tagged_watermark(state: &RecordBatch) -> i64 {
    state
        .schema()
        .metadata()
        .get(WATERMARK_KEY)
        .and_then(|w| w.parse().ok())
        .unwrap_or(i64::MIN)
}
