//! Interval joins: a join whose condition bounds one side's event time
//! against the other's, e.g. `b.ts BETWEEN a.ts AND a.ts + INTERVAL '1'
//! HOUR`. From the condition's comparisons of the two sides' event-time
//! columns (the sources' WATERMARK columns, moved through projections
//! only), the planner derives `lo <= right.t - left.t <= hi`; a left row can
//! then match nothing once the watermark passes `t + hi`, a right row once
//! it passes `t - lo`, and the join drops them (see `join.rs`).

use datafusion::common::{JoinSide, ScalarValue};
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::expressions::{BinaryExpr, CastExpr, Column, Literal};
use datafusion::physical_expr::split_conjunction;
use datafusion::physical_plan::joins::utils::JoinFilter;

use super::{Lineage, Lineages};
use crate::join::Expiry;

/// A side's event-time column (by index in the join filter's schema's
/// source side), plus an offset in ms.
type Term = (JoinSide, usize, i64);

/// When each side's rows stop matching, if the condition says.
pub(super) fn expiries(
    filter: Option<&JoinFilter>,
    left: &Lineages,
    right: &Lineages,
) -> (Option<Expiry>, Option<Expiry>) {
    let Some(filter) = filter else {
        return (None, None);
    };
    let (mut lo, mut hi) = (None::<i64>, None::<i64>);
    let (mut left_col, mut right_col) = (None, None);
    for conjunct in split_conjunction(filter.expression()) {
        let Some(binary) = conjunct.downcast_ref::<BinaryExpr>() else {
            continue;
        };
        let Some(a) = term(binary.left(), filter, left, right) else {
            continue;
        };
        let Some(b) = term(binary.right(), filter, left, right) else {
            continue;
        };
        // a.t + a.off OP b.t + b.off, as right.t - left.t OP c.
        let (op, c) = match (a.0, b.0) {
            (JoinSide::Right, JoinSide::Left) => (*binary.op(), b.2 - a.2),
            (JoinSide::Left, JoinSide::Right) => match binary.op().swap() {
                Some(op) => (op, a.2 - b.2),
                None => continue,
            },
            _ => continue,
        };
        let (l, r) = if a.0 == JoinSide::Left {
            (a.1, b.1)
        } else {
            (b.1, a.1)
        };
        if left_col.is_some_and(|x| x != l) || right_col.is_some_and(|x| x != r) {
            continue;
        }
        match op {
            Operator::GtEq | Operator::Gt => lo = Some(lo.map_or(c, |x| x.max(c))),
            Operator::LtEq | Operator::Lt => hi = Some(hi.map_or(c, |x| x.min(c))),
            _ => continue,
        }
        (left_col, right_col) = (Some(l), Some(r));
    }
    let grain = match (lo, hi) {
        (Some(lo), Some(hi)) => ((hi - lo) / 8).max(100),
        _ => 1000,
    };
    let expiry = |column: Option<usize>, offset: Option<i64>| {
        Some(Expiry {
            column: column?,
            offset_ms: offset?,
            grain_ms: grain,
        })
    };
    (expiry(left_col, hi), expiry(right_col, lo.map(|lo| -lo)))
}

/// A column of a side that carries event time, plus or minus a constant
/// interval.
fn term(
    expr: &std::sync::Arc<dyn datafusion::physical_expr::PhysicalExpr>,
    filter: &JoinFilter,
    left: &Lineages,
    right: &Lineages,
) -> Option<Term> {
    if let Some(cast) = expr.downcast_ref::<CastExpr>() {
        return term(cast.expr(), filter, left, right);
    }
    if let Some(column) = expr.downcast_ref::<Column>() {
        let index = filter.column_indices().get(column.index())?;
        let lineage = match index.side {
            JoinSide::Left => left,
            _ => right,
        };
        if lineage.get(index.index).copied().flatten() != Some(Lineage::EventTime) {
            return None;
        }
        return Some((index.side, index.index, 0));
    }
    let binary = expr.downcast_ref::<BinaryExpr>()?;
    let sign = match binary.op() {
        Operator::Plus => 1,
        Operator::Minus => -1,
        _ => return None,
    };
    let (side, column, offset) = term(binary.left(), filter, left, right)?;
    let literal = binary.right().downcast_ref::<Literal>()?;
    Some((side, column, offset + sign * interval_ms(literal.value())?))
}

/// A constant interval or duration in ms (month intervals have no fixed length).
fn interval_ms(value: &ScalarValue) -> Option<i64> {
    Some(match value {
        ScalarValue::IntervalMonthDayNano(Some(v)) if v.months == 0 => {
            i64::from(v.days) * 86_400_000 + v.nanoseconds / 1_000_000
        }
        ScalarValue::IntervalDayTime(Some(v)) => {
            i64::from(v.days) * 86_400_000 + i64::from(v.milliseconds)
        }
        ScalarValue::DurationSecond(Some(v)) => v * 1000,
        ScalarValue::DurationMillisecond(Some(v)) => *v,
        ScalarValue::DurationMicrosecond(Some(v)) => v / 1000,
        ScalarValue::DurationNanosecond(Some(v)) => v / 1_000_000,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use datafusion::logical_expr::Operator::{And, GtEq, LtEq, Plus};
    use datafusion::physical_expr::PhysicalExpr;
    use datafusion::physical_plan::joins::utils::ColumnIndex;
    use std::sync::Arc;

    fn col(name: &str, i: usize) -> Arc<dyn PhysicalExpr> {
        Arc::new(Column::new(name, i))
    }

    fn bin(
        l: Arc<dyn PhysicalExpr>,
        op: Operator,
        r: Arc<dyn PhysicalExpr>,
    ) -> Arc<dyn PhysicalExpr> {
        Arc::new(BinaryExpr::new(l, op, r))
    }

    /// `r.t >= l.t AND r.t <= l.t + INTERVAL '2' SECOND`, over the sides'
    /// column 1.
    fn filter() -> JoinFilter {
        let ts = DataType::Timestamp(TimeUnit::Millisecond, None);
        let schema = Schema::new(vec![
            Field::new("lt", ts.clone(), true),
            Field::new("rt", ts, true),
        ]);
        let two_s = Arc::new(Literal::new(ScalarValue::DurationMillisecond(Some(2000))));
        let expr = bin(
            bin(col("rt", 1), GtEq, col("lt", 0)),
            And,
            bin(col("rt", 1), LtEq, bin(col("lt", 0), Plus, two_s)),
        );
        let indices = vec![
            ColumnIndex {
                index: 1,
                side: JoinSide::Left,
            },
            ColumnIndex {
                index: 1,
                side: JoinSide::Right,
            },
        ];
        JoinFilter::new(expr, indices, Arc::new(schema))
    }

    #[test]
    fn bounds_come_from_comparisons_of_event_times() {
        let timed: Lineages = vec![None, Some(Lineage::EventTime)];
        let (left, right) = expiries(Some(&filter()), &timed, &timed);
        let left = left.expect("left rows expire");
        let right = right.expect("right rows expire");
        assert_eq!((left.column, left.offset_ms), (1, 2000));
        assert_eq!((right.column, right.offset_ms), (1, 0));
        // Columns that are not event time bound nothing.
        let untimed: Lineages = vec![None, None];
        assert_eq!(expiries(Some(&filter()), &untimed, &timed), (None, None));
    }
}
