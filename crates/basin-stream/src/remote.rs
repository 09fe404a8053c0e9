//! The topics a pipeline run by a group of processes ([`crate::group`])
//! talks through:
//! - repartition topics carry rows from a stage to the keyed stage after
//!   it: a writer task routes each row by a hash of the consumer's key to
//!   one partition (so every row of a key reaches the one task owning that
//!   key's state), as an Arrow IPC stream record (`D`); at each checkpoint
//!   it also writes its watermark to every partition (`W`, writer id and
//!   milliseconds). A reader's watermark is the lowest over all writers,
//!   once each has reported. Writers write in their job's transaction, and
//!   readers read committed records only, so a repartition topic holds
//!   each row once whatever was killed;
//! - the state topic holds each task's last checkpoint (manifest and state
//!   files) in one partition per task, written in the same transaction as
//!   the task's output and offsets: the process that takes a task over
//!   restores exactly the checkpoint whose output was committed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::physical_expr::PhysicalExpr;
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{CheckpointStore, Manifest};
use crate::error::{Result, StreamError};
use crate::runtime::Router;
use crate::sink::Sink;
use crate::source::QuietConsumer;
use crate::txn::TxnTopic;

const TIMEOUT: Duration = Duration::from_secs(10);
/// Records of a repartition topic stay under this size.
const MAX_RECORD: usize = 512 * 1024;
/// State records are cut into chunks of this size.
const STATE_CHUNK: usize = 512 * 1024;
const DATA: u8 = b'D';
const WATERMARK: u8 = b'W';

/// One input of a keyed stage, read from a repartition topic.
#[derive(Debug)]
pub struct RemoteInput {
    pub brokers: String,
    pub topic: String,
    /// The schema of the rows (the upstream stage's output).
    pub schema: SchemaRef,
    /// How many tasks write into the topic (each reports a watermark).
    pub writers: usize,
}

/// Where a stage's rows go when the keyed stage after it runs elsewhere.
#[derive(Debug)]
pub struct RepartitionTarget {
    pub brokers: String,
    pub topic: String,
    /// The consumer's key, evaluated on the rows.
    pub keys: Vec<Arc<dyn PhysicalExpr>>,
    pub schema: SchemaRef,
    pub partitions: usize,
    /// This writer's id in watermark records (its task's partition).
    pub writer: i32,
}

/// A writer task's side of a repartition topic.
pub struct RepartitionSink {
    target: Arc<RepartitionTarget>,
    router: Router,
    txn: Arc<TxnTopic>,
    watermark: Option<i64>,
}

impl RepartitionSink {
    pub fn new(target: Arc<RepartitionTarget>, txn: Arc<TxnTopic>) -> Result<RepartitionSink> {
        let router = Router::new(target.keys.clone(), &target.schema)?;
        Ok(RepartitionSink {
            target,
            router,
            txn,
            watermark: None,
        })
    }

    /// Send `batch` to partition `q`, cut so each record stays small.
    fn send(&self, q: usize, batch: &RecordBatch) -> Result<()> {
        let bytes = encode_batch(batch)?;
        if bytes.len() > MAX_RECORD && batch.num_rows() > 1 {
            let half = batch.num_rows() / 2;
            self.send(q, &batch.slice(0, half))?;
            return self.send(q, &batch.slice(half, batch.num_rows() - half));
        }
        self.txn
            .send_to(&self.target.topic, Some(q as i32), &bytes, None)
    }
}

impl Sink for RepartitionSink {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        for (q, part) in self.router.split(batch.clone(), self.target.partitions)? {
            self.send(q, &part)?;
        }
        Ok(())
    }

    fn watermark(&mut self, watermark: i64) -> Result<()> {
        self.watermark = Some(watermark);
        Ok(())
    }

    /// The watermark goes out once per checkpoint, to every partition:
    /// readers see it when the transaction commits, after the rows before it.
    fn prepare(&mut self, _checkpoint: u64) -> Result<Vec<std::path::PathBuf>> {
        if let Some(w) = self.watermark {
            let mut record = vec![WATERMARK];
            record.extend_from_slice(&self.target.writer.to_le_bytes());
            record.extend_from_slice(&w.to_le_bytes());
            for q in 0..self.target.partitions {
                self.txn
                    .send_to(&self.target.topic, Some(q as i32), &record, None)?;
            }
        }
        self.txn.flush()?;
        Ok(Vec::new())
    }

    fn after_ack(&mut self, checkpoint: u64) -> Result<()> {
        self.txn.wait_committed(checkpoint)
    }

    fn internal(&self) -> bool {
        true
    }
}

