//! Shared rdkafka setup for the client commands (`topic`, `produce`,
//! `consume`): the `--brokers` address, the connect timeout, a client context
//! that routes librdkafka's logs into `tracing` and remembers its last error,
//! and metadata look-ups that turn failures into clear messages.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use rdkafka::client::Client;
use rdkafka::config::{ClientConfig, FromClientConfigAndContext, RDKafkaLogLevel};
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::DeliveryResult;
use rdkafka::metadata::{Metadata, MetadataTopic};
use rdkafka::producer::ProducerContext;
use rdkafka::ClientContext;

/// Where the Kafka-speaking commands connect, shared by every subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct ClientArgs {
    /// Kafka bootstrap address(es) of a Basin (or any Kafka) broker, comma separated.
    #[arg(
        long,
        global = true,
        env = "BASIN_BROKERS",
        default_value = "127.0.0.1:9092"
    )]
    pub brokers: String,
    /// How long to wait for the broker to answer before giving up.
    #[arg(
        long,
        global = true,
        env = "BASIN_CONNECT_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub connect_timeout_ms: u64,
}

impl ClientArgs {
    /// The connect / request timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    /// A client configuration pointing at `--brokers`.
    pub fn config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("client.id", "basin-cli");
        config
    }

    /// Create any rdkafka client from `config` with a fresh [`CliContext`].
    pub fn create<T>(&self, config: &ClientConfig) -> Result<T>
    where
        T: FromClientConfigAndContext<CliContext>,
    {
        T::from_config_and_context(config, CliContext::default())
            .map_err(|e| anyhow!("cannot create Kafka client for {}: {e}", self.brokers))
    }

    /// Fetch cluster (or one topic's) metadata, naming the address on failure.
    pub fn metadata(&self, client: &Client<CliContext>, topic: Option<&str>) -> Result<Metadata> {
        client
            .fetch_metadata(topic, self.timeout())
            .map_err(|e| self.request_error(client.context(), "metadata", &e))
    }

    /// Metadata of one existing topic, or an "unknown topic" error. Retries
    /// while the topic is still being created (no leader yet).
    pub fn topic_metadata(&self, client: &Client<CliContext>, topic: &str) -> Result<TopicInfo> {
        let deadline = Instant::now() + self.timeout();
        loop {
            match self.topic_metadata_once(client, topic)? {
                Ok(info) => return Ok(info),
                Err(code) if is_transient(code) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(code) => return Err(topic_error(topic, code)),
            }
        }
    }

    /// One metadata request: the topic, or its error code.
    fn topic_metadata_once(
        &self,
        client: &Client<CliContext>,
        topic: &str,
    ) -> Result<Result<TopicInfo, Option<RDKafkaErrorCode>>> {
        let metadata = self.metadata(client, Some(topic))?;
        let found = metadata.topics().iter().find(|t| t.name() == topic);
        Ok(match found {
            Some(t) if t.error().is_none() && !t.partitions().is_empty() => Ok(TopicInfo::from(t)),
            Some(t) => Err(t.error().map(RDKafkaErrorCode::from)),
            None => Err(Some(RDKafkaErrorCode::UnknownTopicOrPartition)),
        })
    }

    /// Turn a failed request into an error that names the broker address.
    pub fn request_error(
        &self,
        context: &CliContext,
        what: &str,
        err: &KafkaError,
    ) -> anyhow::Error {
        let unreachable = matches!(
            err.rdkafka_error_code(),
            Some(
                RDKafkaErrorCode::BrokerTransportFailure
                    | RDKafkaErrorCode::OperationTimedOut
                    | RDKafkaErrorCode::AllBrokersDown
                    | RDKafkaErrorCode::RequestTimedOut
            )
        );
        let detail = context
            .last_error()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default();
        if unreachable {
            anyhow!(
                "cannot reach Kafka broker at {} within {} ms: {err}{detail}",
                self.brokers,
                self.connect_timeout_ms
            )
        } else {
            anyhow!("{what} request to {} failed: {err}{detail}", self.brokers)
        }
    }
}

