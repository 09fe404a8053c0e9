//! Topics as tables: `CREATE EXTERNAL TABLE t (...) STORED AS TOPIC
//! LOCATION 'topic' OPTIONS ('format' 'json' | 'csv', 'brokers' 'host:port')`.
//!
//! A scan reads every partition from its earliest offset to the high
//! watermark seen when the scan starts, through the Kafka protocol (so it
//! works against Basin or any Kafka-compatible cluster), decodes JSON or CSV
//! values with the declared schema and adds the record's Kafka metadata as
//! columns `_partition`, `_offset`, `_timestamp` and `_key`. An insert
//! produces each row as one JSON or CSV value with `acks=all`, keyed by the
//! columns of the `'key'` option (comma-joined) when given.
//!
//! A keyed table (`'key'` plus `'compact' 'true'`) lives in a compacted
//! topic (created so on first write, refused when the topic exists with
//! another cleanup policy) and reads as its latest row per key: a scan keeps
//! each key's last record and drops keys whose last record is a tombstone.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::array::{
    ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::json::{LineDelimitedWriter, ReaderBuilder};
use datafusion::catalog::{Session, TableProvider, TableProviderFactory};
use datafusion::common::{exec_err, plan_err, DataFusionError};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::sink::{DataSink, DataSinkExec};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{CreateExternalTable, Expr, TableType};
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, SendableRecordBatchStream,
};
use futures::StreamExt;
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

type DfResult<T> = datafusion::error::Result<T>;

/// Kafka metadata columns appended to every topic table.
const META_COLUMNS: [&str; 4] = ["_partition", "_offset", "_timestamp", "_key"];
const DEFAULT_BROKERS: &str = "127.0.0.1:9092";
const TIMEOUT: Duration = Duration::from_secs(10);
const ROWS_PER_BATCH: usize = 8192;

/// Logs client errors as warnings, but not end-of-partition, which the
/// reader handles (librdkafka reports it as a global error too).
pub struct QuietContext;

impl ClientContext for QuietContext {
    fn error(&self, error: KafkaError, reason: &str) {
        let eof = Some(rdkafka::types::RDKafkaErrorCode::PartitionEOF);
        if !matches!(error, KafkaError::PartitionEOF(_)) && error.rdkafka_error_code() != eof {
            tracing::warn!(%error, reason, "kafka client");
        }
    }
}

impl ConsumerContext for QuietContext {}

fn kafka_err(e: impl fmt::Display) -> DataFusionError {
    DataFusionError::External(format!("kafka: {e}").into())
}

/// Makes `TopicTable`s for `STORED AS TOPIC`.
#[derive(Debug, Default)]
pub struct TopicTableFactory;

#[async_trait]
impl TableProviderFactory for TopicTableFactory {
    async fn create(
        &self,
        _state: &dyn Session,
        cmd: &CreateExternalTable,
    ) -> DfResult<Arc<dyn TableProvider>> {
        let option = |k: &str| {
            cmd.options
                .get(k)
                .or_else(|| cmd.options.get(&format!("format.{k}")))
                .cloned()
        };
        let format = match option("format").as_deref().unwrap_or("json") {
            "json" => ValueFormat::Json,
            "csv" => ValueFormat::Csv,
            other => return plan_err!("topic tables take format 'json' or 'csv' (got '{other}')"),
        };
        let Some(topic) = cmd.locations.first() else {
            return plan_err!("STORED AS TOPIC needs LOCATION 'topic-name'");
        };
        if cmd.schema.fields().is_empty() {
            return plan_err!(
                "a topic table needs declared columns, e.g. (id BIGINT, name VARCHAR)"
            );
        }
        let brokers = option("brokers")
            .or_else(|| std::env::var("BASIN_BROKERS").ok())
            .unwrap_or_else(|| DEFAULT_BROKERS.to_string());
        let value_schema = Arc::new(cmd.schema.as_arrow().clone());
        let table = TopicTable::new(topic.clone(), brokers, value_schema);
        let key: Vec<String> = option("key")
            .map(|k| k.split(',').map(|c| c.trim().to_lowercase()).collect())
            .unwrap_or_default();
        if let Some(missing) = key.iter().find(|k| table.value_schema.index_of(k).is_err()) {
            return plan_err!("OPTIONS ('key' ...): '{missing}' is not a declared column");
        }
        let compact = match option("compact").as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return plan_err!("OPTIONS ('compact' ...) takes 'true' or 'false' (got '{other}')")
            }
        };
        if compact && key.is_empty() {
            return plan_err!(
                "OPTIONS ('compact' 'true') needs 'key': a keyed table keeps the latest row per key"
            );
        }
        Ok(Arc::new(TopicTable {
            format,
            key,
            compact,
            ..table
        }))
    }
}

