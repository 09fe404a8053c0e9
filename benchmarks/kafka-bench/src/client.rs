//! librdkafka plumbing shared by the tests: a client context that counts
//! deliveries and forwards librdkafka warnings to stderr, and base configs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::ProducerContext;

/// Delivery outcomes of one producer.
#[derive(Debug, Default)]
pub struct Deliveries {
    /// Records the broker acknowledged.
    pub ok: AtomicU64,
    /// Records that failed for good.
    pub failed: AtomicU64,
    /// The first delivery error seen.
    pub first_error: Mutex<Option<String>>,
}

impl Deliveries {
    /// Acknowledged records so far.
    pub fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    /// Failed records so far.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// The first error message, if any.
    pub fn first_error(&self) -> Option<String> {
        self.first_error.lock().ok().and_then(|e| e.clone())
    }
}

/// Context for every producer and consumer of the benchmark.
#[derive(Clone, Default)]
pub struct BenchContext {
    /// Where producer deliveries are counted.
    pub deliveries: Arc<Deliveries>,
}

impl ClientContext for BenchContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        let debugging = EXTRA
            .get()
            .is_some_and(|extra| extra.iter().any(|(k, _)| k == "debug"));
        if debugging || (level as i32) <= (RDKafkaLogLevel::Warning as i32) {
            eprintln!("kafka-bench: librdkafka {level:?} {fac}: {log_message}");
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        eprintln!("kafka-bench: librdkafka error: {error}: {reason}");
    }
}

impl ProducerContext for BenchContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.deliveries.ok.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, _)) => {
                self.deliveries.failed.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut first) = self.deliveries.first_error.lock() {
                    first.get_or_insert_with(|| e.to_string());
                }
            }
        }
    }
}

impl ConsumerContext for BenchContext {}

/// Extra librdkafka properties from `-X KEY=VALUE`, applied to every client.
static EXTRA: OnceLock<Vec<(String, String)>> = OnceLock::new();

/// Remember the `-X` properties (call once, before creating clients).
pub fn set_extra_config(extra: Vec<(String, String)>) {
    let _ = EXTRA.set(extra);
}

/// Apply the `-X` properties to `config`.
pub fn with_extra(mut config: ClientConfig) -> ClientConfig {
    for (k, v) in EXTRA.get().map(Vec::as_slice).unwrap_or_default() {
        config.set(k, v);
    }
    config
}

/// Producer settings common to all tests.
pub fn producer_config(brokers: &str, acks: &str, linger_ms: u64, batch_size: u64) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        .set("acks", acks)
        .set("linger.ms", linger_ms.to_string())
        .set("batch.size", batch_size.to_string())
        .set("compression.type", "none")
        .set("enable.idempotence", "false")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("message.timeout.ms", "60000");
    with_extra(c)
}

/// Consumer settings common to all tests (manual assignment, no commits;
/// librdkafka needs a `group.id` even so).
///
/// `fetch.queue.backoff.ms=1`: librdkafka (since 2.4) waits 1000 ms before
/// the next fetch of a partition whose local queue went over
/// `queued.min.messages` (100k); with small records that client-side pause,
/// not the broker, would set the consumer's throughput.
pub fn consumer_config(brokers: &str, group: &str, fetch_wait_ms: u64) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", fetch_wait_ms.to_string())
        .set("fetch.queue.backoff.ms", "1");
    with_extra(c)
}
