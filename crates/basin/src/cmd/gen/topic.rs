//! `basin gen taxi --topic TOPIC`: produce trips as JSON lines through
//! rdkafka, keyed by PULocationID (Java-compatible murmur2 partitioning),
//! stamped with the pickup time, paced by a token bucket; event times
//! advance with wall time from `--start` (or now). Ctrl-C stops cleanly.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use basin_gen::taxi::calendar::SECOND;
use basin_gen::taxi::{format_iso, write_json, NullBlock, TripSampler};
use indicatif::ProgressBar;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};

use super::{human_bytes, Rate, Start, TaxiArgs};
use crate::client::{CliContext, ClientArgs};
use crate::partitioner::hash_partition;

pub(super) type KafkaProducer = ThreadedProducer<CliContext>;

/// How long to wait for outstanding records after the last one is sent.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest single sleep, so Ctrl-C is noticed promptly.
pub(super) const MAX_SLEEP: Duration = Duration::from_millis(50);

/// Produce until --rows, --duration or Ctrl-C.
pub async fn run(client: ClientArgs, args: TaxiArgs, topic: String) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let mut job = tokio::task::spawn_blocking(move || produce(&client, &args, &topic, &flag));
    tokio::select! {
        done = &mut job => return done.context("producer thread panicked")?,
        _ = tokio::signal::ctrl_c() => {
            tracing::info!("interrupted: flushing and stopping");
            stop.store(true, Ordering::Relaxed);
        }
    }
    job.await.context("producer thread panicked")?
}

fn produce(client: &ClientArgs, args: &TaxiArgs, topic: &str, stop: &AtomicBool) -> Result<()> {
    let producer: KafkaProducer = client.create(&producer_config(client))?;
    let info = client.topic_metadata(producer.client(), topic)?;
    let mut stream = TripStream::new(args, info.partition_count());
    let mut totals = Totals::start();
    let mut bucket = TokenBucket::new(args.rate(), Instant::now());
    let mut line = Vec::with_capacity(512);
    while !stop.load(Ordering::Relaxed) && !stream.done(totals.records) {
        if let Some(wait) = bucket.take(Instant::now()) {
            std::thread::sleep(wait.min(MAX_SLEEP));
            continue;
        }
        let record = stream.next(&mut line)?;
        send(&producer, topic, &record, &line)?;
        if totals.add(&record, line.len()) {
            check_failures(&producer)?;
        }
    }
    totals.progress.finish_and_clear();
    flush(&producer)?;
    totals.report(topic);
    Ok(())
}

pub(super) fn producer_config(client: &ClientArgs) -> rdkafka::config::ClientConfig {
    let mut config = client.config();
    config
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("compression.type", "lz4")
        .set(
            "message.timeout.ms",
            DELIVERY_TIMEOUT.as_millis().to_string(),
        );
    config
}

/// One record ready to send.
struct Record {
    key: String,
    partition: i32,
    /// Pickup time, milliseconds.
    timestamp_ms: i64,
    pickup: i64,
}

/// Trips whose pickup times follow the wall clock from the start time.
struct TripStream {
    sampler: TripSampler,
    start_micros: i64,
    began: Instant,
    partitions: i32,
    rows: Option<u64>,
    deadline: Option<Instant>,
}

impl TripStream {
    fn new(args: &TaxiArgs, partitions: i32) -> TripStream {
        let null_block = match args.rows {
            Some(rows) => NullBlock::for_rows(rows, args.seed),
            None => NullBlock::periodic(args.seed),
        };
        let start = args.start_time(Start::Now);
        let began = Instant::now();
        TripStream {
            sampler: TripSampler::new(args.seed, null_block),
            start_micros: start.and_utc().timestamp_micros(),
            began,
            partitions,
            rows: args.rows,
            deadline: args.duration.map(|d| began + d),
        }
    }

    fn done(&self, sent: u64) -> bool {
        self.rows.is_some_and(|rows| sent >= rows)
            || self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// Draw the next trip into `line` (JSON) and describe its record.
    fn next(&mut self, line: &mut Vec<u8>) -> Result<Record> {
        let elapsed = self.began.elapsed().as_micros() as i64;
        let pickup = (self.start_micros + elapsed) / SECOND * SECOND;
        let trip = self.sampler.sample(pickup);
        line.clear();
        write_json(&trip, line)?;
        let key = trip.pu_location_id.to_string();
        let partition = hash_partition(key.as_bytes(), self.partitions);
        Ok(Record {
            key,
            partition,
            timestamp_ms: pickup / 1000,
            pickup,
        })
    }
}

/// Enqueue one record, waiting while the local queue is full.
fn send(producer: &KafkaProducer, topic: &str, record: &Record, value: &[u8]) -> Result<()> {
    let mut base = BaseRecord::<[u8], [u8]>::to(topic)
        .key(record.key.as_bytes())
        .payload(value)
        .partition(record.partition)
        .timestamp(record.timestamp_ms);
    loop {
        match producer.send(base) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                base = back;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err((e, _)) => bail!("cannot send record: {e}"),
        }
    }
}

