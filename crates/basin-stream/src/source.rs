//! Topic sources. [`SourceInfo`] describes a topic table (its columns,
//! value format, watermark); [`StreamSourceTable`] stands for it in stream
//! plans; [`TopicReader`] reads the partitions a source task owns through
//! the Kafka protocol (so a pipeline runs against Basin or any
//! Kafka-compatible cluster), decodes values into Arrow batches with the
//! record's Kafka metadata, and tracks the watermark: the smallest, over
//! the partitions still active, of the largest event time seen minus the
//! declared delay. A partition that is caught up and has had no record for
//! [`IDLE_AFTER`] stops holding the watermark back.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use basin_sql::topic::{TopicTable, ValueDecoder, ValueFormat};
use datafusion::arrow::array::{
    Array, ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::Result as DfResult;
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::ExecutionPlan;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};

use crate::error::{Result, StreamError};
use crate::exec::StreamScanExec;
use crate::script::Watermark;

/// A caught-up partition with no record for this long is idle.
pub const IDLE_AFTER: Duration = Duration::from_secs(2);
const TIMEOUT: Duration = Duration::from_secs(10);

/// What a source task needs to read one topic table.
#[derive(Debug)]
pub struct SourceInfo {
    pub name: String,
    pub topic: String,
    pub brokers: String,
    pub format: ValueFormat,
    pub value_schema: SchemaRef,
    /// Value columns, then `_partition`, `_offset`, `_timestamp`, `_key`.
    pub schema: SchemaRef,
    pub watermark: Option<Watermark>,
    /// A processing-time column (`p AS PROCTIME()`), filled on read.
    pub proctime: Option<String>,
    /// Where late rows of windowed reads go (`'late.rows'`), instead of
    /// being dropped.
    pub late_rows: Option<crate::sink::SinkTarget>,
    /// Columns keying the records a sink writes.
    pub key: Vec<String>,
    /// A keyed table (`'compact' 'true'`): a compacted topic.
    pub compact: bool,
}

impl SourceInfo {
    pub fn from_table(
        name: &str,
        table: &TopicTable,
        watermark: Option<Watermark>,
        proctime: Option<&str>,
    ) -> Result<SourceInfo> {
        let schema = table.schema();
        if let Some(w) = &watermark {
            match schema.field_with_name(&w.column).map(|f| f.data_type()) {
                Ok(DataType::Timestamp(_, _)) => {}
                Ok(other) => {
                    return Err(StreamError::Unsupported(format!(
                        "{name}: WATERMARK FOR {} needs a TIMESTAMP column, not {other}",
                        w.column
                    )))
                }
                Err(_) => {
                    return Err(StreamError::Unsupported(format!(
                        "{name}: WATERMARK FOR {}: no such column",
                        w.column
                    )))
                }
            }
        }
        Ok(SourceInfo {
            name: name.to_string(),
            topic: table.topic().to_string(),
            brokers: table.brokers().to_string(),
            format: table.format(),
            value_schema: table.value_schema(),
            schema,
            watermark,
            proctime: proctime.map(str::to_string),
            late_rows: None,
            key: table.key_columns().to_vec(),
            compact: table.compact(),
        })
    }

    /// The topic's partition ids.
    pub fn partitions(&self) -> Result<Vec<i32>> {
        let consumer = consumer(&self.brokers)?;
        let metadata = consumer.fetch_metadata(Some(&self.topic), TIMEOUT)?;
        let topic = metadata.topics().iter().find(|t| t.name() == self.topic);
        match topic {
            Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
                Ok(t.partitions().iter().map(|p| p.id()).collect())
            }
            _ => Err(StreamError::Kafka(format!(
                "source {}: topic '{}' does not exist on {}",
                self.name, self.topic, self.brokers
            ))),
        }
    }
}

pub use basin_sql::topic::QuietContext;

pub(crate) type QuietConsumer = BaseConsumer<QuietContext>;

/// A consumer of assigned partitions (no group membership, no commits)
/// that reads committed records only and reports partition ends.
pub(crate) fn consumer(brokers: &str) -> Result<QuietConsumer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("basin-pipeline-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .set("fetch.wait.max.ms", "50")
        // librdkafka >= 2.4 pauses fetching 1 s whenever its local queue is
        // over queued.min.messages: at ~130k rows/s that pause is the limit.
        .set("fetch.queue.backoff.ms", "1")
        .set("log_level", "3")
        .create_with_context(QuietContext)?)
}

