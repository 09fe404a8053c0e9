//! Two small execution plans: [`MapExec`] applies a function to each batch
//! of its child (window assignment in batch mode), and [`StreamScanExec`]
//! stands for a live source in a plan that the stream planner
//! ([`crate::plan`]) replaces by a source task; it never executes.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{exec_err, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::{Distribution, EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, SendableRecordBatchStream,
};
use futures::{StreamExt, TryStreamExt};

use crate::source::SourceInfo;
use crate::window::WindowSpec;

pub type BatchFn = Arc<dyn Fn(RecordBatch) -> DfResult<RecordBatch> + Send + Sync>;

fn properties(
    schema: &SchemaRef,
    partitioning: datafusion::physical_plan::Partitioning,
) -> Arc<PlanProperties> {
    Arc::new(PlanProperties::new(
        EquivalenceProperties::new(schema.clone()),
        partitioning,
        EmissionType::Incremental,
        Boundedness::Bounded,
    ))
}

/// Maps every batch of its child through a function.
pub struct MapExec {
    name: &'static str,
    input: Arc<dyn ExecutionPlan>,
    schema: SchemaRef,
    map: BatchFn,
    /// Collect the whole input into one batch first.
    whole: bool,
    properties: Arc<PlanProperties>,
}

impl MapExec {
    pub fn new(
        name: &'static str,
        input: Arc<dyn ExecutionPlan>,
        schema: SchemaRef,
        map: BatchFn,
    ) -> MapExec {
        let partitioning = input.properties().output_partitioning().clone();
        let properties = properties(&schema, partitioning);
        MapExec {
            name,
            input,
            schema,
            map,
            whole: false,
            properties,
        }
    }

    /// Maps the whole (single-partition) input, as one batch.
    pub fn whole(
        name: &'static str,
        input: Arc<dyn ExecutionPlan>,
        schema: SchemaRef,
        map: BatchFn,
    ) -> MapExec {
        MapExec {
            whole: true,
            ..MapExec::new(name, input, schema, map)
        }
    }
}

impl fmt::Debug for MapExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name)
    }
}

impl DisplayAs for MapExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}", self.name)
    }
}

impl ExecutionPlan for MapExec {
    fn name(&self) -> &str {
        self.name
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn required_input_distribution(&self) -> Vec<Distribution> {
        if self.whole {
            vec![Distribution::SinglePartition]
        } else {
            vec![Distribution::UnspecifiedDistribution]
        }
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![!self.whole]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let input = children.into_iter().next().expect("one child");
        let mut exec = MapExec::new(self.name, input, self.schema.clone(), self.map.clone());
        exec.whole = self.whole;
        Ok(Arc::new(exec))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let map = self.map.clone();
        let input = self.input.execute(partition, context)?;
        if !self.whole {
            let mapped = input.map(move |batch| batch.and_then(|b| map(b)));
            return Ok(Box::pin(RecordBatchStreamAdapter::new(
                self.schema.clone(),
                mapped,
            )));
        }
        let schema = self.input.schema();
        let all = async move {
            let batches: Vec<RecordBatch> = input.try_collect().await?;
            map(datafusion::arrow::compute::concat_batches(
                &schema, &batches,
            )?)
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            futures::stream::once(all),
        )))
    }
}

/// A live source in a plan: the stream planner turns it into a source task.
#[derive(Clone)]
pub struct StreamScanExec {
    pub source: Arc<SourceInfo>,
    /// Windows assigned right after decoding, and the windowed schema.
    pub window: Option<(WindowSpec, SchemaRef)>,
    /// Columns kept, of the (windowed) source schema.
    pub projection: Option<Vec<usize>>,
    /// The window as the query declares it, when `window` assigns HOP
    /// slices instead (lateness follows the declared windows).
    pub declared: Option<WindowSpec>,
    properties: Arc<PlanProperties>,
}

impl StreamScanExec {
    pub fn new(
        source: Arc<SourceInfo>,
        projection: Option<Vec<usize>>,
    ) -> DfResult<StreamScanExec> {
        let full = source.schema.clone();
        Self::build(source, None, projection, full)
    }

    fn build(
        source: Arc<SourceInfo>,
        window: Option<(WindowSpec, SchemaRef)>,
        projection: Option<Vec<usize>>,
        full: SchemaRef,
    ) -> DfResult<StreamScanExec> {
        let schema = match &projection {
            Some(p) => Arc::new(full.project(p)?),
            None => full,
        };
        let properties = properties(
            &schema,
            datafusion::physical_plan::Partitioning::UnknownPartitioning(1),
        );
        Ok(StreamScanExec {
            source,
            window,
            projection,
            declared: None,
            properties,
        })
    }

    /// This scan (unprojected) with windows assigned.
    pub fn with_window(&self, spec: WindowSpec, windowed: SchemaRef) -> StreamScanExec {
        Self::build(
            self.source.clone(),
            Some((spec, windowed.clone())),
            None,
            windowed,
        )
        .expect("no projection")
    }

    /// The schema before projection: the source's, windowed if windowed.
    pub fn full_schema(&self) -> SchemaRef {
        match &self.window {
            Some((_, s)) => s.clone(),
            None => self.source.schema.clone(),
        }
    }
}

impl fmt::Debug for StreamScanExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StreamScan: {}", self.source.name)
    }
}

impl DisplayAs for StreamScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "StreamScan: {} window={:?}",
            self.source.name,
            self.window.as_ref().map(|w| &w.0)
        )
    }
}

impl ExecutionPlan for StreamScanExec {
    fn name(&self) -> &str {
        "StreamScanExec"
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
        _partition: usize,
        _context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        exec_err!(
            "stream source {} runs only inside a stream job",
            self.source.name
        )
    }
}
