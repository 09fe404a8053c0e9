//! State TTL of an updating `GROUP BY` (see [`crate::ttl`]): groups not
//! updated for the TTL are dropped (an update still to emit goes out
//! first). Accumulators cannot forget one group, so a sweep that finds
//! expired groups rebuilds the pane from the state of the others.

use datafusion::arrow::array::UInt32Array;
use datafusion::arrow::record_batch::RecordBatch;

use super::{take_rows, Aggregate};
use crate::error::Result;
use crate::ops::Operator;
use crate::ttl::UNSTAMPED;

impl Aggregate {
    pub(super) fn expire(&mut self, out: &mut Vec<RecordBatch>) -> Result<()> {
        let watermark = self.watermark;
        let Some(cutoff) = self.ttl.as_mut().and_then(|t| t.due(watermark)) else {
            return Ok(());
        };
        let groups = self.panes.get(&i64::MAX).map_or(0, |p| p.index.len());
        self.touched.resize(groups, UNSTAMPED);
        self.dirty.resize(groups, false);
        for t in self.touched.iter_mut().filter(|t| **t == UNSTAMPED) {
            *t = watermark;
        }
        if !self.touched.iter().any(|t| *t < cutoff) {
            return Ok(());
        }
        if (0..groups).any(|i| self.touched[i] < cutoff && self.dirty[i]) {
            self.on_tick(out)?;
        }
        let expired = |i: usize| self.touched[i] < cutoff;
        let keep: Vec<u32> = (0..groups as u32)
            .filter(|&i| !expired(i as usize))
            .collect();
        let mut pane = self.panes.remove(&i64::MAX).expect("has groups");
        let schema = self.spec.state_schema()?;
        let state = self.pane_state(i64::MAX, &mut pane, &schema)?;
        let kept = take_rows(&state, &UInt32Array::from(keep.clone()))?;
        self.touched = keep.iter().map(|&i| self.touched[i as usize]).collect();
        self.dirty = keep.iter().map(|&i| self.dirty[i as usize]).collect();
        tracing::debug!(
            expired = groups - keep.len(),
            kept = keep.len(),
            "state TTL: groups dropped"
        );
        if kept.num_rows() > 0 {
            self.merge_state(i64::MAX, &kept)?;
        }
        Ok(())
    }
}
