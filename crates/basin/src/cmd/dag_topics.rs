//! The orchestrator's view of topics, over the Kafka protocol (so it works
//! against Basin or any Kafka-compatible cluster): `topic` sensors, which
//! wait until every partition holds a record at or after the end of the
//! data interval, and `on_update = ["topic.NAME"]` datasets, whose version
//! is the sum of the partitions' end offsets (it grows with every write).

use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(5);

/// A metadata client on `brokers`, made on first use and kept.
pub struct Topics {
    brokers: String,
    consumer: Mutex<Option<BaseConsumer>>,
}

impl Topics {
    pub fn new(brokers: &str) -> Topics {
        Topics {
            brokers: brokers.to_string(),
            consumer: Mutex::new(None),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&BaseConsumer) -> Result<T, String>) -> Result<T, String> {
        let mut held = self.consumer.lock().unwrap_or_else(|e| e.into_inner());
        if held.is_none() {
            let consumer = ClientConfig::new()
                .set("bootstrap.servers", &self.brokers)
                .set("client.id", "basin-flow")
                .set("log_level", "0")
                .create()
                .map_err(|e| format!("brokers {}: {e}", self.brokers))?;
            *held = Some(consumer);
        }
        f(held.as_ref().expect("made above"))
    }

    /// The partitions of `topic`; `None` if it does not exist (yet).
    fn partitions(c: &BaseConsumer, topic: &str) -> Result<Option<Vec<i32>>, String> {
        let md = c
            .fetch_metadata(Some(topic), TIMEOUT)
            .map_err(|e| format!("topic {topic}: {e}"))?;
        let Some(t) = md.topics().iter().find(|t| t.name() == topic) else {
            return Ok(None);
        };
        if t.error().is_some() || t.partitions().is_empty() {
            return Ok(None);
        }
        Ok(Some(t.partitions().iter().map(|p| p.id()).collect()))
    }

    /// The sum of `topic`'s end offsets; `None` if it does not exist.
    pub fn version(&self, topic: &str) -> Option<u64> {
        let found = self.with(|c| {
            let Some(parts) = Self::partitions(c, topic)? else {
                return Ok(None);
            };
            let mut sum = 0u64;
            for p in parts {
                let (_, high) = c
                    .fetch_watermarks(topic, p, TIMEOUT)
                    .map_err(|e| format!("topic {topic} partition {p}: {e}"))?;
                sum += high.max(0) as u64;
            }
            Ok(Some(sum))
        });
        found.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read a topic's offsets");
            None
        })
    }

    /// Whether every partition of `topic` holds a record stamped at or
    /// after `until`: what was found, or `None` while one does not.
    pub fn reached(&self, topic: &str, until: DateTime<Utc>) -> Result<Option<String>, String> {
        self.with(|c| {
            let Some(parts) = Self::partitions(c, topic)? else {
                return Ok(None);
            };
            let mut asked = TopicPartitionList::new();
            for p in &parts {
                asked
                    .add_partition_offset(topic, *p, Offset::Offset(until.timestamp_millis()))
                    .map_err(|e| e.to_string())?;
            }
            let found = c
                .offsets_for_times(asked, TIMEOUT)
                .map_err(|e| format!("topic {topic}: {e}"))?;
            let all = found
                .elements()
                .iter()
                .all(|e| matches!(e.offset(), Offset::Offset(o) if o >= 0));
            Ok(all.then(|| {
                format!(
                    "{topic}: all {} partition(s) have records at or after {}",
                    parts.len(),
                    until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                )
            }))
        })
    }
}