/// How record values encode a row: a JSON object, or one CSV line (the
/// declared columns in order, no header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueFormat {
    Json,
    Csv,
}

/// A topic read as a table of its JSON or CSV values plus Kafka metadata.
#[derive(Debug)]
pub struct TopicTable {
    topic: String,
    brokers: String,
    format: ValueFormat,
    /// Columns whose values form the record key of rows written (`'key'` option).
    key: Vec<String>,
    /// A keyed table: a compacted topic read as its latest row per key.
    compact: bool,
    value_schema: SchemaRef,
    schema: SchemaRef,
}

impl TopicTable {
    pub fn new(topic: String, brokers: String, value_schema: SchemaRef) -> TopicTable {
        let mut fields: Vec<Field> = value_schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new("_partition", DataType::Int32, true));
        fields.push(Field::new("_offset", DataType::Int64, true));
        fields.push(Field::new(
            "_timestamp",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            true,
        ));
        fields.push(Field::new("_key", DataType::Utf8, true));
        TopicTable {
            topic,
            brokers,
            format: ValueFormat::Json,
            key: Vec::new(),
            compact: false,
            value_schema,
            schema: Arc::new(Schema::new(fields)),
        }
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub fn brokers(&self) -> &str {
        &self.brokers
    }

    pub fn format(&self) -> ValueFormat {
        self.format
    }

    /// The columns that key the records this table writes (may be empty).
    pub fn key_columns(&self) -> &[String] {
        &self.key
    }

    /// Whether this is a keyed table (`'compact' 'true'`): a compacted
    /// topic holding the latest row per key.
    pub fn compact(&self) -> bool {
        self.compact
    }

    /// The declared columns, without the Kafka metadata columns.
    pub fn value_schema(&self) -> SchemaRef {
        self.value_schema.clone()
    }

    fn consumer(&self) -> DfResult<BaseConsumer<QuietContext>> {
        ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", format!("basin-sql-{}", std::process::id()))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            // librdkafka >= 2.4 pauses fetching 1 s whenever its local
            // queue is over queued.min.messages, capping scans.
            .set("fetch.queue.backoff.ms", "1")
            .set("log_level", "3")
            .create_with_context(QuietContext)
            .map_err(kafka_err)
    }

    /// Every record from earliest to the high watermark, decoded.
    fn read_all(&self) -> DfResult<Vec<RecordBatch>> {
        let consumer = self.consumer()?;
        let metadata = consumer
            .fetch_metadata(Some(&self.topic), TIMEOUT)
            .map_err(kafka_err)?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .find(|t| t.name() == self.topic && t.error().is_none())
            .map(|t| t.partitions().iter().map(|p| p.id()).collect())
            .unwrap_or_default();
        if partitions.is_empty() {
            return exec_err!("topic {} does not exist on {}", self.topic, self.brokers);
        }
        let mut batches = Vec::new();
        for p in partitions {
            batches.extend(self.read_partition(&consumer, p)?);
        }
        Ok(batches)
    }

    fn read_partition(
        &self,
        consumer: &BaseConsumer<QuietContext>,
        partition: i32,
    ) -> DfResult<Vec<RecordBatch>> {
        let (low, high) = consumer
            .fetch_watermarks(&self.topic, partition, TIMEOUT)
            .map_err(kafka_err)?;
        let mut rows = RowBuffer::new(
            self.format,
            self.value_schema.clone(),
            self.schema.clone(),
            partition,
        );
        if high <= low {
            return Ok(Vec::new());
        }
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(&self.topic, partition, Offset::Offset(low))
            .map_err(kafka_err)?;
        consumer.assign(&assignment).map_err(kafka_err)?;
        let mut latest = self.compact.then(Latest::default);
        let mut next = low;
        while next < high {
            let Some(message) = consumer.poll(TIMEOUT) else {
                return exec_err!(
                    "timed out reading {}[{partition}] at offset {next}",
                    self.topic
                );
            };
            let message = match message {
                Ok(m) => m,
                Err(rdkafka::error::KafkaError::PartitionEOF(_)) => break,
                Err(e) => return Err(kafka_err(e)),
            };
            if message.offset() >= high {
                break;
            }
            next = message.offset() + 1;
            match latest.as_mut() {
                Some(latest) => latest.push(&message),
                None => rows.push(&message)?,
            }
        }
        if let Some(latest) = latest {
            for record in latest.into_rows() {
                rows.push_parts(&record)?;
            }
        }
        rows.finish()
    }
}

