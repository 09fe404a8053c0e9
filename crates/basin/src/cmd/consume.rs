//! `basin consume TOPIC`: print records to stdout, one per line, from the
//! beginning, an offset or a point in time; with `--group` it joins a
//! consumer group and commits what it printed, otherwise it assigns
//! partitions directly and commits nothing.

use std::io::{self, Write};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

use crate::client::{CliContext, ClientArgs, TopicInfo};

type KafkaConsumer = StreamConsumer<CliContext>;

/// Output format of each record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// The value alone.
    Value,
    /// `{"partition","offset","timestamp","key","value"}` per line.
    Json,
}

/// Flags of `basin consume`.
#[derive(Debug, Clone, clap::Args)]
pub struct ConsumeArgs {
    /// Topic to read.
    pub topic: String,
    /// Start at the earliest record (with --group: where nothing is committed yet).
    #[arg(long, conflicts_with_all = ["offset", "from_time"])]
    pub from_beginning: bool,
    /// Start at this offset (in every partition, or in --partition).
    #[arg(long, conflicts_with = "from_time", value_parser = clap::value_parser!(i64).range(0..))]
    pub offset: Option<i64>,
    /// Read only this partition.
    #[arg(long)]
    pub partition: Option<i32>,
    /// Start at the first record at or after this time (RFC 3339 or epoch millis).
    #[arg(long, value_parser = parse_time)]
    pub from_time: Option<i64>,
    /// Consumer group: joins the group and commits consumed offsets.
    #[arg(long, short = 'g')]
    pub group: Option<String>,
    /// Stop after this many records.
    #[arg(long)]
    pub max: Option<u64>,
    /// Stop when no record arrives for this long [default: wait forever].
    #[arg(long)]
    pub timeout_ms: Option<u64>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Value)]
    pub format: Format,
}

/// Where consumption starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// Committed offset with a group, else the end.
    Default,
    Beginning,
    Offset(i64),
    /// Epoch milliseconds.
    Time(i64),
}

impl ConsumeArgs {
    fn start(&self) -> Start {
        match (self.from_beginning, self.offset, self.from_time) {
            (true, _, _) => Start::Beginning,
            (_, Some(offset), _) => Start::Offset(offset),
            (_, _, Some(ms)) => Start::Time(ms),
            _ => Start::Default,
        }
    }

    /// Group consumers subscribe unless a partition or position is forced.
    fn subscribes(&self) -> bool {
        self.group.is_some()
            && self.partition.is_none()
            && matches!(self.start(), Start::Default | Start::Beginning)
    }
}

/// Parse RFC 3339 (`2024-05-01T12:00:00Z`) or epoch milliseconds.
pub fn parse_time(s: &str) -> Result<i64, String> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|e| format!("expected RFC 3339 time or epoch millis, got {s:?} ({e})"))
}

/// Consume until --max, the idle timeout, or Ctrl-C; then commit (with a group).
pub async fn run(client: &ClientArgs, args: ConsumeArgs) -> Result<()> {
    let consumer: KafkaConsumer = client.create(&consumer_config(client, &args))?;
    let topic = client.topic_metadata(consumer.client(), &args.topic)?;
    start_consuming(client, &consumer, &args, &topic)?;
    let result = consume_loop(&consumer, &args).await;
    let committed = commit(&consumer, &args);
    let count = result?;
    committed?;
    tracing::info!(records = count, topic = %args.topic, "consume finished");
    Ok(())
}

fn consumer_config(client: &ClientArgs, args: &ConsumeArgs) -> ClientConfig {
    let reset = if args.start() == Start::Beginning {
        "earliest"
    } else {
        "latest"
    };
    let mut config = client.config();
    config
        .set("auto.offset.reset", reset)
        .set("enable.auto.commit", args.group.is_some().to_string())
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("allow.auto.create.topics", "false");
    config.set("group.id", group_id(args));
    config
}

/// The `--group`, or a throwaway id: librdkafka's assign() needs a group id
/// even though nothing joins the group or commits to it.
fn group_id(args: &ConsumeArgs) -> String {
    match &args.group {
        Some(group) => group.clone(),
        None => format!("basin-cli-{}", std::process::id()),
    }
}

