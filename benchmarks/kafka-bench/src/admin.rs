//! Topic creation and deletion through the Kafka admin API.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::types::RDKafkaErrorCode;

/// How long to wait for a new topic's partitions to get leaders.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// An admin client for one cluster.
pub struct Admin {
    client: AdminClient<DefaultClientContext>,
}

impl Admin {
    /// Connect (lazily) to `brokers`.
    pub fn new(brokers: &str) -> Result<Self> {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", brokers);
        let client = crate::client::with_extra(config)
            .create()
            .context("cannot create admin client")?;
        Ok(Self { client })
    }

    fn options() -> AdminOptions {
        AdminOptions::new()
            .request_timeout(Some(Duration::from_secs(30)))
            .operation_timeout(Some(Duration::from_secs(30)))
    }

    /// Create `topic` with `partitions` partitions and replication factor 1,
    /// then wait until metadata shows a leader for every partition.
    pub async fn create_topic(&self, topic: &str, partitions: i32) -> Result<()> {
        let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
        let results = self
            .client
            .create_topics([&new], &Self::options())
            .await
            .with_context(|| format!("CreateTopics {topic} failed"))?;
        for result in results {
            if let Err((name, code)) = result {
                if code != RDKafkaErrorCode::TopicAlreadyExists {
                    bail!("cannot create topic {name}: {code}");
                }
            }
        }
        self.wait_ready(topic, partitions)
    }

    fn wait_ready(&self, topic: &str, partitions: i32) -> Result<()> {
        let start = Instant::now();
        let mut last = String::from("no metadata yet");
        while start.elapsed() < READY_TIMEOUT {
            match self
                .client
                .inner()
                .fetch_metadata(Some(topic), Duration::from_secs(5))
            {
                Ok(md) => {
                    let ready = md.topics().iter().any(|t| {
                        t.name() == topic
                            && t.error().is_none()
                            && t.partitions().len() == partitions as usize
                            && t.partitions()
                                .iter()
                                .all(|p| p.leader() >= 0 && p.error().is_none())
                    });
                    if ready {
                        return Ok(());
                    }
                    last = "partitions without leader".into();
                }
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("topic {topic} not ready after {READY_TIMEOUT:?}: {last}")
    }

    /// Delete `topic`.
    pub async fn delete_topic(&self, topic: &str) -> Result<()> {
        let results = self
            .client
            .delete_topics(&[topic], &Self::options())
            .await
            .with_context(|| format!("DeleteTopics {topic} failed"))?;
        for result in results {
            if let Err((name, code)) = result {
                bail!("cannot delete topic {name}: {code}");
            }
        }
        Ok(())
    }
}