/// The parts of a topic's metadata the commands use.
#[derive(Debug, Clone)]
pub struct TopicInfo {
    pub name: String,
    /// `(partition id, leader node id)`, sorted by partition.
    pub partitions: Vec<(i32, i32)>,
}

impl TopicInfo {
    /// How many partitions the topic has.
    pub fn partition_count(&self) -> i32 {
        self.partitions.len() as i32
    }

    /// The partition ids, ascending.
    pub fn partition_ids(&self) -> impl Iterator<Item = i32> + '_ {
        self.partitions.iter().map(|(id, _)| *id)
    }
}

impl From<&MetadataTopic> for TopicInfo {
    fn from(topic: &MetadataTopic) -> TopicInfo {
        let mut partitions: Vec<(i32, i32)> = topic
            .partitions()
            .iter()
            .map(|p| (p.id(), p.leader()))
            .collect();
        partitions.sort_unstable();
        TopicInfo {
            name: topic.name().to_string(),
            partitions,
        }
    }
}

/// Errors that clear up by themselves while a topic is being created.
fn is_transient(code: Option<RDKafkaErrorCode>) -> bool {
    matches!(
        code,
        None | Some(RDKafkaErrorCode::LeaderNotAvailable)
            | Some(RDKafkaErrorCode::NotLeaderForPartition)
    )
}

/// A topic-level metadata error as a readable message.
fn topic_error(topic: &str, code: Option<RDKafkaErrorCode>) -> anyhow::Error {
    match code {
        Some(RDKafkaErrorCode::UnknownTopicOrPartition) | Some(RDKafkaErrorCode::UnknownTopic) => {
            anyhow!("unknown topic {topic:?}")
        }
        Some(code) => anyhow!("topic {topic:?} is not available: {code}"),
        None => anyhow!("topic {topic:?} is not available"),
    }
}

/// Parse `key=value` (used by `--config` and `--log-config`).
pub fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

/// rdkafka client context for the CLI: logs go to `tracing` (target
/// `librdkafka`), the last client error is kept for error messages, and
/// producer deliveries are counted.
#[derive(Debug, Default)]
pub struct CliContext {
    last_error: Mutex<Option<String>>,
    /// Delivery outcomes when used by a producer.
    pub delivery: DeliveryStats,
}

impl CliContext {
    /// The last error librdkafka reported, if any.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }
}

impl ClientContext for CliContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => tracing::error!(target: "librdkafka", "{fac} {message}"),
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", "{fac} {message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", "{fac} {message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", "{fac} {message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(target: "librdkafka", "client error: {error}: {reason}");
        // "N/N brokers are down" follows the telling error (e.g. connection refused).
        let summary = error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown);
        if let Ok(mut last) = self.last_error.lock() {
            if !(summary && last.is_some()) {
                *last = Some(reason.to_string());
            }
        }
    }
}

impl ConsumerContext for CliContext {}

impl ProducerContext for CliContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.delivery.record_ok(),
            Err((err, _)) => self.delivery.record_err(err),
        }
    }
}

/// Counts of delivered and failed records, plus the first failure.
#[derive(Debug, Default)]
pub struct DeliveryStats {
    delivered: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl DeliveryStats {
    fn record_ok(&self) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
    }

    fn record_err(&self, err: &KafkaError) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut first) = self.first_error.lock() {
            first.get_or_insert_with(|| err.to_string());
        }
    }

    /// Records acknowledged so far.
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// Records that failed so far.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// The first delivery error seen.
    pub fn first_error(&self) -> Option<String> {
        self.first_error.lock().ok().and_then(|e| e.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_value_parsing() {
        assert_eq!(
            parse_key_value("retention.ms=1000"),
            Ok(("retention.ms".into(), "1000".into()))
        );
        assert_eq!(
            parse_key_value("flush.policy=interval:5"),
            Ok(("flush.policy".into(), "interval:5".into()))
        );
        assert_eq!(parse_key_value("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert!(parse_key_value("novalue").is_err());
        assert!(parse_key_value("=x").is_err());
    }
}
