//! Exactly-once into a topic, with Kafka transactions. A job writing to a
//! topic has one transactional producer (`transactional.id` = the job's
//! name, so a restarted job fences its predecessor and aborts what it left
//! open), shared by the job's sink tasks. Each checkpoint is one
//! transaction: at a barrier the sink tasks flush and wait; once the
//! checkpoint's manifest is on disk the coordinator adds the source
//! offsets, tagged with the checkpoint id, to the transaction (one
//! consumer group per source stage) and commits it, then the next one
//! begins. On restart the committed offsets' tag says which checkpoint's
//! output is in the topic, and the job resumes from exactly that one.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

use crate::checkpoint::Manifest;
use crate::error::{Result, StreamError};

const TIMEOUT: Duration = Duration::from_secs(30);

/// The transactional producer of one job.
pub struct TxnTopic {
    producer: ThreadedProducer<DefaultProducerContext>,
    brokers: String,
    job: String,
    committed: Mutex<u64>,
    progress: Condvar,
    failed: AtomicBool,
}

impl std::fmt::Debug for TxnTopic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TxnTopic({})", self.job)
    }
}

impl TxnTopic {
    /// Fence earlier instances of `job`, abort what they left open, and
    /// begin the first transaction.
    pub fn open(brokers: &str, job: &str) -> Result<TxnTopic> {
        let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("transactional.id", format!("basin-{job}"))
            .set("transaction.timeout.ms", "120000")
            .set("linger.ms", "5")
            .set("compression.type", "lz4")
            .set("log_level", "3")
            .create()?;
        producer.init_transactions(TIMEOUT)?;
        producer.begin_transaction()?;
        Ok(TxnTopic {
            producer,
            brokers: brokers.to_string(),
            job: job.to_string(),
            committed: Mutex::new(0),
            progress: Condvar::new(),
            failed: AtomicBool::new(false),
        })
    }

    pub fn send(&self, topic: &str, payload: &[u8], key: Option<&str>) -> Result<()> {
        self.send_to(topic, None, payload, key)
    }

    /// Send into partition `partition` (by key hash when `None`).
    pub fn send_to(
        &self,
        topic: &str,
        partition: Option<i32>,
        payload: &[u8],
        key: Option<&str>,
    ) -> Result<()> {
        let mut record = BaseRecord::<str, [u8]>::to(topic).payload(payload);
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(p) = partition {
            record = record.partition(p);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull,
                    ),
                    r,
                )) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
    }

    pub fn flush(&self) -> Result<()> {
        Ok(self.producer.flush(TIMEOUT)?)
    }

    fn group(&self, stage: &str) -> String {
        format!("basin-{}-s{stage}", self.job)
    }

    /// Commit checkpoint `manifest`'s transaction with its source offsets,
    /// then begin the next one and let the sink tasks go on.
    pub fn commit(&self, manifest: &Manifest, topics: &HashMap<String, String>) -> Result<()> {
        let outcome = self.commit_inner(manifest, topics);
        match &outcome {
            Ok(()) => *self.committed.lock().expect("lock") = manifest.id,
            Err(_) => self.failed.store(true, Ordering::SeqCst),
        }
        self.progress.notify_all();
        outcome
    }

    fn commit_inner(&self, manifest: &Manifest, topics: &HashMap<String, String>) -> Result<()> {
        for (stage, offsets) in by_stage(&manifest.offsets) {
            let Some(topic) = topics.get(&stage) else {
                continue;
            };
            let mut list = TopicPartitionList::new();
            for (partition, offset) in offsets {
                list.add_partition_offset(topic, partition, Offset::Offset(offset))?;
                list.find_partition(topic, partition)
                    .expect("added")
                    .set_metadata(manifest.id.to_string());
            }
            let consumer = self.consumer(&stage)?;
            let metadata = consumer
                .group_metadata()
                .ok_or_else(|| StreamError::Kafka("no consumer group metadata".into()))?;
            self.producer
                .send_offsets_to_transaction(&list, &metadata, TIMEOUT)?;
        }
        self.producer.commit_transaction(TIMEOUT)?;
        self.producer.begin_transaction()?;
        Ok(())
    }

    fn consumer(&self, stage: &str) -> Result<BaseConsumer> {
        Ok(ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", self.group(stage))
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .set("log_level", "3")
            .create()?)
    }

    /// Block a sink task until checkpoint `id` is committed.
    pub fn wait_committed(&self, id: u64) -> Result<()> {
        let mut committed = self.committed.lock().expect("lock");
        while *committed < id {
            if self.failed.load(Ordering::SeqCst) {
                return Err(StreamError::Task(
                    "the checkpoint's transaction failed".into(),
                ));
            }
            committed = self
                .progress
                .wait_timeout(committed, Duration::from_millis(200))
                .expect("lock")
                .0;
        }
        Ok(())
    }

    /// Wake waiting sink tasks: the job is failing.
    pub fn fail(&self) {
        self.failed.store(true, Ordering::SeqCst);
        self.progress.notify_all();
    }

    /// The checkpoint whose transaction committed last, from the offsets'
    /// tag (`None` when no transaction of this job ever committed).
    pub fn last_committed(
        &self,
        manifest: &Manifest,
        topics: &HashMap<String, String>,
    ) -> Result<Option<u64>> {
        for (stage, offsets) in by_stage(&manifest.offsets) {
            let Some(topic) = topics.get(&stage) else {
                continue;
            };
            let mut list = TopicPartitionList::new();
            for partition in offsets.keys() {
                list.add_partition(topic, *partition);
            }
            let committed = self.consumer(&stage)?.committed_offsets(list, TIMEOUT)?;
            let ids: Vec<u64> = committed
                .elements()
                .iter()
                .filter_map(|e| e.metadata().parse().ok())
                .collect();
            return Ok(ids.into_iter().max());
        }
        Ok(None)
    }
}

/// `stage:partition` offsets grouped by stage.
fn by_stage(offsets: &BTreeMap<String, i64>) -> BTreeMap<String, BTreeMap<i32, i64>> {
    let mut out: BTreeMap<String, BTreeMap<i32, i64>> = BTreeMap::new();
    for (key, offset) in offsets {
        let Some((stage, partition)) = key.split_once(':') else {
            continue;
        };
        if let Ok(p) = partition.parse() {
            out.entry(stage.to_string()).or_default().insert(p, *offset);
        }
    }
    out
}