fn encode_batch(batch: &RecordBatch) -> Result<Vec<u8>> {
    let mut bytes = vec![DATA];
    let mut writer = StreamWriter::try_new(&mut bytes, &batch.schema())?;
    writer.write(batch)?;
    writer.finish()?;
    drop(writer);
    Ok(bytes)
}

/// Reads one partition of a repartition topic.
pub struct RemoteReader {
    consumer: QuietConsumer,
    input: Arc<RemoteInput>,
    partition: i32,
    next: i64,
    writers: HashMap<i32, i64>,
}

impl RemoteReader {
    /// Read partition `partition` from `start` (its beginning when `None`),
    /// knowing the writers' watermarks read before `start` (a writer that
    /// restarts with nothing new to read sends none again).
    pub fn open(
        input: Arc<RemoteInput>,
        partition: i32,
        start: Option<i64>,
        writers: HashMap<i32, i64>,
    ) -> Result<RemoteReader> {
        let consumer = crate::source::consumer(&input.brokers)?;
        let mut list = TopicPartitionList::new();
        let offset = start.map_or(Offset::Beginning, Offset::Offset);
        list.add_partition_offset(&input.topic, partition, offset)?;
        consumer.assign(&list)?;
        Ok(RemoteReader {
            consumer,
            input,
            partition,
            next: start.unwrap_or(0),
            writers,
        })
    }

    /// Rows of up to `max_rows` records, waiting at most `wait` for the first.
    pub fn poll(&mut self, max_rows: usize, wait: Duration) -> Result<Option<RecordBatch>> {
        let deadline = Instant::now() + wait;
        let mut batches = Vec::new();
        let mut rows = 0;
        while rows < max_rows {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(message) = self.consumer.poll(left) else {
                break;
            };
            let m = match message {
                Ok(m) => m,
                Err(KafkaError::PartitionEOF(_)) => break,
                Err(e) => return Err(e.into()),
            };
            self.next = m.offset() + 1;
            let value = m.payload().unwrap_or_default();
            match value.split_first() {
                Some((&DATA, ipc)) => {
                    for batch in StreamReader::try_new(ipc, None)? {
                        let batch = batch?;
                        rows += batch.num_rows();
                        batches.push(batch);
                    }
                }
                Some((&WATERMARK, rest)) if rest.len() == 12 => {
                    let writer = i32::from_le_bytes(rest[..4].try_into().expect("4 bytes"));
                    let w = i64::from_le_bytes(rest[4..].try_into().expect("8 bytes"));
                    let seen = self.writers.entry(writer).or_insert(w);
                    *seen = (*seen).max(w);
                }
                _ => {
                    return Err(StreamError::Task(format!(
                        "repartition topic {}[{}] offset {}: not a Basin record",
                        self.input.topic,
                        self.partition,
                        m.offset()
                    )))
                }
            }
        }
        if batches.is_empty() {
            return Ok(None);
        }
        Ok(Some(concat_batches(&self.input.schema, &batches)?))
    }

    /// The lowest watermark over the writers, once every one has reported.
    pub fn watermark(&self) -> Option<i64> {
        if self.writers.len() < self.input.writers {
            return None;
        }
        self.writers.values().copied().min()
    }

    /// Next offset to read (what a checkpoint stores).
    pub fn offset(&self) -> i64 {
        self.next
    }

    /// The last watermark of each writer (a checkpoint stores them too).
    pub fn writers(&self) -> &HashMap<i32, i64> {
        &self.writers
    }

    pub fn partition(&self) -> i32 {
        self.partition
    }
}

/// Where one task keeps its checkpoints for whoever runs it next.
#[derive(Debug, Clone)]
pub struct StateTopic {
    pub brokers: String,
    pub topic: String,
    /// The task's own partition of the topic.
    pub partition: i32,
}

/// The head of a state record: the manifest and the files that follow.
#[derive(Serialize, Deserialize)]
struct StateHead {
    manifest: Manifest,
    files: Vec<(String, usize)>,
}