/// Subscribe (group mode) or assign the chosen partitions at the start position.
fn start_consuming(
    client: &ClientArgs,
    consumer: &KafkaConsumer,
    args: &ConsumeArgs,
    topic: &TopicInfo,
) -> Result<()> {
    if args.subscribes() {
        return consumer
            .subscribe(&[&args.topic])
            .with_context(|| format!("cannot subscribe to {:?}", args.topic));
    }
    let assignment = assignment(client, consumer, args, topic)?;
    consumer
        .assign(&assignment)
        .with_context(|| format!("cannot assign partitions of {:?}", args.topic))
}

/// The partitions to read and where each starts.
fn assignment(
    client: &ClientArgs,
    consumer: &KafkaConsumer,
    args: &ConsumeArgs,
    topic: &TopicInfo,
) -> Result<TopicPartitionList> {
    let partitions = chosen_partitions(args, topic)?;
    let start = args.start();
    let offset = start_offset(start, args.group.is_some());
    let mut list = TopicPartitionList::new();
    for partition in partitions {
        list.add_partition_offset(&args.topic, partition, offset)?;
    }
    match start {
        Start::Time(_) => offsets_for_times(client, consumer, list),
        _ => Ok(list),
    }
}

fn chosen_partitions(args: &ConsumeArgs, topic: &TopicInfo) -> Result<Vec<i32>> {
    match args.partition {
        Some(p) if topic.partition_ids().any(|id| id == p) => Ok(vec![p]),
        Some(p) => bail!(
            "topic {:?} has no partition {p} (it has {})",
            args.topic,
            topic.partition_count()
        ),
        None => Ok(topic.partition_ids().collect()),
    }
}

fn start_offset(start: Start, grouped: bool) -> Offset {
    match start {
        Start::Beginning => Offset::Beginning,
        Start::Offset(offset) => Offset::Offset(offset),
        Start::Time(ms) => Offset::Offset(ms),
        Start::Default if grouped => Offset::Stored,
        Start::Default => Offset::End,
    }
}

/// Replace the timestamps in `list` by the first offsets at or after them.
fn offsets_for_times(
    client: &ClientArgs,
    consumer: &KafkaConsumer,
    list: TopicPartitionList,
) -> Result<TopicPartitionList> {
    let found = consumer
        .offsets_for_times(list, client.timeout())
        .map_err(|e| client.request_error(consumer.client().context(), "ListOffsets", &e))?;
    for elem in found.elements() {
        elem.error().map_err(|e| {
            anyhow!(
                "cannot find offset by time in partition {}: {e}",
                elem.partition()
            )
        })?;
    }
    Ok(found)
}

/// Print records until a stop condition; returns how many were printed.
async fn consume_loop(consumer: &KafkaConsumer, args: &ConsumeArgs) -> Result<u64> {
    let idle = args.timeout_ms.map(Duration::from_millis);
    let mut out = io::stdout();
    let mut count = 0;
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    while args.max.is_none_or(|max| count < max) {
        let next = tokio::select! {
            _ = &mut shutdown => break,
            next = next_message(consumer, idle) => next,
        };
        let Some(result) = next else { break };
        let Some(message) = check_message(result)? else {
            continue;
        };
        if !print(&mut out, &message, args.format)? {
            break;
        }
        if args.group.is_some() {
            consumer.store_offset_from_message(&message)?;
        }
        count += 1;
    }
    Ok(count)
}

/// The next message, or `None` once idle for `idle`.
async fn next_message(
    consumer: &KafkaConsumer,
    idle: Option<Duration>,
) -> Option<KafkaResult<BorrowedMessage<'_>>> {
    match idle {
        Some(idle) => tokio::time::timeout(idle, consumer.recv()).await.ok(),
        None => Some(consumer.recv().await),
    }
}

