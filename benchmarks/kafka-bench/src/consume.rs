//! Consumer throughput: read a topic from the beginning of every partition
//! (manual assignment, no group rebalance, no commits) until the expected
//! number of records has arrived.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{json, Value};

use crate::client::{consumer_config, BenchContext};
use crate::Args;

/// Time given to a new consumer to find its coordinator before assignment.
const WARM_UP: Duration = Duration::from_millis(700);

/// Outcome of a consumer run.
#[derive(Debug, Clone)]
pub struct Consumed {
    /// Records the test expected.
    pub expected: u64,
    /// Records received.
    pub records: u64,
    /// Value bytes received.
    pub bytes: u64,
    /// Fetch errors reported by the client.
    pub errors: u64,
    /// From assignment until the last record.
    pub elapsed: Duration,
    /// From assignment until the first record.
    pub first_record: Option<Duration>,
}

impl Consumed {
    /// The JSON fields of this measurement.
    pub fn to_json(&self) -> Value {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        json!({
            "records": self.records,
            "expected": self.expected,
            "complete": self.records >= self.expected,
            "errors": self.errors,
            "seconds": secs,
            "first_record_ms": self.first_record.map(|d| d.as_secs_f64() * 1e3),
            "records_per_sec": self.records as f64 / secs,
            "mb_per_sec": self.bytes as f64 / secs / 1e6,
        })
    }
}

/// Build a consumer assigned to every partition of `topic` at `offset`.
pub fn assigned_consumer(
    args: &Args,
    topic: &str,
    offset: Offset,
) -> Result<BaseConsumer<BenchContext>> {
    let group = format!("{topic}-reader");
    let consumer: BaseConsumer<BenchContext> =
        consumer_config(&args.brokers, &group, args.fetch_wait_ms)
            .create_with_context(BenchContext::default())
            .context("cannot create consumer")?;
    // Connect first: librdkafka looks up the group coordinator even for a
    // manual assignment, and if that first lookup finds no broker up it
    // retries only after 500 ms, which would delay the first fetch.
    consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .context("consumer cannot fetch metadata")?;
    let until = Instant::now() + WARM_UP;
    while Instant::now() < until {
        let _ = consumer.poll(Duration::from_millis(50));
    }
    let mut tpl = TopicPartitionList::new();
    for p in 0..args.partitions {
        tpl.add_partition_offset(topic, p, offset)?;
    }
    consumer.assign(&tpl).context("cannot assign partitions")?;
    Ok(consumer)
}

/// Read `expected` records of `topic` from the beginning.
pub fn run(args: &Args, topic: &str, expected: u64) -> Result<Consumed> {
    let consumer = assigned_consumer(args, topic, Offset::Beginning)?;
    let start = Instant::now();
    let (mut records, mut bytes, mut errors) = (0u64, 0u64, 0u64);
    let mut first_record = None;
    let mut last = start;
    while records < expected {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                records += 1;
                bytes += m.payload_len() as u64;
                if first_record.is_none() {
                    first_record = Some(start.elapsed());
                }
                last = Instant::now();
            }
            Some(Err(e)) => {
                errors += 1;
                eprintln!("kafka-bench: consumer error: {e}");
            }
            None => {}
        }
        if start.elapsed() > args.timeout() {
            eprintln!("kafka-bench: consumer timed out with {records} of {expected} records");
            break;
        }
    }
    if let Err(e) = consumer.unassign() {
        eprintln!("kafka-bench: warning: unassign failed: {e}");
    }
    Ok(Consumed {
        expected,
        records,
        bytes,
        errors,
        elapsed: last.duration_since(start),
        first_record,
    })
}
