//! From a DataFusion physical plan to a stream job graph. The query is
//! planned by DataFusion with one target partition; the plan tree is then
//! cut into stages: a source stage per live source (a [`StreamScanExec`]),
//! and a keyed stage per stateful operator (grouped aggregation, top-N,
//! join), fed through an exchange that routes rows by key. Stateless
//! filters and projections fuse into the stage below them. Window columns
//! are followed through projections so aggregations and joins know when a
//! window closes.

mod interval;
pub mod share;
mod slices;

use std::sync::Arc;

use datafusion::common::ScalarValue;
use datafusion::logical_expr::{JoinType, Operator};
use datafusion::physical_expr::expressions::{BinaryExpr, Column, Literal};
use datafusion::physical_expr::window::WindowExpr;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode, PhysicalGroupBy};
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::joins::HashJoinExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::windows::{BoundedWindowAggExec, WindowAggExec};
use datafusion::physical_plan::ExecutionPlan;

use crate::agg::{AggSpec, Trigger};
use crate::error::{Result, StreamError};
use crate::exec::StreamScanExec;
use crate::join::{JoinSideSpec, JoinSpec};
use crate::ops::{Chain, Step};
use crate::session::SessionLayout;
use crate::topn::TopNSpec;
use crate::window::{WindowKind, WINDOW_END, WINDOW_START};

/// A stream job: stages in dependency order; the last one feeds the sink.
#[derive(Debug, Clone)]
pub struct Graph {
    pub stages: Vec<StagePlan>,
}

/// One stage: its operator, its inputs, and the stateless steps after it.
#[derive(Debug, Clone)]
pub struct StagePlan {
    pub kind: StageKind,
    /// Upstream stages and the keys rows are routed by (keyed stages).
    pub inputs: Vec<Edge>,
    pub post: Chain,
    /// The schema of the stage's output rows.
    pub schema: datafusion::arrow::datatypes::SchemaRef,
}

// A job has a handful of stages: their size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum StageKind {
    /// Reads a topic; windows are assigned right after decoding.
    Source(StreamScanExec),
    /// A bounded input (lake table, files) that DataFusion reads once.
    Bounded(Arc<dyn ExecutionPlan>),
    Keyed(KeyedPlan),
    /// Rows from a repartition topic, written by the stage before this one
    /// in other tasks (group mode, [`crate::group`]).
    Remote(Arc<crate::remote::RemoteInput>),
}

/// Rows of stage `from`, after `chain`, routed to a keyed stage's tasks by
/// `keys` (evaluated on those rows).
#[derive(Debug, Clone)]
pub struct Edge {
    pub from: usize,
    pub keys: Vec<Arc<dyn PhysicalExpr>>,
    /// Steps run on `from`'s rows for this consumer alone: the steps of a
    /// stage shared by several consumers ([`share`]).
    pub chain: Chain,
    /// The schema of the rows after `chain`, when it differs from `from`'s
    /// output schema.
    pub schema: Option<datafusion::arrow::datatypes::SchemaRef>,
}

impl Edge {
    pub fn new(from: usize, keys: Vec<Arc<dyn PhysicalExpr>>) -> Edge {
        Edge {
            from,
            keys,
            chain: Chain::default(),
            schema: None,
        }
    }
}

/// The stateful part of a keyed stage.
#[derive(Debug, Clone)]
pub struct KeyedPlan {
    /// Session windows merge first, then `pre` runs (the projection and
    /// filters that the query applies to the windowed source).
    pub session: Option<(
        SessionLayout,
        datafusion::arrow::datatypes::SchemaRef,
        Chain,
    )>,
    pub op: KeyedOp,
}

#[derive(Debug, Clone)]
pub enum KeyedOp {
    Aggregate(AggSpec),
    TopN(TopNSpec),
    Join(JoinSpec),
}

impl Graph {
    /// The stage whose output goes to the sink.
    pub fn last(&self) -> &StagePlan {
        self.stages.last().expect("a graph has a stage")
    }

