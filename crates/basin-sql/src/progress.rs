//! Progress of the scans a statement runs: rows and bytes read so far, and
//! the rows expected when the sources know (Parquet footers do).
//!
//! A physical optimizer rule, last in line, wraps every leaf of a plan (the
//! scans) in `ProgressExec`, which counts what passes through. The numbers
//! are shared with whoever draws them (`basin sql` shows a bar on a
//! terminal); the engine itself prints nothing.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::statistics::{StatisticsArgs, StatisticsContext};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, SendableRecordBatchStream,
};
use futures::StreamExt;

type DfResult<T> = datafusion::error::Result<T>;

/// Counters of the scans planned since the last `reset`.
#[derive(Debug, Default)]
pub struct ScanProgress {
    rows: AtomicU64,
    bytes: AtomicU64,
    expected_rows: AtomicU64,
    unknown_sources: AtomicU64,
}

/// What has been read so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProgressSnapshot {
    pub rows: u64,
    /// In-memory size of the batches read.
    pub bytes: u64,
    /// Rows the scans will read, when every source knows its row count.
    pub expected_rows: Option<u64>,
}

impl ScanProgress {
    pub fn reset(&self) {
        for counter in [
            &self.rows,
            &self.bytes,
            &self.expected_rows,
            &self.unknown_sources,
        ] {
            counter.store(0, Ordering::Relaxed);
        }
    }

    pub fn snapshot(&self) -> ProgressSnapshot {
        let expected = self.expected_rows.load(Ordering::Relaxed);
        let known = self.unknown_sources.load(Ordering::Relaxed) == 0 && expected > 0;
        ProgressSnapshot {
            rows: self.rows.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            expected_rows: known.then_some(expected),
        }
    }

    fn expect(&self, rows: Precision<usize>) {
        match rows {
            Precision::Exact(n) | Precision::Inexact(n) => {
                self.expected_rows.fetch_add(n as u64, Ordering::Relaxed);
            }
            Precision::Absent => {
                self.unknown_sources.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Wraps every scan of a plan in a `ProgressExec`.
#[derive(Debug)]
pub struct TrackScans {
    pub progress: Arc<ScanProgress>,
}

impl PhysicalOptimizerRule for TrackScans {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            if !node.children().is_empty() {
                return Ok(Transformed::no(node));
            }
            let rows = StatisticsContext::new()
                .compute(node.as_ref(), &StatisticsArgs::new())
                .map_or(Precision::Absent, |s| s.num_rows);
            self.progress.expect(rows);
            let wrapped: Arc<dyn ExecutionPlan> =
                Arc::new(ProgressExec::new(node, self.progress.clone()));
            Ok(Transformed::yes(wrapped))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "track_scans"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Passes a scan's batches through, counting them.
#[derive(Debug)]
pub struct ProgressExec {
    input: Arc<dyn ExecutionPlan>,
    progress: Arc<ScanProgress>,
}

impl ProgressExec {
    fn new(input: Arc<dyn ExecutionPlan>, progress: Arc<ScanProgress>) -> ProgressExec {
        ProgressExec { input, progress }
    }
}

impl DisplayAs for ProgressExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "ProgressExec")
    }
}

impl ExecutionPlan for ProgressExec {
    fn name(&self) -> &str {
        "ProgressExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
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
        let input = children.into_iter().next().unwrap_or(self.input.clone());
        Ok(Arc::new(ProgressExec::new(input, self.progress.clone())))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let stream = self.input.execute(partition, context)?;
        let schema = stream.schema();
        let progress = self.progress.clone();
        let counted = stream.map(move |batch| {
            if let Ok(b) = &batch {
                progress
                    .rows
                    .fetch_add(b.num_rows() as u64, Ordering::Relaxed);
                progress
                    .bytes
                    .fetch_add(b.get_array_memory_size() as u64, Ordering::Relaxed);
            }
            batch
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, counted)))
    }
}
