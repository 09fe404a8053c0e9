//! Sharing identical stages. A query that names the same windowed
//! aggregate twice (Nexmark q5 counts bids per auction and HOP window in
//! both sides of its join) plans two identical sources and two identical
//! aggregates; Flink's planner reuses such sub-plans, and so does this
//! pass: a stage that reads the same inputs and does the same thing as an
//! earlier one is dropped, its consumers read the earlier one, and each
//! consumer runs the steps that differed (the stages' projections) on its
//! own edge.
//!
//! Only sources (same table, windows and projection) and aggregates
//! without session windows are compared; their plans print completely
//! (`Debug`), so equal text means the same work.

use std::collections::HashMap;

use super::{Edge, Graph, KeyedOp, StageKind, StagePlan};
use crate::ops::Chain;

/// Drop the stages of `graph` that repeat an earlier one.
pub fn share_stages(graph: &mut Graph) {
    let canon = canonical(graph);
    let shared: Vec<bool> = (0..graph.stages.len())
        .map(|s| canon.iter().enumerate().any(|(i, c)| *c == s && i != s))
        .collect();
    if !shared.iter().any(|s| *s) {
        return;
    }
    let old = graph.stages.clone();
    for stage in &mut graph.stages {
        for edge in &mut stage.inputs {
            rewire(edge, &old, &canon, &shared);
        }
    }
    for (s, stage) in graph.stages.iter_mut().enumerate() {
        if shared[s] {
            stage.post = Chain::default();
        }
    }
    // Renumber what is kept.
    let mut index = vec![usize::MAX; old.len()];
    let mut kept = Vec::new();
    for (s, stage) in std::mem::take(&mut graph.stages).into_iter().enumerate() {
        if canon[s] == s {
            index[s] = kept.len();
            kept.push(stage);
        }
    }
    for stage in &mut kept {
        for edge in &mut stage.inputs {
            edge.from = index[edge.from];
        }
    }
    graph.stages = kept;
}

/// An edge from stage `f` now reads `canon[f]`, running `f`'s own steps
/// itself when `canon[f]` is shared by several stages' consumers.
fn rewire(edge: &mut Edge, old: &[StagePlan], canon: &[usize], shared: &[bool]) {
    let f = edge.from;
    if shared[canon[f]] {
        let mut steps = old[f].post.0.clone();
        steps.append(&mut edge.chain.0);
        edge.chain = Chain(steps);
        edge.schema = Some(edge.schema.clone().unwrap_or(old[f].schema.clone()));
    }
    edge.from = canon[f];
}

/// For each stage, the first stage that does the same work (itself if none).
fn canonical(graph: &Graph) -> Vec<usize> {
    let mut canon: Vec<usize> = Vec::with_capacity(graph.stages.len());
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (s, stage) in graph.stages.iter().enumerate() {
        let c = match signature(stage, &graph.stages, &canon) {
            Some(sig) => *seen.entry(sig).or_insert(s),
            None => s,
        };
        canon.push(c);
    }
    canon
}

/// What a stage does to which rows, as text (an input is the canonical
/// stage before it with that stage's own steps); `None` for stages never
/// shared.
fn signature(stage: &StagePlan, stages: &[StagePlan], canon: &[usize]) -> Option<String> {
    let what = match &stage.kind {
        StageKind::Source(scan) => format!(
            "source {} {:?} {:?} {:?}",
            scan.source.name, scan.window, scan.projection, scan.declared
        ),
        StageKind::Keyed(k) if k.session.is_none() => match &k.op {
            KeyedOp::Aggregate(spec) => format!("aggregate {spec:?}"),
            _ => return None,
        },
        _ => return None,
    };
    let inputs: Vec<String> = stage
        .inputs
        .iter()
        .map(|e| {
            let from = &stages[e.from];
            format!(
                "{} {:?} {:?} {:?}",
                canon[e.from], from.post, e.keys, e.chain
            )
        })
        .collect();
    Some(format!("{what} <- {inputs:?}"))
}