    /// The stages that consume stage `i`'s output, and through which edge.
    pub fn consumers(&self, i: usize) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        for (s, stage) in self.stages.iter().enumerate() {
            for (input, e) in stage.inputs.iter().enumerate() {
                if e.from == i {
                    out.push((s, input));
                }
            }
        }
        out
    }
}

/// Where a column's value came from, as far as windows matter.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Lineage {
    WindowStart(i64),
    WindowEnd,
    /// The ROW_NUMBER() of a top-N stage.
    RowNumber,
    /// A source's WATERMARK column, as read.
    EventTime,
}

type Lineages = Vec<Option<Lineage>>;

/// Builds a graph, bottom up.
struct Builder {
    stages: Vec<StagePlan>,
}

/// Plan `plan` (the physical plan of a query) as a stream job graph.
pub fn job_graph(plan: &Arc<dyn ExecutionPlan>) -> Result<Graph> {
    if !has_stream(plan) {
        return Err(StreamError::Unsupported(
            "the query reads no topic; stream mode needs a topic source (use --mode batch)".into(),
        ));
    }
    let mut builder = Builder { stages: Vec::new() };
    let (_, _) = builder.build(plan)?;
    for stage in &builder.stages {
        if let StageKind::Keyed(KeyedPlan {
            op: KeyedOp::TopN(spec),
            ..
        }) = &stage.kind
        {
            if spec.limit == usize::MAX {
                return Err(StreamError::Unsupported(
                    "ROW_NUMBER() over a stream needs a filter on it, e.g. WHERE rn <= 10 (top-N) or rn = 1".into(),
                ));
            }
        }
    }
    Ok(Graph {
        stages: builder.stages,
    })
}

impl Builder {
    /// The stage producing `node`'s rows, and their lineage.
    fn build(&mut self, node: &Arc<dyn ExecutionPlan>) -> Result<(usize, Lineages)> {
        if let Some(scan) = node.downcast_ref::<StreamScanExec>() {
            return Ok(self.source(scan));
        }
        if let Some(join) = node.downcast_ref::<HashJoinExec>() {
            return self.join(join, node);
        }
        if !has_stream(node) {
            return Ok(self.bounded(node));
        }
        let children = node.children();
        let [child] = children.as_slice() else {
            return Err(StreamError::Unsupported(if children.is_empty() {
                format!(
                    "the query reads {} and no stream source; stream mode needs topic sources (use --mode batch)",
                    node.name()
                )
            } else {
                format!("{} is not supported in stream mode yet", node.name())
            }));
        };
        let (stage, lineage) = self.build(child)?;
        let (stage, lineage) = self.add(stage, node, lineage)?;
        self.stages[stage].schema = node.schema();
        Ok((stage, lineage))
    }

    /// A part of the plan that reads no stream (a lake table, files): run
    /// once by DataFusion, its rows feed the stream job, then its
    /// watermark jumps to the end of time.
    fn bounded(&mut self, node: &Arc<dyn ExecutionPlan>) -> (usize, Lineages) {
        self.stages.push(StagePlan {
            kind: StageKind::Bounded(node.clone()),
            inputs: Vec::new(),
            post: Chain::default(),
            schema: node.schema(),
        });
        (
            self.stages.len() - 1,
            vec![None; node.schema().fields().len()],
        )
    }

    fn source(&mut self, scan: &StreamScanExec) -> (usize, Lineages) {
        self.stages.push(StagePlan {
            kind: StageKind::Source(scan.clone()),
            inputs: Vec::new(),
            post: Chain::default(),
            schema: scan.schema(),
        });
        (self.stages.len() - 1, scan_lineage(scan))
    }