/// Pass messages through; fail on fatal errors; log and skip the rest.
fn check_message(result: KafkaResult<BorrowedMessage<'_>>) -> Result<Option<BorrowedMessage<'_>>> {
    match result {
        Ok(message) => Ok(Some(message)),
        Err(KafkaError::MessageConsumption(RDKafkaErrorCode::UnknownTopicOrPartition)) => {
            bail!("the topic no longer exists")
        }
        Err(e @ KafkaError::MessageConsumptionFatal(_)) => Err(e.into()),
        Err(e) => {
            tracing::warn!("consumer error: {e}");
            Ok(None)
        }
    }
}

/// Write one record; false if stdout was closed (e.g. piped into `head`).
fn print(out: &mut impl Write, message: &BorrowedMessage<'_>, format: Format) -> Result<bool> {
    let written = write_record(out, message, format).and_then(|_| out.flush());
    match written {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e).context("cannot write to stdout"),
    }
}

/// One JSON output line.
#[derive(Serialize)]
struct JsonRecord<'a> {
    partition: i32,
    offset: i64,
    timestamp: Option<i64>,
    key: Option<std::borrow::Cow<'a, str>>,
    value: Option<std::borrow::Cow<'a, str>>,
}

fn write_record(
    out: &mut impl Write,
    message: &BorrowedMessage<'_>,
    format: Format,
) -> io::Result<()> {
    match format {
        Format::Value => {
            out.write_all(message.payload().unwrap_or_default())?;
            out.write_all(b"\n")
        }
        Format::Json => {
            let record = JsonRecord {
                partition: message.partition(),
                offset: message.offset(),
                timestamp: message.timestamp().to_millis(),
                key: message.key().map(String::from_utf8_lossy),
                value: message.payload().map(String::from_utf8_lossy),
            };
            serde_json::to_writer(&mut *out, &record)?;
            out.write_all(b"\n")
        }
    }
}

/// Commit the offsets of printed records (group mode only).
fn commit(consumer: &KafkaConsumer, args: &ConsumeArgs) -> Result<()> {
    if args.group.is_none() {
        return Ok(());
    }
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => Ok(()),
        Err(e) => Err(e).context("cannot commit consumed offsets"),
    }
}

/// Completes on Ctrl-C or (on Unix) SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    let term = async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => term.recv().await,
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<Option<()>>();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: ConsumeArgs,
    }

    fn parse(args: &[&str]) -> Result<ConsumeArgs, clap::Error> {
        Wrapper::try_parse_from(std::iter::once("consume").chain(args.iter().copied()))
            .map(|w| w.args)
    }

    #[test]
    fn times_parse_as_rfc3339_or_millis() {
        assert_eq!(parse_time("1700000000000"), Ok(1_700_000_000_000));
        assert_eq!(parse_time("1970-01-01T00:00:01Z"), Ok(1000));
        assert_eq!(parse_time("1970-01-01T01:00:01+01:00"), Ok(1000));
        assert!(parse_time("yesterday").is_err());
    }

    #[test]
    fn start_positions_and_modes() {
        let a = parse(&["t", "--from-beginning", "--group", "g"]).unwrap();
        assert_eq!(a.start(), Start::Beginning);
        assert!(a.subscribes());
        let a = parse(&["t", "--offset", "5", "--group", "g"]).unwrap();
        assert_eq!(a.start(), Start::Offset(5));
        assert!(!a.subscribes());
        let a = parse(&["t", "--from-time", "1970-01-01T00:00:01Z"]).unwrap();
        assert_eq!(a.start(), Start::Time(1000));
        assert!(!a.subscribes());
        assert!(parse(&["t", "--from-beginning", "--offset", "1"]).is_err());
        assert!(parse(&["t", "--offset", "-1"]).is_err());
    }

    #[test]
    fn assign_offsets() {
        assert_eq!(start_offset(Start::Default, true), Offset::Stored);
        assert_eq!(start_offset(Start::Default, false), Offset::End);
        assert_eq!(start_offset(Start::Beginning, false), Offset::Beginning);
        assert_eq!(start_offset(Start::Offset(3), false), Offset::Offset(3));
    }
}
