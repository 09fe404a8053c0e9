//! From a DataFusion physical plan to a stream job. The query is planned
//! by DataFusion with one target partition; the plan is then read bottom
//! up: the live source (a [`StreamScanExec`]), stateless filters and
//! projections, at most one grouped aggregation, and stateless steps after
//! it. Window columns are followed through projections so the aggregation
//! knows when each group's window closes.

use std::sync::Arc;

use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::ExecutionPlan;

use crate::agg::{AggSpec, Trigger};
use crate::error::{Result, StreamError};
use crate::exec::StreamScanExec;
use crate::ops::{Chain, Step};
use crate::session::SessionLayout;
use crate::topn::TopNSpec;
use crate::window::{WindowKind, WINDOW_END, WINDOW_START};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::expressions::{BinaryExpr, Literal};
use datafusion::physical_expr::window::WindowExpr;
use datafusion::physical_plan::windows::{BoundedWindowAggExec, WindowAggExec};

/// A stream job: source, stateless steps, and an optional keyed stage.
#[derive(Debug, Clone)]
pub struct JobPlan {
    pub scan: StreamScanExec,
    pub pre: Chain,
    pub keyed: Option<KeyedPlan>,
}

/// A grouped aggregation and the stateless steps after it.
#[derive(Debug, Clone)]
pub struct KeyedPlan {
    /// Session windows merge ahead of the aggregation.
    pub session: Option<SessionLayout>,
    /// Schema of the aggregation's input.
    pub input_schema: datafusion::arrow::datatypes::SchemaRef,
    pub op: KeyedOp,
    pub post: Chain,
}

/// The stateful operator of a keyed stage.
#[derive(Debug, Clone)]
pub enum KeyedOp {
    Aggregate(AggSpec),
    TopN(TopNSpec),
}

impl KeyedPlan {
    /// What rows are routed to keyed tasks by.
    pub fn keys(&self) -> Vec<Arc<dyn PhysicalExpr>> {
        match &self.op {
            KeyedOp::Aggregate(a) => a.group_exprs.clone(),
            KeyedOp::TopN(t) => t.partition_by.clone(),
        }
    }
}

/// Where a column's value came from, as far as windows matter.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Lineage {
    WindowStart(i64),
    WindowEnd,
    /// The ROW_NUMBER() of a top-N stage.
    RowNumber,
}

type Lineages = Vec<Option<Lineage>>;

/// Plan `plan` (the physical plan of a query) as a stream job.
pub fn job_plan(plan: &Arc<dyn ExecutionPlan>) -> Result<JobPlan> {
    let mut nodes = Vec::new();
    let mut node = plan.clone();
    loop {
        let children = node.children();
        match children.len() {
            0 => break,
            1 => {
                let child = children[0].clone();
                nodes.push(node);
                node = child;
            }
            _ => {
                return Err(StreamError::Unsupported(format!(
                    "{} (joins of streams are not supported yet)",
                    node.name()
                )))
            }
        }
    }
    let Some(scan) = node.downcast_ref::<StreamScanExec>() else {
        return Err(StreamError::Unsupported(format!(
            "the query reads {} and no stream source; stream mode needs a topic source (use --mode batch)",
            node.name()
        )));
    };
    let mut lineage = scan_lineage(scan);
    let mut job = JobPlan {
        scan: scan.clone(),
        pre: Chain::default(),
        keyed: None,
    };
    for node in nodes.iter().rev() {
        lineage = add_node(&mut job, node, lineage)?;
    }
    if let Some(KeyedPlan {
        op: KeyedOp::TopN(spec),
        ..
    }) = &job.keyed
    {
        if spec.limit == usize::MAX {
            return Err(StreamError::Unsupported(
                "ROW_NUMBER() over a stream needs a filter on it, e.g. WHERE rn <= 10 (top-N) or rn = 1".into(),
            ));
        }
    }
    Ok(job)
}

fn scan_lineage(scan: &StreamScanExec) -> Lineages {
    let full = scan.full_schema();
    let size = scan.window.as_ref().map(|(spec, _)| match spec.kind {
        WindowKind::Tumble { size_ms } | WindowKind::Hop { size_ms, .. } => size_ms,
        WindowKind::Session { gap_ms, .. } => gap_ms,
    });
    let of = |i: usize| {
        let name = full.field(i).name();
        match size {
            Some(size) if name == WINDOW_START && i + 2 == full.fields().len() => {
                Some(Lineage::WindowStart(size))
            }
            Some(_) if name == WINDOW_END && i + 1 == full.fields().len() => {
                Some(Lineage::WindowEnd)
            }
            _ => None,
        }
    };
    match &scan.projection {
        Some(p) => p.iter().map(|&i| of(i)).collect(),
        None => (0..full.fields().len()).map(of).collect(),
    }
}