    /// Add a one-input node on top of `stage`.
    fn add(
        &mut self,
        stage: usize,
        node: &Arc<dyn ExecutionPlan>,
        lineage: Lineages,
    ) -> Result<(usize, Lineages)> {
        if let Some(filter) = node.downcast_ref::<FilterExec>() {
            self.set_rank_limit(stage, filter.predicate(), &lineage);
            let projection = filter.projection().as_ref().map(|p| p.to_vec());
            let out = match &projection {
                Some(p) => p.iter().map(|&i| lineage[i]).collect(),
                None => lineage,
            };
            let predicate = filter.predicate().clone();
            self.stages[stage].post.0.push(Step::Filter {
                predicate,
                projection,
            });
            return Ok((stage, out));
        }
        if let Some(projection) = node.downcast_ref::<ProjectionExec>() {
            let exprs: Vec<Arc<dyn PhysicalExpr>> =
                projection.expr().iter().map(|p| p.expr.clone()).collect();
            let out = exprs.iter().map(|e| column_lineage(e, &lineage)).collect();
            let schema = projection.schema();
            self.stages[stage]
                .post
                .0
                .push(Step::Project { exprs, schema });
            return Ok((stage, out));
        }
        if let Some(agg) = node.downcast_ref::<AggregateExec>() {
            return self.aggregate(stage, agg, &lineage);
        }
        if let Some(window) = node.downcast_ref::<BoundedWindowAggExec>() {
            return self.row_number(stage, window.window_expr(), node, lineage);
        }
        if let Some(window) = node.downcast_ref::<WindowAggExec>() {
            return self.row_number(stage, window.window_expr(), node, lineage);
        }
        match node.name() {
            "ProgressExec"
            | "CoalesceBatchesExec"
            | "RepartitionExec"
            | "CoalescePartitionsExec"
            | "CooperativeExec" => Ok((stage, lineage)),
            // Order is meaningless on an endless stream.
            "SortExec" | "SortPreservingMergeExec" if node.fetch().is_none() => {
                Ok((stage, lineage))
            }
            other => Err(StreamError::Unsupported(format!(
                "{other} is not supported in stream mode yet"
            ))),
        }
    }

    fn keyed(&mut self, inputs: Vec<Edge>, keyed: KeyedPlan) -> usize {
        let schema = match &keyed.op {
            KeyedOp::Aggregate(a) => a.output_schema.clone(),
            KeyedOp::TopN(t) => t.output_schema.clone(),
            KeyedOp::Join(j) => j.output_schema.clone(),
        };
        self.stages.push(StagePlan {
            kind: StageKind::Keyed(keyed),
            inputs,
            post: Chain::default(),
            schema,
        });
        self.stages.len() - 1
    }

    fn aggregate(
        &mut self,
        stage: usize,
        agg: &AggregateExec,
        lineage: &Lineages,
    ) -> Result<(usize, Lineages)> {
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
        let mut spec = AggSpec {
            group_schema: group.group_schema(&agg.input_schema())?,
            group_exprs: group_exprs.clone(),
            aggs: agg.aggr_expr().to_vec(),
            filters: agg.filter_expr().to_vec(),
            output_schema: agg.schema(),
            trigger: trigger_of(&group_lineage),
            ttl_ms: None,
        };
        let (edge, session) = match self.session_input(stage, group, &group_lineage)? {
            Some((keys, session)) => (Edge::new(stage, keys), Some(session)),
            None => {
                let keys = match self.hop_slices(stage, &group_lineage) {
                    Some(hop) => {
                        spec.trigger = hop;
                        group_exprs
                            .iter()
                            .zip(&group_lineage)
                            .filter(|(_, l)| {
                                !matches!(l, Some(Lineage::WindowStart(_) | Lineage::WindowEnd))
                            })
                            .map(|(e, _)| e.clone())
                            .collect()
                    }
                    None => group_exprs,
                };
                (Edge::new(stage, keys), None)
            }
        };
        let keyed = self.keyed(
            vec![edge],
            KeyedPlan {
                session,
                op: KeyedOp::Aggregate(spec),
            },
        );
        // Only window bounds keep their meaning through an aggregation.
        let mut out: Lineages = group_lineage
            .into_iter()
            .map(|l| l.filter(|l| *l != Lineage::EventTime))
            .collect();
        out.resize(agg.schema().fields().len(), None);
        Ok((keyed, out))
    }