/// A topic table in a stream plan.
#[derive(Debug)]
pub struct StreamSourceTable {
    pub info: Arc<SourceInfo>,
    /// A keyed table reads as a table, not a stream: its latest row per
    /// key when the job starts, through this provider (a bounded input, so
    /// a join against it is a lookup join).
    pub snapshot: Option<Arc<dyn TableProvider>>,
}

#[async_trait]
impl TableProvider for StreamSourceTable {
    fn schema(&self) -> SchemaRef {
        self.info.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if let Some(table) = &self.snapshot {
            return table.scan(state, projection, filters, limit).await;
        }
        Ok(Arc::new(StreamScanExec::new(
            self.info.clone(),
            projection.cloned(),
        )?))
    }
}

/// Read position and event-time progress of one partition.
#[derive(Debug)]
struct PartitionState {
    next: i64,
    /// Largest event time seen (ms).
    max_time: Option<i64>,
    caught_up: bool,
    last_record: Instant,
    /// Bounded reads stop here (the high watermark when the job started).
    end: Option<i64>,
}

/// Reads some partitions of one topic.
pub struct TopicReader {
    consumer: QuietConsumer,
    state: ReaderState,
}

/// Everything of a reader but its consumer.
struct ReaderState {
    info: Arc<SourceInfo>,
    partitions: HashMap<i32, PartitionState>,
    decoder: ValueDecoder,
    meta: Meta,
    time_col: Option<usize>,
    bounded: bool,
}

#[derive(Default)]
struct Meta {
    partitions: Vec<i32>,
    offsets: Vec<i64>,
    timestamps: Vec<Option<i64>>,
    keys: Vec<Option<String>>,
}

impl TopicReader {
    /// Start reading `partitions` at `start` offsets (earliest where absent);
    /// `bounded` stops each at its current end.
    pub fn open(
        info: Arc<SourceInfo>,
        partitions: &[i32],
        start: &HashMap<i32, i64>,
        bounded: bool,
    ) -> Result<TopicReader> {
        let consumer = consumer(&info.brokers)?;
        let mut states = HashMap::new();
        let mut assignment = TopicPartitionList::new();
        for &p in partitions {
            let (low, high) = consumer.fetch_watermarks(&info.topic, p, TIMEOUT)?;
            let next = start.get(&p).copied().unwrap_or(low).max(low);
            assignment.add_partition_offset(&info.topic, p, Offset::Offset(next))?;
            let end = bounded.then_some(high);
            let state = PartitionState {
                next,
                max_time: None,
                caught_up: end.is_some_and(|e| next >= e),
                last_record: Instant::now(),
                end,
            };
            states.insert(p, state);
        }
        consumer.assign(&assignment)?;
        let time_col = info
            .watermark
            .as_ref()
            .and_then(|w| info.value_schema.index_of(&w.column).ok());
        let state = ReaderState {
            decoder: ValueDecoder::new(info.format, info.value_schema.clone()),
            info,
            partitions: states,
            meta: Meta::default(),
            time_col,
            bounded,
        };
        Ok(TopicReader { consumer, state })
    }

    /// Up to `max_rows` records, waiting at most `wait` for the first.
    pub fn poll(&mut self, max_rows: usize, wait: Duration) -> Result<Option<RecordBatch>> {
        let deadline = Instant::now() + wait;
        let mut polled = 0u32;
        while self.state.meta.offsets.len() < max_rows && !self.state.finished() {
            let Some(message) = next_message(&self.consumer, deadline) else {
                break;
            };
            match message {
                Ok(m) => self.state.push(&m)?,
                Err(KafkaError::PartitionEOF(p)) => {
                    if let Some(s) = self.state.partitions.get_mut(&p) {
                        s.caught_up = true;
                    }
                }
                Err(e) => return Err(e.into()),
            }
            // Reading the clock per message costs more than decoding it.
            polled = polled.wrapping_add(1);
            if polled.is_multiple_of(256) && Instant::now() >= deadline {
                break;
            }
        }
        self.state.flush()
    }

    /// The watermark (ms): `i64::MAX` once a bounded read is done, `None`
    /// while an active partition has shown no event time yet.
    pub fn watermark(&self) -> Option<i64> {
        self.state.watermark()
    }

    /// Next offset to read, per partition (what a checkpoint stores).
    pub fn offsets(&self) -> HashMap<i32, i64> {
        self.state
            .partitions
            .iter()
            .map(|(p, s)| (*p, s.next))
            .collect()
    }