/// Arrow's incremental decoder for the values' format.
pub enum ValueDecoder {
    Json(datafusion::arrow::json::reader::Decoder),
    Csv(Box<datafusion::arrow::csv::reader::Decoder>),
}

impl ValueDecoder {
    pub fn new(format: ValueFormat, schema: SchemaRef) -> ValueDecoder {
        match format {
            ValueFormat::Json => ValueDecoder::Json(
                ReaderBuilder::new(schema)
                    .with_batch_size(ROWS_PER_BATCH)
                    .build_decoder()
                    .expect("valid schema"),
            ),
            ValueFormat::Csv => ValueDecoder::Csv(Box::new(
                datafusion::arrow::csv::ReaderBuilder::new(schema)
                    .with_batch_size(ROWS_PER_BATCH)
                    .build_decoder(),
            )),
        }
    }

    /// Decode one value as one row.
    pub fn decode_row(&mut self, value: &[u8]) -> DfResult<()> {
        for part in [value, b"\n"] {
            let mut rest = part;
            while !rest.is_empty() {
                let used = match self {
                    ValueDecoder::Json(d) => d.decode(rest)?,
                    ValueDecoder::Csv(d) => d.decode(rest)?,
                };
                if used == 0 {
                    return exec_err!("value does not decode as one row");
                }
                rest = &rest[used..];
            }
        }
        Ok(())
    }

    pub fn flush(&mut self) -> DfResult<Option<RecordBatch>> {
        Ok(match self {
            ValueDecoder::Json(d) => d.flush()?,
            ValueDecoder::Csv(d) => d.flush()?,
        })
    }
}

/// One record of a partition, owned.
struct Record {
    topic: String,
    offset: i64,
    timestamp: Option<i64>,
    key: Option<String>,
    value: Option<Vec<u8>>,
}

impl Record {
    fn of(message: &rdkafka::message::BorrowedMessage<'_>) -> Record {
        Record {
            topic: message.topic().to_string(),
            offset: message.offset(),
            timestamp: message.timestamp().to_millis(),
            key: message
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned()),
            value: message.payload().map(<[u8]>::to_vec),
        }
    }
}

/// The latest record per key of a keyed table's partition (records without
/// a key are kept as they come).
#[derive(Default)]
struct Latest {
    by_key: std::collections::HashMap<String, Record>,
    unkeyed: Vec<Record>,
}

impl Latest {
    fn push(&mut self, message: &rdkafka::message::BorrowedMessage<'_>) {
        let record = Record::of(message);
        match &record.key {
            Some(key) => {
                self.by_key.insert(key.clone(), record);
            }
            None => self.unkeyed.push(record),
        }
    }

    /// Live rows in offset order: tombstones (null values) delete their key.
    fn into_rows(self) -> Vec<Record> {
        let mut rows: Vec<Record> = self
            .by_key
            .into_values()
            .filter(|r| r.value.is_some())
            .chain(self.unkeyed)
            .collect();
        rows.sort_by_key(|r| r.offset);
        rows
    }
}

/// Decodes record values into Arrow rows, batch by batch, with metadata.
struct RowBuffer {
    decoder: ValueDecoder,
    schema: SchemaRef,
    partition: i32,
    offsets: Vec<i64>,
    timestamps: Vec<Option<i64>>,
    keys: Vec<Option<String>>,
    batches: Vec<RecordBatch>,
}

impl RowBuffer {
    fn new(
        format: ValueFormat,
        value_schema: SchemaRef,
        schema: SchemaRef,
        partition: i32,
    ) -> RowBuffer {
        let decoder = ValueDecoder::new(format, value_schema);
        RowBuffer {
            decoder,
            schema,
            partition,
            offsets: vec![],
            timestamps: vec![],
            keys: vec![],
            batches: vec![],
        }
    }

    fn push(&mut self, message: &rdkafka::message::BorrowedMessage<'_>) -> DfResult<()> {
        self.push_parts(&Record::of(message))
    }

