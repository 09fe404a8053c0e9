//! End-to-end latency: one producer sends records at a fixed rate, each
//! stamped with its send time, while a consumer in the same process reads
//! them; latency is receive time minus send time on one monotonic clock.
//!
//! The producer uses linger.ms=0 (send each record at once); the consumer
//! uses the configured fetch.wait.max.ms, so a broker that does not answer a
//! waiting fetch as soon as data arrives shows up here.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use rdkafka::consumer::Consumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Message, Offset};
use serde_json::{json, Value};

use crate::client::{producer_config, BenchContext};
use crate::consume::assigned_consumer;
use crate::produce::payload;
use crate::Args;

/// Bytes at the start of each value that carry the send time (µs).
pub const STAMP_LEN: usize = 8;

/// How long the consumer gets to warm up before the first send.
const WARM_UP: Duration = Duration::from_millis(1000);

/// How long the consumer waits for more records after the producer is done.
const GRACE: Duration = Duration::from_secs(3);

/// Outcome of a latency run.
#[derive(Debug, Clone)]
pub struct Latency {
    /// Send rate asked for.
    pub rate: u64,
    /// Records sent.
    pub sent: u64,
    /// Producer delivery failures.
    pub failed: u64,
    /// Latencies in ms of the records received, sorted.
    pub samples: Vec<f64>,
    /// Rate actually achieved by the sender.
    pub achieved_rate: f64,
}

/// Nearest-rank percentile of sorted samples.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

impl Latency {
    /// The JSON fields of this measurement.
    pub fn to_json(&self) -> Value {
        let s = &self.samples;
        let mean = if s.is_empty() {
            None
        } else {
            Some(s.iter().sum::<f64>() / s.len() as f64)
        };
        json!({
            "rate": self.rate,
            "achieved_rate": self.achieved_rate,
            "sent": self.sent,
            "records": s.len(),
            "errors": self.failed,
            "complete": s.len() as u64 >= self.sent && self.failed == 0,
            "p50_ms": percentile(s, 50.0),
            "p99_ms": percentile(s, 99.0),
            "p999_ms": percentile(s, 99.9),
            "max_ms": s.last(),
            "mean_ms": mean,
        })
    }
}

/// Run the latency test on `topic`.
pub fn run(args: &Args, topic: &str) -> Result<Latency> {
    let clock = Instant::now();
    let total = (args.e2e_rate as f64 * args.e2e_seconds).round() as u64;
    let done = Arc::new(AtomicBool::new(false));

    let consumer = assigned_consumer(args, topic, Offset::Beginning)?;
    let reader_done = done.clone();
    let deadline = Duration::from_secs_f64(args.e2e_seconds) + WARM_UP + args.timeout();
    let reader = std::thread::spawn(move || {
        let mut samples = Vec::with_capacity(total as usize);
        let mut last_record = Instant::now();
        while (samples.len() as u64) < total && clock.elapsed() < deadline {
            // Once the producer has flushed, stragglers get a grace period.
            if reader_done.load(Ordering::Relaxed) && last_record.elapsed() > GRACE {
                break;
            }
            match consumer.poll(Duration::from_millis(50)) {
                Some(Ok(m)) => {
                    last_record = Instant::now();
                    let now = clock.elapsed().as_micros() as u64;
                    if let Some(stamp) = m.payload().and_then(|p| p.get(..STAMP_LEN)) {
                        let mut b = [0u8; STAMP_LEN];
                        b.copy_from_slice(stamp);
                        let sent = u64::from_le_bytes(b);
                        samples.push(now.saturating_sub(sent) as f64 / 1e3);
                    }
                }
                Some(Err(e)) => eprintln!("kafka-bench: e2e consumer error: {e}"),
                None => {}
            }
        }
        if let Err(e) = consumer.unassign() {
            eprintln!("kafka-bench: warning: unassign failed: {e}");
        }
        samples
    });

    let ctx = BenchContext::default();
    let producer: BaseProducer<BenchContext> =
        producer_config(&args.brokers, args.acks.config_value(), 0, args.batch_size)
            .create_with_context(ctx.clone())
            .context("cannot create producer")?;
    producer
        .client()
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .context("producer cannot fetch metadata")?;
    std::thread::sleep(WARM_UP);

    let mut value = payload(args.record_size);
    let interval = Duration::from_secs_f64(1.0 / args.e2e_rate as f64);
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < total {
        let due = start + interval.mul_f64(sent as f64);
        loop {
            let now = Instant::now();
            if now >= due {
                break;
            }
            producer.poll(due - now);
        }
        let stamp = clock.elapsed().as_micros() as u64;
        value[..STAMP_LEN].copy_from_slice(&stamp.to_le_bytes());
        let record = BaseRecord::to(topic)
            .payload(&value[..])
            .partition((sent % args.partitions as u64) as i32);
        match producer.send::<(), [u8]>(record) {
            Ok(()) => sent += 1,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                producer.poll(Duration::from_millis(1));
            }
            Err((e, _)) => return Err(e).context("send failed"),
        }
        producer.poll(Duration::ZERO);
    }
    let achieved_rate = sent as f64 / start.elapsed().as_secs_f64();
    if let Err(e) = producer.flush(args.timeout()) {
        eprintln!("kafka-bench: e2e flush did not finish: {e}");
    }
    done.store(true, Ordering::Relaxed);
    let mut samples = reader
        .join()
        .map_err(|_| anyhow!("e2e consumer thread panicked"))?;
    samples.sort_by(f64::total_cmp);
    Ok(Latency {
        rate: args.e2e_rate,
        sent,
        failed: ctx.deliveries.failed(),
        samples,
        achieved_rate,
    })
}