fn add_node(
    job: &mut JobPlan,
    node: &Arc<dyn ExecutionPlan>,
    lineage: Lineages,
) -> Result<Lineages> {
    let any = node;
    if let Some(filter) = any.downcast_ref::<FilterExec>() {
        set_rank_limit(job, filter.predicate(), &lineage);
        let projection = filter.projection().as_ref().map(|p| p.to_vec());
        let out = match &projection {
            Some(p) => p.iter().map(|&i| lineage[i]).collect(),
            None => lineage,
        };
        push_step(
            job,
            Step::Filter {
                predicate: filter.predicate().clone(),
                projection,
            },
        );
        return Ok(out);
    }
    if let Some(projection) = any.downcast_ref::<ProjectionExec>() {
        let exprs: Vec<Arc<dyn PhysicalExpr>> =
            projection.expr().iter().map(|p| p.expr.clone()).collect();
        let out = exprs.iter().map(|e| column_lineage(e, &lineage)).collect();
        push_step(
            job,
            Step::Project {
                exprs,
                schema: projection.schema(),
            },
        );
        return Ok(out);
    }
    if let Some(agg) = any.downcast_ref::<AggregateExec>() {
        return add_aggregate(job, agg, &lineage);
    }
    if let Some(window) = any.downcast_ref::<BoundedWindowAggExec>() {
        return add_row_number(job, window.window_expr(), node, lineage);
    }
    if let Some(window) = any.downcast_ref::<WindowAggExec>() {
        return add_row_number(job, window.window_expr(), node, lineage);
    }
    match node.name() {
        "ProgressExec"
        | "CoalesceBatchesExec"
        | "RepartitionExec"
        | "CoalescePartitionsExec"
        | "CooperativeExec" => Ok(lineage),
        "SortExec" if node.fetch().is_none() => Ok(lineage), // order is meaningless on an endless stream
        other => Err(StreamError::Unsupported(format!(
            "{other} is not supported in stream mode yet"
        ))),
    }
}

/// `ROW_NUMBER() OVER (PARTITION BY ... ORDER BY ...)`: a top-N stage,
/// whose N comes from the filter on the row number that must follow.
fn add_row_number(
    job: &mut JobPlan,
    exprs: &[Arc<dyn WindowExpr>],
    node: &Arc<dyn ExecutionPlan>,
    mut lineage: Lineages,
) -> Result<Lineages> {
    let [expr] = exprs else {
        return Err(StreamError::Unsupported(
            "several window functions in one OVER clause".into(),
        ));
    };
    if !expr.name().to_lowercase().starts_with("row_number") || job.keyed.is_some() {
        return Err(StreamError::Unsupported(format!(
            "{} over a stream; only ROW_NUMBER() ... WHERE rn <= N (top-N, de-duplication), once per query",
            expr.name()
        )));
    }
    if expr.partition_by().is_empty() {
        return Err(StreamError::Unsupported(
            "ROW_NUMBER() without PARTITION BY over a stream".into(),
        ));
    }
    let input_schema = node.children()[0].schema();
    let spec = TopNSpec {
        partition_by: expr.partition_by().to_vec(),
        order_by: expr.order_by().to_vec(),
        limit: usize::MAX,
        input_schema: input_schema.clone(),
        output_schema: node.schema(),
        updating: true,
    };
    job.keyed = Some(KeyedPlan {
        session: None,
        input_schema,
        op: KeyedOp::TopN(spec),
        post: Chain::default(),
    });
    lineage.resize(node.schema().fields().len() - 1, None);
    lineage.push(Some(Lineage::RowNumber));
    Ok(lineage)
}

/// A filter `rn <= N` (or `< N`, `= 1`) right after ROW_NUMBER sets N.
fn set_rank_limit(job: &mut JobPlan, predicate: &Arc<dyn PhysicalExpr>, lineage: &Lineages) {
    let Some(KeyedPlan {
        op: KeyedOp::TopN(spec),
        ..
    }) = job.keyed.as_mut()
    else {
        return;
    };
    if spec.limit != usize::MAX {
        return;
    }
    let Some(binary) = predicate.downcast_ref::<BinaryExpr>() else {
        return;
    };
    let is_rank = column_lineage(binary.left(), lineage) == Some(Lineage::RowNumber);
    let value = binary
        .right()
        .downcast_ref::<Literal>()
        .and_then(|l| match l.value() {
            ScalarValue::UInt64(Some(v)) => Some(*v as usize),
            ScalarValue::Int64(Some(v)) if *v >= 0 => Some(*v as usize),
            _ => None,
        });
    let (true, Some(v)) = (is_rank, value) else {
        return;
    };
    spec.limit = match binary.op() {
        Operator::LtEq => v,
        Operator::Lt => v.saturating_sub(1),
        Operator::Eq if v == 1 => 1,
        _ => return,
    };
}

