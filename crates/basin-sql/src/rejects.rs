//! Rejected rows: input rows that do not parse into their table's schema
//! (malformed CSV or JSON, a value of the wrong type, a missing NOT NULL
//! value). Readers report them here with file, line and reason; past the
//! limit (`--max-rejects`, default 0) the statement fails with the first
//! ones named. When a statement succeeds, its rejects are appended to the
//! lake table `lake._rejects`; when it fails, nothing is written.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::error::DataFusionError;
use parking_lot::Mutex;

/// The lake table rejected rows go to.
pub const REJECTS_TABLE: &str = "_rejects";
/// How much of a rejected row's text is kept.
const RAW_LIMIT: usize = 1000;
/// How many rejects an error message lists.
const SHOWN: usize = 3;

/// One input row that was not accepted.
#[derive(Debug, Clone)]
pub struct Reject {
    pub table: String,
    pub file: String,
    pub line: u64,
    pub reason: String,
    pub raw: String,
}

impl Reject {
    fn describe(&self) -> String {
        format!("{} line {}: {}", self.file, self.line, self.reason)
    }
}

/// The rejects of the statements running now, and the limit.
#[derive(Debug, Default)]
pub struct RejectLog {
    max: AtomicU64,
    rows: Mutex<Vec<Reject>>,
}

impl RejectLog {
    pub fn set_max(&self, max: u64) {
        self.max.store(max, Ordering::Relaxed);
    }

    pub fn max(&self) -> u64 {
        self.max.load(Ordering::Relaxed)
    }

    /// Record a reject; an error once there are more than the limit.
    pub fn record(&self, mut reject: Reject) -> Result<(), DataFusionError> {
        truncate(&mut reject.raw, RAW_LIMIT);
        let max = self.max();
        let mut rows = self.rows.lock();
        rows.push(reject);
        if rows.len() as u64 <= max {
            return Ok(());
        }
        let shown: Vec<String> = rows.iter().take(SHOWN).map(Reject::describe).collect();
        let message = if max == 0 {
            format!(
                "rejected a bad input row: {}; nothing was written (allow up to N bad rows, \
                 kept in lake.{REJECTS_TABLE}, with --max-rejects N)",
                shown[0]
            )
        } else {
            format!(
                "more than {max} bad input rows (--max-rejects {max}); nothing was written. First: {}",
                shown.join("; ")
            )
        };
        Err(DataFusionError::Execution(message))
    }

    /// Take the rejects gathered so far, leaving none.
    pub fn take(&self) -> Vec<Reject> {
        std::mem::take(&mut *self.rows.lock())
    }
}

fn truncate(text: &mut String, limit: usize) {
    if text.len() > limit {
        let mut end = limit;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
}

/// The schema of `lake._rejects`.
pub fn rejects_schema() -> SchemaRef {
    let text = |name: &str| Field::new(name, DataType::Utf8, true);
    Arc::new(Schema::new(vec![
        text("job"),
        Field::new(
            "rejected_at",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            true,
        ),
        text("table_name"),
        text("file"),
        Field::new("line", DataType::Int64, true),
        text("reason"),
        text("raw"),
    ]))
}

/// Rejects as one batch of `lake._rejects`, stamped with the job and time.
pub fn rejects_batch(rejects: &[Reject], job: &str, at_ms: i64) -> RecordBatch {
    let strings = |f: &dyn Fn(&Reject) -> String| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(rejects.iter().map(f)))
    };
    let columns: Vec<ArrayRef> = vec![
        strings(&|_| job.to_string()),
        Arc::new(
            TimestampMillisecondArray::from_iter_values(rejects.iter().map(|_| at_ms))
                .with_timezone("UTC"),
        ),
        strings(&|r| r.table.clone()),
        strings(&|r| r.file.clone()),
        Arc::new(Int64Array::from_iter_values(
            rejects.iter().map(|r| r.line as i64),
        )),
        strings(&|r| r.reason.clone()),
        strings(&|r| r.raw.clone()),
    ];
    RecordBatch::try_new(rejects_schema(), columns).expect("columns match the schema")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reject(line: u64) -> Reject {
        Reject {
            table: "t".into(),
            file: "a.csv".into(),
            line,
            reason: "bad".into(),
            raw: "x".repeat(2000),
        }
    }

    #[test]
    fn fails_past_the_limit_naming_the_first_rows() {
        let log = RejectLog::default();
        log.set_max(2);
        log.record(reject(3)).unwrap();
        log.record(reject(5)).unwrap();
        let err = log.record(reject(9)).unwrap_err().to_string();
        assert!(err.contains("more than 2 bad input rows"), "{err}");
        assert!(
            err.contains("a.csv line 3: bad; a.csv line 5: bad; a.csv line 9"),
            "{err}"
        );
        let taken = log.take();
        assert_eq!(taken.len(), 3);
        assert!(taken[0].raw.chars().count() <= RAW_LIMIT + 1);
        assert!(log.take().is_empty());
    }

    #[test]
    fn default_limit_is_zero() {
        let log = RejectLog::default();
        let err = log.record(reject(2)).unwrap_err().to_string();
        assert!(
            err.contains("a.csv line 2: bad") && err.contains("--max-rejects"),
            "{err}"
        );
    }
}