pub(super) fn check_failures(producer: &KafkaProducer) -> Result<()> {
    match producer.context().delivery.first_error() {
        Some(e) => bail!("delivery failed: {e}"),
        None => Ok(()),
    }
}

/// Wait until every record is acknowledged (or failed) and check the outcome.
pub(super) fn flush(producer: &KafkaProducer) -> Result<()> {
    crate::cmd::produce::flush_within(producer, DELIVERY_TIMEOUT)
}

/// A token bucket: `rate` tokens per second, holding at most `burst`
/// (50 ms worth, at least one), so short stalls are caught up smoothly.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: Option<f64>,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A bucket holding one token at `now`.
    pub fn new(rate: Rate, now: Instant) -> TokenBucket {
        let rate = match rate {
            Rate::PerSecond(r) => Some(r),
            Rate::Max => None,
        };
        TokenBucket {
            rate,
            burst: rate.map_or(1.0, |r| (r / 20.0).max(1.0)),
            tokens: 1.0,
            last: now,
        }
    }

    /// Take a token at `now`: `None` when taken, else how long until one is due.
    pub fn take(&mut self, now: Instant) -> Option<Duration> {
        // Unpaced (`--rate max`): a token is always there.
        let rate = self.rate?;
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            None
        } else {
            Some(Duration::from_secs_f64((1.0 - self.tokens) / rate))
        }
    }
}

/// Counts for the summary line and the terminal spinner.
struct Totals {
    records: u64,
    bytes: u64,
    first_pickup: Option<i64>,
    last_pickup: i64,
    started: Instant,
    progress: ProgressBar,
}

impl Totals {
    fn start() -> Totals {
        Totals {
            records: 0,
            bytes: 0,
            first_pickup: None,
            last_pickup: 0,
            started: Instant::now(),
            progress: crate::cmd::produce::progress_bar(),
        }
    }

    /// Count one record; true every 1024 records (time for periodic checks).
    fn add(&mut self, record: &Record, value_len: usize) -> bool {
        self.records += 1;
        self.bytes += (record.key.len() + value_len) as u64;
        self.first_pickup.get_or_insert(record.pickup);
        self.last_pickup = record.pickup;
        let checkpoint = self.records & 1023 == 0;
        if checkpoint {
            let msg = format!("{} trips, {}", self.records, human_bytes(self.bytes));
            self.progress.set_message(msg);
        }
        checkpoint
    }

    fn report(&self, topic: &str) {
        let secs = self.started.elapsed().as_secs_f64().max(1e-9);
        let span = match self.first_pickup {
            Some(first) => format!(
                ", pickups {} .. {}",
                format_iso(first),
                format_iso(self.last_pickup)
            ),
            None => String::new(),
        };
        eprintln!(
            "produced {} trips ({}) to {topic:?} in {secs:.2} s ({:.0} trips/s){span}",
            self.records,
            human_bytes(self.bytes),
            self.records as f64 / secs,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_paces_to_the_rate() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(Rate::PerSecond(100.0), t0);
        let mut taken = 0;
        // Simulate 2 s in 1 ms steps.
        for ms in 0..2_000 {
            let now = t0 + Duration::from_millis(ms);
            while bucket.take(now).is_none() {
                taken += 1;
            }
        }
        assert!((199..=202).contains(&taken), "{taken}");
    }

    #[test]
    fn bucket_says_how_long_to_wait() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(Rate::PerSecond(10.0), t0);
        assert_eq!(bucket.take(t0), None);
        let wait = bucket.take(t0).unwrap();
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-6, "{wait:?}");
        // Long idle: at most the burst (one token at this rate) is saved up.
        let later = t0 + Duration::from_secs(10);
        assert_eq!(bucket.take(later), None);
        assert!(bucket.take(later).is_some());
    }

    #[test]
    fn unpaced_never_waits() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(Rate::Max, t0);
        assert!((0..1000).all(|_| bucket.take(t0).is_none()));
    }
}
