//! Keyed tables over HTTP. A keyed table is a compacted topic whose
//! records carry a row per key (`OPTIONS ('key' ..., 'compact' 'true')` on a
//! pipeline or SQL sink). The first lookup of a table starts a view: a
//! thread that reads every partition from the beginning with
//! `isolation.level=read_committed` (so only rows of committed checkpoints
//! show) and keeps the latest value per key, a tombstone deleting its key.
//! Lookups wait until the view has read to the end of every partition once,
//! then answer from memory while the view keeps following the topic.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;
use tokio::sync::watch;

use crate::error::ApiError;

const TIMEOUT: Duration = Duration::from_secs(10);
/// How long a lookup waits for a new view to read its topic once.
const LOAD_WAIT: Duration = Duration::from_secs(30);

/// The latest record of one key.
#[derive(Debug, Clone)]
pub struct Entry {
    pub value: Vec<u8>,
    pub partition: i32,
    pub offset: i64,
    pub timestamp: Option<i64>,
}

impl Entry {
    /// The row as JSON: the value parsed, or as a string when it is not
    /// JSON (a CSV-format table).
    pub fn to_json(&self, key: &str) -> Value {
        let row = serde_json::from_slice(&self.value)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&self.value).into()));
        serde_json::json!({
            "key": key,
            "row": row,
            "partition": self.partition,
            "offset": self.offset,
            "timestamp": self.timestamp,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Load {
    Loading,
    Ready,
    Failed(String),
}

/// One keyed table followed in memory.
pub struct View {
    rows: RwLock<HashMap<String, Entry>>,
    load: watch::Receiver<Load>,
    stop: Arc<AtomicBool>,
}

impl View {
    /// The latest row of `key`.
    pub fn get(&self, key: &str) -> Option<Entry> {
        self.rows.read().expect("lock").get(key).cloned()
    }

    /// How many keys the table holds.
    pub fn len(&self) -> usize {
        self.rows.read().expect("lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Up to `limit` rows in key order.
    pub fn first(&self, limit: usize) -> Vec<(String, Entry)> {
        let rows = self.rows.read().expect("lock");
        let sorted: BTreeMap<&String, &Entry> = rows.iter().collect();
        sorted
            .into_iter()
            .take(limit)
            .map(|(k, e)| (k.clone(), e.clone()))
            .collect()
    }

    fn failed(&self) -> bool {
        matches!(*self.load.borrow(), Load::Failed(_))
    }

    /// Wait until the view has read its topic to the end once.
    async fn loaded(&self, table: &str) -> Result<(), ApiError> {
        let mut load = self.load.clone();
        let waited = tokio::time::timeout(LOAD_WAIT, load.wait_for(|l| *l != Load::Loading)).await;
        let state = match waited {
            Err(_) => {
                return Err(ApiError::Unavailable(format!(
                    "keyed table '{table}' is still loading after {} s; try again",
                    LOAD_WAIT.as_secs()
                )))
            }
            Ok(Err(_)) => Load::Failed("the view stopped".into()),
            Ok(Ok(state)) => state.clone(),
        };
        match state {
            Load::Failed(e) => Err(ApiError::Kafka(format!("keyed table '{table}': {e}"))),
            _ => Ok(()),
        }
    }
}

/// Every keyed table viewed so far, by topic name.
pub struct KeyedViews {
    brokers: String,
    views: Mutex<HashMap<String, Arc<View>>>,
}

impl KeyedViews {
    pub fn new(brokers: &str) -> KeyedViews {
        KeyedViews {
            brokers: brokers.to_string(),
            views: Mutex::new(HashMap::new()),
        }
    }

    /// The loaded view of `table`, started on first use.
    pub async fn view(&self, table: &str) -> Result<Arc<View>, ApiError> {
        let existing = self.views.lock().expect("lock").get(table).cloned();
        let view = match existing {
            Some(v) if !v.failed() => v,
            _ => {
                check_keyed(&self.brokers, table).await?;
                let mut views = self.views.lock().expect("lock");
                let current = views.get(table).filter(|v| !v.failed()).cloned();
                let view = current.unwrap_or_else(|| start(&self.brokers, table));
                views.insert(table.to_string(), view.clone());
                view
            }
        };
        view.loaded(table).await?;
        Ok(view)
    }
}

impl Drop for KeyedViews {
    fn drop(&mut self) {
        for view in self.views.lock().expect("lock").values() {
            view.stop.store(true, Ordering::Relaxed);
        }
    }
}

/// Refuse a topic that does not exist or is not compacted.
async fn check_keyed(brokers: &str, table: &str) -> Result<(), ApiError> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        // An admin client is a producer to librdkafka, which would ask
        // the broker to create topics it looks up.
        .set("allow.auto.create.topics", "false")
        .set("log_level", "3")
        .create()
        .map_err(|e| ApiError::Kafka(format!("admin client for {brokers}: {e}")))?;
    let options = AdminOptions::new().request_timeout(Some(TIMEOUT));
    let described = admin
        .describe_configs([&ResourceSpecifier::Topic(table)], &options)
        .await
        .map_err(|e| ApiError::Kafka(format!("describe topic '{table}': {e}")))?;
    // librdkafka's Rust binding drops a resource's error code; an unknown
    // topic comes back as a resource without entries.
    let config = match described.into_iter().next() {
        Some(Ok(config)) if !config.entries.is_empty() => config,
        Some(Ok(_)) | Some(Err(RDKafkaErrorCode::UnknownTopicOrPartition)) | None => {
            return Err(ApiError::NotFound(format!(
                "no keyed table '{table}': there is no topic of that name"
            )))
        }
        Some(Err(code)) => {
            return Err(ApiError::Kafka(format!("describe topic '{table}': {code}")))
        }
    };
    let policy = config
        .get("cleanup.policy")
        .and_then(|e| e.value.clone())
        .unwrap_or_else(|| "delete".into());
    if policy.split(',').any(|p| p.trim() == "compact") {
        return Ok(());
    }
    Err(ApiError::BadRequest(format!(
        "topic '{table}' is not a keyed table: its cleanup.policy is {policy}, and keyed tables \
         are compacted topics (a sink declared with OPTIONS ('key' ..., 'compact' 'true'))"
    )))
}

/// Start following `table` on a thread of its own.
fn start(brokers: &str, table: &str) -> Arc<View> {
    let (tx, rx) = watch::channel(Load::Loading);
    let view = Arc::new(View {
        rows: RwLock::new(HashMap::new()),
        load: rx,
        stop: Arc::new(AtomicBool::new(false)),
    });
    let (brokers, table, follower) = (brokers.to_string(), table.to_string(), view.clone());
    std::thread::Builder::new()
        .name(format!("keyed-{table}"))
        .spawn(move || {
            if let Err(e) = follow(&follower, &brokers, &table, &tx) {
                tracing::warn!(%table, error = %e, "keyed table view stopped");
                tx.send_replace(Load::Failed(e));
            }
        })
        .expect("spawn keyed-table view");
    view
}

fn follow(view: &View, brokers: &str, table: &str, tx: &watch::Sender<Load>) -> Result<(), String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "basin-keyed-views")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .set("fetch.wait.max.ms", "100")
        .set("log_level", "3")
        .create()
        .map_err(|e| format!("consumer for {brokers}: {e}"))?;
    let partitions = assign_all(&consumer, table)?;
    let mut at_end = HashSet::new();
    while !view.stop.load(Ordering::Relaxed) {
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Ok(message)) => apply(view, &message),
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
                if at_end.len() == partitions && *tx.borrow() == Load::Loading {
                    tx.send_replace(Load::Ready);
                }
            }
            Some(Err(e)) => tracing::debug!(%table, error = %e, "keyed table view"),
        }
    }
    Ok(())
}

