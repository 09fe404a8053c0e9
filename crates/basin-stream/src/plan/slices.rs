//! HOP windows aggregated per slice: when a windowed `GROUP BY` reads a
//! source stage whose HOP window columns reach it untouched, the source
//! assigns each row to one slice (a tumbling window of the gcd of slide and
//! size) instead of copying it into `size / slide` windows, and the
//! aggregate merges a window's slices when it fires (see `agg::hop`). Rows
//! are then routed by the group columns other than the window's, so every
//! slice of a group meets in one task.

use std::sync::Arc;

use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::utils::collect_columns;
use datafusion::physical_expr::PhysicalExpr;

use super::{column_lineage, scan_lineage, Builder, Lineage, Lineages, StageKind};
use crate::agg::Trigger;
use crate::ops::{Chain, Step};
use crate::window::WindowKind;

impl Builder {
    /// Switch source `stage` to slices when its HOP window qualifies, and
    /// give the aggregate's trigger; `group` is the lineage of the group
    /// columns.
    pub(super) fn hop_slices(&mut self, stage: usize, group: &Lineages) -> Option<Trigger> {
        let start = group
            .iter()
            .position(|l| matches!(l, Some(Lineage::WindowStart(_))));
        let end = group.iter().position(|l| *l == Some(Lineage::WindowEnd));
        if start.is_none() && end.is_none() {
            return None;
        }
        let plan = &mut self.stages[stage];
        let StageKind::Source(scan) = &mut plan.kind else {
            return None;
        };
        let (size, slide) = match scan.window.as_ref()?.0.kind {
            WindowKind::Hop { slide_ms, size_ms } => (size_ms, slide_ms),
            _ => return None,
        };
        if !passes_through(scan_lineage(scan), &plan.post) {
            return None;
        }
        let slice = gcd(size, slide);
        scan.declared = scan.window.as_ref().map(|(spec, _)| spec.clone());
        scan.window.as_mut()?.0.kind = WindowKind::Tumble { size_ms: slice };
        Some(Trigger::Hop {
            start,
            end,
            size,
            slide,
            slice,
        })
    }
}

fn is_window(l: Option<&Option<Lineage>>) -> bool {
    matches!(
        l,
        Some(Some(Lineage::WindowStart(_))) | Some(Some(Lineage::WindowEnd))
    )
}

/// Whether `chain` only moves the window columns (no filter or expression
/// reads them), starting from `lineage`.
fn passes_through(mut lineage: Lineages, chain: &Chain) -> bool {
    let reads_window = |e: &Arc<dyn PhysicalExpr>, l: &Lineages| {
        collect_columns(e)
            .iter()
            .any(|c| is_window(l.get(c.index())))
    };
    for step in &chain.0 {
        match step {
            Step::Filter {
                predicate,
                projection,
            } => {
                if reads_window(predicate, &lineage) {
                    return false;
                }
                if let Some(p) = projection {
                    lineage = p.iter().map(|&i| lineage[i]).collect();
                }
            }
            Step::Project { exprs, .. } => {
                let bare = |e: &Arc<dyn PhysicalExpr>| e.downcast_ref::<Column>().is_some();
                if exprs.iter().any(|e| !bare(e) && reads_window(e, &lineage)) {
                    return false;
                }
                lineage = exprs.iter().map(|e| column_lineage(e, &lineage)).collect();
            }
            Step::Select(cols) => lineage = cols.iter().map(|&i| lineage[i]).collect(),
        }
    }
    true
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}
