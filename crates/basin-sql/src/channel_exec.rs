//! A leaf execution plan whose partitions are filled by producer tasks
//! through a bounded channel: the shape of every source Basin reads itself
//! (PostgreSQL's COPY stream, checked CSV/JSON files). EXPLAIN shows the
//! source's own description (the pushed-down query, the files).

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::execution::TaskContext;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream,
};

type DfResult<T> = datafusion::error::Result<T>;

/// Where a producer sends its batches; a send fails once the reader is gone.
pub type BatchSender = tokio::sync::mpsc::Sender<DfResult<RecordBatch>>;

/// Starts filling partition `n`: it must spawn its own task and return.
pub type Producer = Arc<dyn Fn(usize, BatchSender) + Send + Sync>;

/// Batches in flight per partition.
const CHANNEL_DEPTH: usize = 4;

pub struct ChannelExec {
    name: &'static str,
    detail: String,
    schema: SchemaRef,
    produce: Producer,
    properties: Arc<PlanProperties>,
}

impl ChannelExec {
    pub fn new(
        name: &'static str,
        detail: String,
        schema: SchemaRef,
        partitions: usize,
        produce: Producer,
    ) -> ChannelExec {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(partitions.max(1)),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        ChannelExec {
            name,
            detail,
            schema,
            produce,
            properties: Arc::new(properties),
        }
    }
}

impl fmt::Debug for ChannelExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.name, self.detail)
    }
}

impl DisplayAs for ChannelExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}: {}", self.name, self.detail)
    }
}

impl ExecutionPlan for ChannelExec {
    fn name(&self) -> &str {
        self.name
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let (tx, rx) = tokio::sync::mpsc::channel(CHANNEL_DEPTH);
        (self.produce)(partition, tx);
        let batches = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|batch| (batch, rx))
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            batches,
        )))
    }
}
