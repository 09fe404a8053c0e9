//! Producer throughput: send records of a fixed size as fast as librdkafka
//! batches them (linger.ms / batch.size from the command line, no
//! compression), round-robin over the partitions, until every record is
//! acknowledged; from one producer, or from several in parallel threads
//! (`--producers`) that share the record count.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::{json, Value};

use crate::client::{producer_config, BenchContext};
use crate::Args;

/// Outcome of a producer run.
#[derive(Debug, Clone)]
pub struct Produced {
    /// Records handed to the client.
    pub sent: u64,
    /// Records the broker acknowledged.
    pub delivered: u64,
    /// Records that failed.
    pub failed: u64,
    /// The first delivery error.
    pub first_error: Option<String>,
    /// From the first send until the last acknowledgement.
    pub elapsed: Duration,
    /// Value bytes per record.
    pub record_size: usize,
}

impl Produced {
    /// The JSON fields of this measurement.
    pub fn to_json(&self) -> Value {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        json!({
            "records": self.delivered,
            "sent": self.sent,
            "errors": self.failed,
            "first_error": self.first_error,
            "seconds": secs,
            "records_per_sec": self.delivered as f64 / secs,
            "mb_per_sec": (self.delivered as f64 * self.record_size as f64) / secs / 1e6,
        })
    }
}

/// Bytes that do not compress, so no layer can cheat.
pub fn payload(size: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// What one producer thread sends: records `index, index + step, ...`
/// below the limit (the global numbering keeps the partitions round-robin).
#[derive(Debug, Clone, Copy)]
struct Share {
    index: u64,
    step: u64,
}

/// Produce into `topic` with `--producers` clients in parallel threads and
/// wait for every acknowledgement. The clock runs from the first send to
/// the last acknowledgement of any of them.
pub fn run(args: &Args, topic: &str) -> Result<Produced> {
    let ctx = BenchContext::default();
    let producers = (0..args.producers)
        .map(|_| connect(args, topic, &ctx))
        .collect::<Result<Vec<_>>>()?;
    let start = Instant::now();
    let step = producers.len() as u64;
    let sent = std::thread::scope(|scope| {
        let threads: Vec<_> = producers
            .iter()
            .zip(0..)
            .map(|(p, index)| {
                let share = Share { index, step };
                scope.spawn(move || send_share(p, args, topic, share, start))
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("producer thread panicked"))
            .sum::<Result<u64>>()
    })?;
    let elapsed = start.elapsed();
    Ok(Produced {
        sent,
        delivered: ctx.deliveries.ok(),
        failed: ctx.deliveries.failed(),
        first_error: ctx.deliveries.first_error(),
        elapsed,
        record_size: args.record_size,
    })
}

/// A producer that has connected and learnt the leaders of `topic`, so
/// that this is not on the clock.
fn connect(args: &Args, topic: &str, ctx: &BenchContext) -> Result<BaseProducer<BenchContext>> {
    let producer: BaseProducer<BenchContext> = producer_config(
        &args.brokers,
        args.acks.config_value(),
        args.linger_ms,
        args.batch_size,
    )
    .create_with_context(ctx.clone())
    .context("cannot create producer")?;
    producer
        .client()
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .context("producer cannot fetch metadata")?;
    Ok(producer)
}

/// Send this thread's share of the records and wait for their
/// acknowledgements; returns how many were handed to the client.
fn send_share(
    producer: &BaseProducer<BenchContext>,
    args: &Args,
    topic: &str,
    share: Share,
    start: Instant,
) -> Result<u64> {
    let value = payload(args.record_size);
    let limit = args.record_limit().unwrap_or(u64::MAX);
    let partitions = args.partitions as u64;
    let deadline = args.seconds.map(|s| start + Duration::from_secs_f64(s));
    let failed = || producer.context().deliveries.failed() > 0;
    let mut next = share.index;
    let mut sent: u64 = 0;
    while next < limit {
        let record = BaseRecord::to(topic)
            .payload(&value[..])
            .partition((next % partitions) as i32);
        match producer.send::<(), [u8]>(record) {
            Ok(()) => {
                next += share.step;
                sent += 1;
                if sent & 1023 == 0 {
                    producer.poll(Duration::ZERO);
                    if deadline.is_some_and(|d| Instant::now() >= d) || failed() {
                        break;
                    }
                }
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                producer.poll(Duration::from_millis(1));
                if start.elapsed() > args.timeout() {
                    bail!(
                        "producer stuck: local queue still full after {:?}",
                        args.timeout()
                    );
                }
            }
            Err((e, _)) => return Err(e).context("send failed"),
        }
    }
    finish(producer, args, sent);
    Ok(sent)
}

/// Wait for the outstanding acknowledgements (reported, not fatal, if they
/// do not all come within the timeout).
fn finish(producer: &BaseProducer<BenchContext>, args: &Args, sent: u64) {
    let flushed = producer.flush(args.timeout());
    producer.poll(Duration::ZERO);
    if let Err(e) = flushed {
        eprintln!(
            "kafka-bench: flush did not finish: {e}; {} records acknowledged, {sent} sent by this producer",
            producer.context().deliveries.ok()
        );
    }
}