impl StateTopic {
    /// Write checkpoint `manifest` (with its state files from `store`) in
    /// the open transaction of `txn`, as chunks keyed `chunk-<i>`, each
    /// value led by the checkpoint id and the number of chunks.
    pub fn save(&self, txn: &TxnTopic, store: &CheckpointStore, manifest: &Manifest) -> Result<()> {
        let mut files = Vec::new();
        let mut body = Vec::new();
        for name in manifest.states.values() {
            let bytes = store.state_bytes(manifest.id, name)?;
            files.push((name.clone(), bytes.len()));
            body.extend_from_slice(&bytes);
        }
        let head = serde_json::to_vec(&StateHead {
            manifest: manifest.clone(),
            files,
        })
        .expect("a manifest serializes");
        let mut record = (head.len() as u32).to_le_bytes().to_vec();
        record.extend_from_slice(&head);
        record.extend_from_slice(&body);
        let chunks: Vec<&[u8]> = record.chunks(STATE_CHUNK).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            // Keys repeat from checkpoint to checkpoint, so compaction
            // keeps only the newest chunks.
            let mut value = manifest.id.to_le_bytes().to_vec();
            value.extend_from_slice(&(chunks.len() as u32).to_le_bytes());
            value.extend_from_slice(chunk);
            let key = format!("chunk-{i}");
            txn.send_to(&self.topic, Some(self.partition), &value, Some(&key))?;
        }
        Ok(())
    }

    /// The last committed checkpoint, written into `store` in place of
    /// what it held (a local checkpoint may be one whose transaction was
    /// fenced, with the id another process committed since); its id
    /// (`None` when the task never committed one).
    pub fn restore(&self, store: &CheckpointStore) -> Result<Option<u64>> {
        store.clear()?;
        let Some((id, record)) = self.last_record()? else {
            return Ok(None);
        };
        let bad = |reason: &str| StreamError::Checkpoint {
            path: format!("{}[{}]", self.topic, self.partition).into(),
            reason: format!("checkpoint {id}: {reason}"),
        };
        let head_len = u32::from_le_bytes(
            record
                .get(..4)
                .ok_or_else(|| bad("truncated"))?
                .try_into()
                .expect("4 bytes"),
        ) as usize;
        let head: StateHead = serde_json::from_slice(record.get(4..4 + head_len).unwrap_or(&[]))
            .map_err(|e| bad(&e.to_string()))?;
        let mut at = 4 + head_len;
        for (name, len) in &head.files {
            if name.contains('/') || name.contains("..") {
                return Err(bad(&format!("bad state file name {name:?}")));
            }
            let bytes = record.get(at..at + len).ok_or_else(|| bad("truncated"))?;
            store.put_state(id, name, bytes)?;
            at += len;
        }
        store.complete(&head.manifest)?;
        Ok(Some(id))
    }

    /// The newest complete record of the partition: the chunks of the
    /// highest checkpoint id that has all of them.
    fn last_record(&self) -> Result<Option<(u64, Vec<u8>)>> {
        let consumer = crate::source::consumer(&self.brokers)?;
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(&self.topic, self.partition, Offset::Beginning)?;
        consumer.assign(&list)?;
        let mut chunks: BTreeMap<u64, (usize, BTreeMap<usize, Vec<u8>>)> = BTreeMap::new();
        let deadline = Instant::now() + TIMEOUT * 3;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let m = match consumer.poll(left) {
                None => {
                    return Err(StreamError::Kafka(format!(
                        "reading state topic {}[{}]: no end within {:?}",
                        self.topic,
                        self.partition,
                        TIMEOUT * 3
                    )))
                }
                Some(Err(KafkaError::PartitionEOF(_))) => break,
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(m)) => m,
            };
            let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
            let value = m.payload().unwrap_or_default();
            let (Some(i), Some(head)) = (
                key.strip_prefix("chunk-")
                    .and_then(|i| i.parse::<usize>().ok()),
                value.get(..12),
            ) else {
                continue;
            };
            let id = u64::from_le_bytes(head[..8].try_into().expect("8 bytes"));
            let n = u32::from_le_bytes(head[8..].try_into().expect("4 bytes")) as usize;
            let entry = chunks.entry(id).or_insert((n, BTreeMap::new()));
            entry.1.insert(i, value[12..].to_vec());
        }
        let complete = chunks
            .into_iter()
            .rev()
            .find(|(_, (n, parts))| parts.len() == *n);
        Ok(complete.map(|(id, (_, parts))| (id, parts.into_values().flatten().collect())))
    }
}