    /// A bounded read has reached every partition's end.
    pub fn finished(&self) -> bool {
        self.state.finished()
    }
}

/// The next message or event: at once when one is queued, else waiting
/// until `deadline`.
fn next_message<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    deadline: Instant,
) -> Option<std::result::Result<BorrowedMessage<'_>, KafkaError>> {
    if let Some(m) = consumer.poll(Duration::ZERO) {
        return Some(m);
    }
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return None;
    }
    consumer.poll(left)
}

impl ReaderState {
    fn push(&mut self, m: &rdkafka::message::BorrowedMessage<'_>) -> Result<()> {
        let p = m.partition();
        let Some(state) = self.partitions.get_mut(&p) else {
            return Ok(());
        };
        if state.end.is_some_and(|e| m.offset() >= e) {
            state.caught_up = true;
            return Ok(());
        }
        state.next = m.offset() + 1;
        state.last_record = Instant::now();
        state.caught_up = state.end.is_some_and(|e| state.next >= e);
        let value = m.payload().unwrap_or(match self.info.format {
            ValueFormat::Json => b"{}",
            ValueFormat::Csv => b"",
        });
        self.decoder.decode_row(value).map_err(|e| {
            StreamError::Task(format!(
                "source {}: {}[{p}] offset {}: {e}",
                self.info.name,
                self.info.topic,
                m.offset()
            ))
        })?;
        self.meta.partitions.push(p);
        self.meta.offsets.push(m.offset());
        self.meta.timestamps.push(m.timestamp().to_millis());
        self.meta
            .keys
            .push(m.key().map(|k| String::from_utf8_lossy(k).into_owned()));
        Ok(())
    }

    fn flush(&mut self) -> Result<Option<RecordBatch>> {
        let Some(mut values) = self.decoder.flush()? else {
            return Ok(None);
        };
        if let Some(p) = &self.info.proctime {
            values = crate::proctime::fill(&values, self.info.value_schema.index_of(p)?)?;
        }
        let meta = std::mem::take(&mut self.meta);
        self.track_time(&values, &meta.partitions)?;
        let mut columns: Vec<ArrayRef> = values.columns().to_vec();
        columns.push(Arc::new(Int32Array::from(meta.partitions)));
        columns.push(Arc::new(Int64Array::from(meta.offsets)));
        columns.push(Arc::new(TimestampMillisecondArray::from(meta.timestamps)));
        columns.push(Arc::new(StringArray::from(meta.keys)));
        Ok(Some(RecordBatch::try_new(
            self.info.schema.clone(),
            columns,
        )?))
    }

    fn track_time(&mut self, values: &RecordBatch, partitions: &[i32]) -> Result<()> {
        let Some(col) = self.time_col else {
            return Ok(());
        };
        let ms = cast(
            values.column(col),
            &DataType::Timestamp(TimeUnit::Millisecond, None),
        )?;
        let ms = ms
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .expect("cast to ms");
        for (i, p) in partitions.iter().enumerate() {
            if ms.is_valid(i) {
                let state = self.partitions.get_mut(p).expect("assigned");
                state.max_time = Some(state.max_time.map_or(ms.value(i), |m| m.max(ms.value(i))));
            }
        }
        Ok(())
    }

    fn watermark(&self) -> Option<i64> {
        if self.finished() {
            return Some(i64::MAX);
        }
        let Some(delay) = self.info.watermark.as_ref().map(|w| w.delay_ms) else {
            // Processing time only: the clock is the watermark.
            return self
                .info
                .proctime
                .as_ref()
                .map(|_| crate::proctime::now_ms());
        };
        // Idle (caught up, quiet for a while) and finished (bounded, at
        // their end) partitions do not hold the watermark back.
        let active: Vec<&PartitionState> = self
            .partitions
            .values()
            .filter(|s| !(s.caught_up && s.last_record.elapsed() >= IDLE_AFTER))
            .filter(|s| s.end.is_none_or(|e| s.next < e))
            .collect();
        if active.is_empty() {
            // all idle: the largest time seen anywhere
            return self
                .partitions
                .values()
                .filter_map(|s| s.max_time)
                .max()
                .map(|t| t - delay);
        }
        let mut low = i64::MAX;
        for s in active {
            low = low.min(s.max_time? - delay);
        }
        Some(low)
    }

    fn finished(&self) -> bool {
        self.bounded
            && self
                .partitions
                .values()
                .all(|s| s.end.is_some_and(|e| s.next >= e))
    }
}
