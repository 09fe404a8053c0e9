//! `basin gen nexmark --topics`: create the person, auction and bid topics
//! when missing, then produce every event as a JSON value through one
//! rdkafka producer (acks=all, lz4 batches), keyed by its id in decimal
//! (Java-compatible murmur2 partitioning), stamped with its event time,
//! unpaced or paced by `--rate`. Ctrl-C stops cleanly.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use basin_gen::nexmark::json::write_u64;
use basin_gen::nexmark::{format_timestamp, Event, EventCounts, EventKind};
use indicatif::ProgressBar;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, Producer};

use super::super::topic::{
    check_failures, flush, producer_config, KafkaProducer, TokenBucket, MAX_SLEEP,
};
use super::{describe, speed, NexmarkArgs};
use crate::client::{CliContext, ClientArgs};
use crate::partitioner::hash_partition;

/// The three topic names, indexed by [`EventKind::index`].
type Topics = [String; 3];

/// Create the topics, then produce until every event is sent or Ctrl-C.
pub async fn run(client: ClientArgs, args: NexmarkArgs) -> Result<()> {
    let topics = EventKind::ALL.map(|kind| format!("{}{}", args.prefix(), kind.name()));
    ensure_topics(&client, &topics, args.partitions()).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let mut job = tokio::task::spawn_blocking(move || produce(&client, &args, &topics, &flag));
    tokio::select! {
        done = &mut job => return done.context("producer thread panicked")?,
        _ = tokio::signal::ctrl_c() => {
            tracing::info!("interrupted: flushing and stopping");
            stop.store(true, Ordering::Relaxed);
        }
    }
    job.await.context("producer thread panicked")?
}

/// Create the topics that do not exist yet with `partitions` partitions.
async fn ensure_topics(client: &ClientArgs, topics: &Topics, partitions: i32) -> Result<()> {
    let mut config = client.config();
    config.set("allow.auto.create.topics", "false");
    let admin: AdminClient<CliContext> = client.create(&config)?;
    // A metadata round trip first, so an unreachable broker fails fast and clearly.
    client.metadata(admin.inner(), None)?;
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|name| NewTopic::new(name, partitions, TopicReplication::Fixed(1)))
        .collect();
    let options = AdminOptions::new()
        .request_timeout(Some(client.timeout()))
        .operation_timeout(Some(client.timeout()));
    let results = admin
        .create_topics(&new, &options)
        .await
        .map_err(|e| client.request_error(admin.inner().context(), "CreateTopics", &e))?;
    for result in results {
        match result {
            Ok(name) => eprintln!("created topic {name:?} with {partitions} partition(s)"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => bail!("cannot create topic {name:?}: {code}"),
        }
    }
    Ok(())
}

/// Send the events; flush and report at the end.
fn produce(
    client: &ClientArgs,
    args: &NexmarkArgs,
    topics: &Topics,
    stop: &AtomicBool,
) -> Result<()> {
    let mut sender = Sender::new(client, topics)?;
    let mut generator = args.generator()?;
    let mut bucket = TokenBucket::new(args.rate(), Instant::now());
    let mut totals = Totals::start();
    while !stop.load(Ordering::Relaxed) {
        if let Some(wait) = bucket.take(Instant::now()) {
            std::thread::sleep(wait.min(MAX_SLEEP));
            continue;
        }
        let Some(event) = generator.next() else { break };
        let bytes = sender.send(&event)?;
        if totals.add(&event, bytes) {
            check_failures(&sender.producer)?;
        }
    }
    totals.progress.finish_and_clear();
    flush(&sender.producer)?;
    totals.report(topics);
    Ok(())
}

/// The producer, the topics with their partition counts, and reusable buffers.
struct Sender<'a> {
    producer: KafkaProducer,
    topics: &'a Topics,
    partitions: [i32; 3],
    key: Vec<u8>,
    value: Vec<u8>,
}

impl<'a> Sender<'a> {
    fn new(client: &ClientArgs, topics: &'a Topics) -> Result<Sender<'a>> {
        let producer: KafkaProducer = client.create(&producer_config(client))?;
        let mut partitions = [0i32; 3];
        for (count, topic) in partitions.iter_mut().zip(topics) {
            *count = client
                .topic_metadata(producer.client(), topic)?
                .partition_count();
        }
        Ok(Sender {
            producer,
            topics,
            partitions,
            key: Vec::with_capacity(20),
            value: Vec::with_capacity(512),
        })
    }

    /// Encode `event` and enqueue it to its topic; the bytes of key and value.
    fn send(&mut self, event: &Event) -> Result<usize> {
        let kind = event.kind().index();
        self.key.clear();
        self.value.clear();
        write_u64(event.key(), &mut self.key);
        event.write_json(&mut self.value);
        let record = BaseRecord::<[u8], [u8]>::to(&self.topics[kind])
            .key(&self.key)
            .payload(&self.value)
            .partition(hash_partition(&self.key, self.partitions[kind]))
            .timestamp(event.timestamp_ms());
        enqueue(&self.producer, record)?;
        Ok(self.key.len() + self.value.len())
    }
}

/// Enqueue one record, waiting while the local queue is full.
fn enqueue(producer: &KafkaProducer, mut record: BaseRecord<'_, [u8], [u8]>) -> Result<()> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err((e, _)) => return Err(anyhow!("cannot send record: {e}")),
        }
    }
}

/// Counts for the summary line and the terminal spinner.
struct Totals {
    counts: EventCounts,
    bytes: u64,
    first_time: Option<i64>,
    last_time: i64,
    started: Instant,
    progress: ProgressBar,
}

impl Totals {
    fn start() -> Totals {
        Totals {
            counts: EventCounts::default(),
            bytes: 0,
            first_time: None,
            last_time: 0,
            started: Instant::now(),
            progress: crate::cmd::produce::progress_bar(),
        }
    }

    /// Count one event; true every 4096 events (time for periodic checks).
    fn add(&mut self, event: &Event, bytes: usize) -> bool {
        self.counts.add(event.kind());
        self.bytes += bytes as u64;
        self.first_time.get_or_insert(event.date_time());
        self.last_time = event.date_time();
        let checkpoint = self.counts.total() & 4095 == 0;
        if checkpoint {
            self.progress
                .set_message(describe(&self.counts, self.bytes));
        }
        checkpoint
    }

    fn report(&self, topics: &Topics) {
        let span = match self.first_time {
            Some(first) => format!(
                ", event times {} .. {}",
                format_timestamp(first),
                format_timestamp(self.last_time)
            ),
            None => String::new(),
        };
        eprintln!(
            "produced {} to {} in {}{span}",
            describe(&self.counts, self.bytes),
            topics.each_ref().map(|t| format!("{t:?}")).join(", "),
            speed(self.counts.total(), self.started.elapsed()),
        );
    }
}