/// Assign every partition of `table` from its beginning; their count.
fn assign_all(consumer: &BaseConsumer, table: &str) -> Result<usize, String> {
    let metadata = consumer
        .fetch_metadata(Some(table), TIMEOUT)
        .map_err(|e| format!("metadata of '{table}': {e}"))?;
    let ids: Vec<i32> = metadata
        .topics()
        .iter()
        .find(|t| t.name() == table && t.error().is_none())
        .map(|t| t.partitions().iter().map(|p| p.id()).collect())
        .unwrap_or_default();
    if ids.is_empty() {
        return Err(format!("topic '{table}' has no partitions"));
    }
    let mut list = TopicPartitionList::new();
    for p in &ids {
        list.add_partition_offset(table, *p, Offset::Beginning)
            .map_err(|e| e.to_string())?;
    }
    consumer.assign(&list).map_err(|e| e.to_string())?;
    Ok(ids.len())
}

/// Upsert the record's row, or delete its key on a tombstone.
fn apply(view: &View, message: &BorrowedMessage<'_>) {
    let Some(key) = message.key() else { return };
    let key = String::from_utf8_lossy(key).into_owned();
    let mut rows = view.rows.write().expect("lock");
    match message.payload() {
        None => {
            rows.remove(&key);
        }
        Some(value) => {
            rows.insert(
                key,
                Entry {
                    value: value.to_vec(),
                    partition: message.partition(),
                    offset: message.offset(),
                    timestamp: message.timestamp().to_millis(),
                },
            );
        }
    }
}