    fn push_parts(&mut self, record: &Record) -> DfResult<()> {
        let value = record.value.as_deref().unwrap_or(match self.decoder {
            ValueDecoder::Json(_) => b"{}",
            ValueDecoder::Csv(_) => b"",
        });
        self.decoder.decode_row(value).map_err(|e| {
            DataFusionError::Execution(format!(
                "{}[{}] offset {}: {e}",
                record.topic, self.partition, record.offset
            ))
        })?;
        self.offsets.push(record.offset);
        self.timestamps.push(record.timestamp);
        self.keys.push(record.key.clone());
        if self.offsets.len() >= ROWS_PER_BATCH {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> DfResult<()> {
        let Some(values) = self.decoder.flush()? else {
            return Ok(());
        };
        let n = values.num_rows();
        let mut columns: Vec<ArrayRef> = values.columns().to_vec();
        columns.push(Arc::new(Int32Array::from(vec![self.partition; n])));
        columns.push(Arc::new(Int64Array::from(std::mem::take(
            &mut self.offsets,
        ))));
        columns.push(Arc::new(TimestampMillisecondArray::from(std::mem::take(
            &mut self.timestamps,
        ))));
        columns.push(Arc::new(StringArray::from(std::mem::take(&mut self.keys))));
        self.batches
            .push(RecordBatch::try_new(self.schema.clone(), columns)?);
        Ok(())
    }

    fn finish(mut self) -> DfResult<Vec<RecordBatch>> {
        self.flush()?;
        Ok(self.batches)
    }
}

#[async_trait]
impl TableProvider for TopicTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let table = TopicTable {
            format: self.format,
            compact: self.compact,
            ..TopicTable::new(
                self.topic.clone(),
                self.brokers.clone(),
                self.value_schema.clone(),
            )
        };
        let batches = tokio::task::spawn_blocking(move || table.read_all())
            .await
            .map_err(|e| DataFusionError::Execution(e.to_string()))??;
        Ok(MemorySourceConfig::try_new_exec(
            &[batches],
            self.schema.clone(),
            projection.cloned(),
        )?)
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        op: InsertOp,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if op != InsertOp::Append {
            return exec_err!("a topic only takes appends (INSERT INTO), not {op}");
        }
        let sink = TopicSink {
            key: self.key.clone(),
            compact: self.compact,
            format: self.format,
            topic: self.topic.clone(),
            brokers: self.brokers.clone(),
            schema: self.schema.clone(),
            value_columns: self.value_schema.fields().len(),
        };
        Ok(Arc::new(DataSinkExec::new(input, Arc::new(sink), None)))
    }
}

/// Produces inserted rows to the topic as JSON or CSV values.
#[derive(Debug)]
struct TopicSink {
    key: Vec<String>,
    compact: bool,
    format: ValueFormat,
    topic: String,
    brokers: String,
    /// The table's schema, metadata columns included (what inserts carry).
    schema: SchemaRef,
    /// How many leading columns are the record value.
    value_columns: usize,
}

impl DisplayAs for TopicSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "TopicSink: topic={}", self.topic)
    }
}

#[async_trait]
impl DataSink for TopicSink {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    async fn write_all(
        &self,
        mut data: SendableRecordBatchStream,
        _ctx: &Arc<TaskContext>,
    ) -> DfResult<u64> {
        if self.compact {
            ensure_keyed_topic(&self.brokers, &self.topic)
                .await
                .map_err(DataFusionError::Execution)?;
        }
        let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .set("log_level", "3")
            .create()
            .map_err(kafka_err)?;
        let mut rows = 0u64;
        while let Some(batch) = data.next().await {
            // Inserts fill the metadata columns with NULLs; only values are sent.
            let values: Vec<usize> = (0..self.value_columns).collect();
            let batch = batch?.project(&values)?;
            let keys = record_keys(&batch, &self.key)?;
            let lines = match self.format {
                ValueFormat::Json => json_lines(&batch)?,
                ValueFormat::Csv => csv_lines(&batch)?,
            };
            for (line, key) in lines.iter().zip(keys) {
                send(&producer, &self.topic, line, key.as_deref())?;
                rows += 1;
            }
        }
        producer.flush(Duration::from_secs(60)).map_err(kafka_err)?;
        Ok(rows)
    }
}

/// Each row as one JSON object (without its newline).
pub fn json_lines(batch: &RecordBatch) -> DfResult<Vec<Vec<u8>>> {
    let mut buf = Vec::new();
    let mut writer = LineDelimitedWriter::new(&mut buf);
    writer.write(batch)?;
    writer.finish()?;
    Ok(buf
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect())
}