    /// For a SESSION window over a source stage: sessions merge over the
    /// source's rows, before any filter (the table function applies to the
    /// whole table), so the source's projection and steps move behind the
    /// session merge, and rows are routed by the PARTITION BY columns. The
    /// GROUP BY must hold those columns and window_end.
    #[allow(clippy::type_complexity)]
    fn session_input(
        &mut self,
        stage: usize,
        group: &PhysicalGroupBy,
        group_lineage: &Lineages,
    ) -> Result<
        Option<(
            Vec<Arc<dyn PhysicalExpr>>,
            (
                SessionLayout,
                datafusion::arrow::datatypes::SchemaRef,
                Chain,
            ),
        )>,
    > {
        let StageKind::Source(scan) = &mut self.stages[stage].kind else {
            return Ok(None);
        };
        let Some((spec, windowed)) = scan.window.clone() else {
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
        let grouped: Vec<String> = group.expr().iter().map(|(_, n)| n.clone()).collect();
        if let Some(k) = partition_by.iter().find(|k| !grouped.contains(k)) {
            return Err(StreamError::Unsupported(format!(
                "a SESSION window PARTITION BY {k} must also be grouped by {k}"
            )));
        }
        let n = windowed.fields().len();
        let key_idx = partition_by
            .iter()
            .map(|k| windowed.index_of(k))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let mut steps = Vec::new();
        if let Some(p) = scan.projection.take() {
            steps.push(Step::Select(p));
        }
        steps.append(&mut self.stages[stage].post.0);
        // The source now sends its windowed rows as they are.
        self.stages[stage].schema = windowed.clone();
        let keys = key_idx
            .iter()
            .map(|&i| Arc::new(Column::new(windowed.field(i).name(), i)) as Arc<dyn PhysicalExpr>)
            .collect();
        let layout = SessionLayout {
            keys: key_idx,
            start: n - 2,
            end: n - 1,
            gap_ms: *gap_ms,
        };
        Ok(Some((keys, (layout, windowed, Chain(steps)))))
    }

    /// `ROW_NUMBER() OVER (PARTITION BY ... ORDER BY ...)`: a top-N stage,
    /// whose N comes from the filter on the row number that must follow.
    fn row_number(
        &mut self,
        stage: usize,
        exprs: &[Arc<dyn WindowExpr>],
        node: &Arc<dyn ExecutionPlan>,
        mut lineage: Lineages,
    ) -> Result<(usize, Lineages)> {
        let [expr] = exprs else {
            return Err(StreamError::Unsupported(
                "several window functions in one OVER clause".into(),
            ));
        };
        if !expr.name().to_lowercase().starts_with("row_number") {
            return Err(StreamError::Unsupported(format!(
                "{} over a stream; only ROW_NUMBER() ... WHERE rn <= N (top-N, de-duplication)",
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
            input_schema,
            output_schema: node.schema(),
            updating: true,
            ttl_ms: None,
        };
        let edge = Edge::new(stage, spec.partition_by.clone());
        let keyed = self.keyed(
            vec![edge],
            KeyedPlan {
                session: None,
                op: KeyedOp::TopN(spec),
            },
        );
        lineage.resize(node.schema().fields().len() - 1, None);
        lineage.push(Some(Lineage::RowNumber));
        Ok((keyed, lineage))
    }

    /// A filter `rn <= N` (or `< N`, `= 1`) after ROW_NUMBER sets N.
    fn set_rank_limit(
        &mut self,
        stage: usize,
        predicate: &Arc<dyn PhysicalExpr>,
        lineage: &Lineages,
    ) {
        let StageKind::Keyed(KeyedPlan {
            op: KeyedOp::TopN(spec),
            ..
        }) = &mut self.stages[stage].kind
        else {
            return;
        };
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
        let (true, Some(v), usize::MAX) = (is_rank, value, spec.limit) else {
            return;
        };
        spec.limit = match binary.op() {
            Operator::LtEq => v,
            Operator::Lt => v.saturating_sub(1),
            Operator::Eq if v == 1 => 1,
            _ => return,
        };
    }

    /// An inner equi-join of two streams.
    fn join(
        &mut self,
        join: &HashJoinExec,
        node: &Arc<dyn ExecutionPlan>,
    ) -> Result<(usize, Lineages)> {
        let semi = match join.join_type() {
            JoinType::Inner => None,
            JoinType::LeftSemi => Some(0),
            JoinType::RightSemi => Some(1),
            other => {
                return Err(StreamError::Unsupported(format!(
                    "{other:?} joins of streams (inner and semi joins only, yet)"
                )))
            }
        };
        let (left, left_lineage) = self.build(join.left())?;
        let (right, right_lineage) = self.build(join.right())?;
        let (left_keys, right_keys): (Vec<_>, Vec<_>) = join.on().iter().cloned().unzip();
        let window_end = |keys: &[Arc<dyn PhysicalExpr>], lineage: &Lineages| {
            keys.iter()
                .position(|k| column_lineage(k, lineage) == Some(Lineage::WindowEnd))
        };
        let (lw, rw) = (
            window_end(&left_keys, &left_lineage),
            window_end(&right_keys, &right_lineage),
        );
        // Windows close for both sides only when both join on a window end.
        let windowed = lw.is_some() && rw.is_some();
        let (le, re) = if windowed {
            (None, None)
        } else {
            interval::expiries(join.filter(), &left_lineage, &right_lineage)
        };
        let bounded = |s: usize| matches!(self.stages[s].kind, StageKind::Bounded(_));
        let spec = JoinSpec {
            left: JoinSideSpec {
                schema: join.left().schema(),
                keys: left_keys.clone(),
                window_end: lw.filter(|_| windowed),
                expiry: le,
                bounded: bounded(left),
            },
            right: JoinSideSpec {
                schema: join.right().schema(),
                keys: right_keys.clone(),
                window_end: rw.filter(|_| windowed),
                expiry: re,
                bounded: bounded(right),
            },
            filter: join.filter().cloned(),
            projection: join.projection.as_ref().map(|p| p.to_vec()),
            semi,
            output_schema: node.schema(),
            ttl_ms: None,
        };
        let edges = vec![Edge::new(left, left_keys), Edge::new(right, right_keys)];
        let keyed = self.keyed(
            edges,
            KeyedPlan {
                session: None,
                op: KeyedOp::Join(spec),
            },
        );
        self.stages[keyed].schema = node.schema();
        let mut lineage: Lineages = match semi {
            Some(0) => left_lineage,
            Some(_) => right_lineage,
            None => left_lineage.into_iter().chain(right_lineage).collect(),
        };
        if let Some(p) = &join.projection {
            lineage = p.iter().map(|&i| lineage[i]).collect();
        }
        // Joined rows come out when their match arrives, after the
        // watermark may have passed their times.
        let lineage = lineage
            .into_iter()
            .map(|l| l.filter(|l| *l != Lineage::EventTime))
            .collect();
        Ok((keyed, lineage))
    }
}

/// Whether a live source is under `node`.
fn has_stream(node: &Arc<dyn ExecutionPlan>) -> bool {
    node.downcast_ref::<StreamScanExec>().is_some() || node.children().into_iter().any(has_stream)
}

fn scan_lineage(scan: &StreamScanExec) -> Lineages {
    let full = scan.full_schema();
    let size = scan.window.as_ref().map(|(spec, _)| match spec.kind {
        WindowKind::Tumble { size_ms } | WindowKind::Hop { size_ms, .. } => size_ms,
        WindowKind::Session { gap_ms, .. } => gap_ms,
    });
    let event_time = scan.source.watermark.as_ref().map(|w| w.column.as_str());
    let of = |i: usize| {
        let name = full.field(i).name();
        if event_time == Some(name.as_str()) {
            return Some(Lineage::EventTime);
        }
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

fn column_lineage(expr: &Arc<dyn PhysicalExpr>, lineage: &Lineages) -> Option<Lineage> {
    expr.downcast_ref::<Column>()
        .and_then(|c| lineage.get(c.index()).copied().flatten())
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