fn push_step(job: &mut JobPlan, step: Step) {
    match &mut job.keyed {
        Some(k) => k.post.0.push(step),
        None => job.pre.0.push(step),
    }
}

fn column_lineage(expr: &Arc<dyn PhysicalExpr>, lineage: &Lineages) -> Option<Lineage> {
    expr.downcast_ref::<Column>()
        .and_then(|c| lineage[c.index()])
}

fn add_aggregate(job: &mut JobPlan, agg: &AggregateExec, lineage: &Lineages) -> Result<Lineages> {
    if job.keyed.is_some() {
        return Err(StreamError::Unsupported(
            "more than one GROUP BY in a query (aggregating an aggregate)".into(),
        ));
    }
    if !matches!(
        agg.mode(),
        AggregateMode::Single | AggregateMode::SinglePartitioned
    ) {
        return Err(StreamError::Unsupported(format!(
            "aggregate in {:?} mode",
            agg.mode()
        )));
    }
    let group = agg.group_expr();
    if group.has_grouping_set() {
        return Err(StreamError::Unsupported(
            "GROUPING SETS, CUBE and ROLLUP".into(),
        ));
    }
    let group_exprs: Vec<Arc<dyn PhysicalExpr>> =
        group.expr().iter().map(|(e, _)| e.clone()).collect();
    let group_lineage: Lineages = group_exprs
        .iter()
        .map(|e| column_lineage(e, lineage))
        .collect();
    let trigger = trigger_of(&group_lineage);
    let session = session_layout(job, group, &group_lineage)?;
    let spec = AggSpec {
        group_schema: group.group_schema(&agg.input_schema())?,
        group_exprs,
        aggs: agg.aggr_expr().to_vec(),
        filters: agg.filter_expr().to_vec(),
        output_schema: agg.schema(),
        trigger,
    };
    job.keyed = Some(KeyedPlan {
        session,
        input_schema: agg.input_schema(),
        op: KeyedOp::Aggregate(spec),
        post: Chain::default(),
    });
    let mut out = group_lineage;
    out.resize(agg.schema().fields().len(), None);
    Ok(out)
}

/// For a SESSION window: where its key and window columns are in the
/// windowed source rows. Sessions merge over the source's rows, before
/// any filter (the table function applies to the whole table), so in
/// stream mode rows go to keyed tasks by the PARTITION BY columns right
/// after the source, and the GROUP BY must hold them and window_end.
fn session_layout(
    job: &JobPlan,
    group: &datafusion::physical_plan::aggregates::PhysicalGroupBy,
    group_lineage: &Lineages,
) -> Result<Option<SessionLayout>> {
    let Some((spec, windowed)) = &job.scan.window else {
        return Ok(None);
    };
    let WindowKind::Session {
        gap_ms,
        partition_by,
    } = &spec.kind
    else {
        return Ok(None);
    };
    if !group_lineage.contains(&Some(Lineage::WindowEnd)) {
        return Err(StreamError::Unsupported(
            "a SESSION window must be grouped by window_end".into(),
        ));
    }
    let grouped: Vec<String> = group.expr().iter().map(|(_, n)| n.to_lowercase()).collect();
    if let Some(k) = partition_by.iter().find(|k| !grouped.contains(k)) {
        return Err(StreamError::Unsupported(format!(
            "a SESSION window PARTITION BY {k} must also be grouped by {k}"
        )));
    }
    let n = windowed.fields().len();
    let keys = partition_by
        .iter()
        .map(|k| windowed.index_of(k))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(Some(SessionLayout {
        keys,
        start: n - 2,
        end: n - 1,
        gap_ms: *gap_ms,
    }))
}

fn trigger_of(group: &Lineages) -> Trigger {
    if let Some(i) = group.iter().position(|l| *l == Some(Lineage::WindowEnd)) {
        return Trigger::WindowEnd(i);
    }
    for (i, l) in group.iter().enumerate() {
        if let Some(Lineage::WindowStart(size)) = l {
            return Trigger::WindowStart(i, *size);
        }
    }
    Trigger::EndOfInput
}