/// Each row as one CSV line (without its newline; quoted fields may hold
/// newlines, so rows are written one at a time).
pub fn csv_lines(batch: &RecordBatch) -> DfResult<Vec<Vec<u8>>> {
    let mut lines = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        let mut buf = Vec::new();
        let mut writer = datafusion::arrow::csv::WriterBuilder::new()
            .with_header(false)
            .build(&mut buf);
        writer.write(&batch.slice(row, 1))?;
        drop(writer);
        while buf.last() == Some(&b'\n') {
            buf.pop();
        }
        lines.push(buf);
    }
    Ok(lines)
}

/// The record key of each row: the `key` columns' values, comma-joined
/// (`None` for every row when there are no key columns).
pub fn record_keys(batch: &RecordBatch, key: &[String]) -> DfResult<Vec<Option<String>>> {
    if key.is_empty() {
        return Ok(vec![None; batch.num_rows()]);
    }
    let options = datafusion::arrow::util::display::FormatOptions::default();
    let mut formatters = Vec::with_capacity(key.len());
    for k in key {
        let column = batch.column(batch.schema().index_of(k)?);
        formatters.push(datafusion::arrow::util::display::ArrayFormatter::try_new(
            column.as_ref(),
            &options,
        )?);
    }
    Ok((0..batch.num_rows())
        .map(|r| {
            let parts: Vec<String> = formatters.iter().map(|f| f.value(r).to_string()).collect();
            Some(parts.join(","))
        })
        .collect())
}

fn send(
    producer: &ThreadedProducer<DefaultProducerContext>,
    topic: &str,
    line: &[u8],
    key: Option<&str>,
) -> DfResult<()> {
    let mut record = BaseRecord::<str, [u8]>::to(topic).payload(line);
    if let Some(key) = key {
        record = record.key(key);
    }
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((
                rdkafka::error::KafkaError::MessageProduction(
                    rdkafka::types::RDKafkaErrorCode::QueueFull,
                ),
                r,
            )) => {
                record = r;
                producer.poll(Duration::from_millis(10));
            }
            Err((e, _)) => return Err(kafka_err(e)),
        }
    }
}

/// Names of the metadata columns (for documentation and tests).
pub fn metadata_columns() -> &'static [&'static str] {
    &META_COLUMNS
}

/// Make sure `topic` is compacted, creating it so (broker-default partition
/// count and replication) when missing. The error names the topic and its
/// policy when it exists with another one.
pub async fn ensure_keyed_topic(brokers: &str, topic: &str) -> Result<(), String> {
    use rdkafka::admin::{
        AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication,
    };
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        // An admin client is a producer to librdkafka, which would ask
        // the broker to create topics it looks up.
        .set("allow.auto.create.topics", "false")
        .set("log_level", "3")
        .create()
        .map_err(|e| format!("kafka admin client for {brokers}: {e}"))?;
    let options = AdminOptions::new().request_timeout(Some(TIMEOUT));
    let new =
        NewTopic::new(topic, -1, TopicReplication::Fixed(-1)).set("cleanup.policy", "compact");
    let created = admin
        .create_topics([&new], &options)
        .await
        .map_err(|e| format!("create keyed topic '{topic}' on {brokers}: {e}"))?;
    match created.into_iter().next() {
        Some(Ok(_)) => return Ok(()),
        Some(Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists))) => {}
        Some(Err((_, code))) => {
            return Err(format!("create keyed topic '{topic}' on {brokers}: {code}"))
        }
        None => {
            return Err(format!(
                "create keyed topic '{topic}': no answer from {brokers}"
            ))
        }
    }
    let described = admin
        .describe_configs([&ResourceSpecifier::Topic(topic)], &options)
        .await
        .map_err(|e| format!("describe topic '{topic}' on {brokers}: {e}"))?;
    let policy = described
        .into_iter()
        .next()
        .and_then(|r| r.ok())
        .and_then(|r| r.get("cleanup.policy").and_then(|e| e.value.clone()))
        .unwrap_or_else(|| "delete".to_string());
    if policy.split(',').any(|p| p.trim() == "compact") {
        return Ok(());
    }
    Err(format!(
        "topic '{topic}' exists with cleanup.policy={policy}; a keyed table needs a compacted topic \
         (create it with `basin topic create {topic} --config cleanup.policy=compact`, or name another topic)"
    ))
}
