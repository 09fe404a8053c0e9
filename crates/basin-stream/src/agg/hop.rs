//! HOP windows pre-aggregated per slice. A row lands in one slice (the gcd
//! of slide and size wide) instead of `size / slide` windows; when the
//! watermark passes a window's end, the window's slices are merged into its
//! groups and emitted; a slice is dropped once every window holding it has
//! fired. A row is late when all of its windows have fired (as Flink
//! counts them); a row whose first windows have fired still counts in the
//! later ones, as it does when rows are copied per window.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, TimestampMillisecondArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::record_batch::RecordBatch;

use super::{AggSpec, Aggregate, Trigger};
use crate::error::Result;

/// The HOP parameters of a trigger.
struct Hop {
    start: Option<usize>,
    end: Option<usize>,
    size: i64,
    slide: i64,
}

impl Aggregate {
    fn hop(&self) -> Option<Hop> {
        match self.spec.trigger {
            Trigger::Hop {
                start,
                end,
                size,
                slide,
                ..
            } => Some(Hop {
                start,
                end,
                size,
                slide,
            }),
            _ => None,
        }
    }

    /// Whether a row whose pane fires (or, for HOP, whose slice starts) at
    /// `fire` comes too late for every window it belongs to.
    pub(super) fn is_late(&self, fire: i64) -> bool {
        match self.hop() {
            None if self.spec.trigger == Trigger::Updating => false,
            None => fire <= self.watermark,
            Some(h) => {
                let last_start = fire - fire.rem_euclid(h.slide);
                last_start.saturating_add(h.size) <= self.watermark
            }
        }
    }

    /// Note the windows holding the slice starting at `slice` that have
    /// not fired yet.
    pub(super) fn register_windows(&mut self, slice: i64) {
        let Some(h) = self.hop() else { return };
        if slice == i64::MAX {
            return;
        }
        let mut start = slice - slice.rem_euclid(h.slide);
        while start > slice - h.size {
            let end = start + h.size;
            if end > self.watermark {
                self.windows.insert(end);
            }
            start -= h.slide;
        }
    }

    /// Emit the windows the watermark has passed, then drop the slices no
    /// window needs any more.
    pub(super) fn fire_windows(&mut self, out: &mut Vec<RecordBatch>) -> Result<()> {
        let Some(h) = self.hop() else { return Ok(()) };
        let due: Vec<i64> = self.windows.range(..=self.watermark).copied().collect();
        for end in due {
            self.windows.remove(&end);
            let batch = self.window_batch(&h, end)?;
            if batch.num_rows() > 0 {
                out.push(batch);
            }
        }
        let keep = self.watermark.saturating_sub(h.size).saturating_add(1);
        self.panes = self.panes.split_off(&keep);
        Ok(())
    }

    /// The groups of the window ending at `end`: its slices merged.
    fn window_batch(&mut self, h: &Hop, end: i64) -> Result<RecordBatch> {
        let start = end - h.size;
        let schema = self.spec.state_schema()?;
        let slices: Vec<i64> = self.panes.range(start..end).map(|(k, _)| *k).collect();
        let mut window = Aggregate::new(AggSpec {
            trigger: Trigger::EndOfInput,
            ..self.spec.clone()
        })?;
        for slice in slices {
            let mut pane = self.panes.remove(&slice).expect("listed");
            let state = self.pane_state(slice, &mut pane, &schema)?;
            // state() drained the accumulators: load the slice back.
            self.merge_state(slice, &state)?;
            let state = with_bounds(&state, h, start, end)?;
            window.merge_state(i64::MAX, &state)?;
        }
        match window.panes.remove(&i64::MAX) {
            Some(pane) => window.emit(pane),
            None => Ok(RecordBatch::new_empty(self.spec.output_schema.clone())),
        }
    }
}

/// Slice state rows with the window's bounds in the window columns (group
/// column `i` is state column `1 + i`), so a group's slices merge.
fn with_bounds(state: &RecordBatch, h: &Hop, start: i64, end: i64) -> Result<RecordBatch> {
    let n = state.num_rows();
    let mut columns: Vec<ArrayRef> = state.columns().to_vec();
    for (col, value) in [(h.start, start), (h.end, end)] {
        if let Some(c) = col {
            let field = state.schema().field(1 + c).clone();
            let values: ArrayRef = Arc::new(TimestampMillisecondArray::from(vec![value; n]));
            columns[1 + c] = cast(&values, field.data_type())?;
        }
    }
    Ok(RecordBatch::try_new(state.schema(), columns)?)
}
