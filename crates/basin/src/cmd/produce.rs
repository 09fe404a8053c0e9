//! `basin produce TOPIC`: send lines from stdin or a file as records, keyed
//! by a JSON field or a separator, partitioned by Basin's Java-compatible
//! murmur2 hash or by key ranges, then print a throughput summary.

mod input;

use std::fs::File;
use std::io::{BufRead, BufReader, IsTerminal};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};

use crate::client::{CliContext, ClientArgs};
use crate::partitioner::Partitioner;
pub use input::KeyMode;

type KafkaProducer = ThreadedProducer<CliContext>;

/// Which partitioner keyed records use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PartitionerKind {
    /// Java-compatible murmur2 hash of the key.
    Hash,
    /// Byte-ordered key ranges given by `--splits`.
    Range,
}

/// Broker acknowledgements to wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Acks {
    #[value(name = "0")]
    Zero,
    #[value(name = "1")]
    One,
    #[value(name = "all")]
    All,
}

/// Batch compression codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

/// Flags of `basin produce`.
#[derive(Debug, Clone, clap::Args)]
pub struct ProduceArgs {
    /// Topic to write to.
    pub topic: String,
    /// Read lines from this file instead of stdin.
    #[arg(long, short = 'f')]
    pub file: Option<PathBuf>,
    /// Take each record's key from this field of the JSON line.
    #[arg(long, conflicts_with = "key_separator")]
    pub key_field: Option<String>,
    /// Lines are `KEY<SEP>VALUE`; split at the first SEP.
    #[arg(long)]
    pub key_separator: Option<String>,
    /// How keyed records pick a partition (keyless ones: the client decides).
    #[arg(long, value_enum, default_value_t = PartitionerKind::Hash)]
    pub partitioner: PartitionerKind,
    /// Range split points, e.g. `a,m,t` for 4 partitions: (-inf,a) [a,m) [m,t) [t,+inf).
    #[arg(long, value_delimiter = ',', required_if_eq("partitioner", "range"))]
    pub splits: Vec<String>,
    /// Acknowledgements: 0, 1 or all.
    #[arg(long, value_enum, default_value_t = Acks::All)]
    pub acks: Acks,
    /// Compression codec.
    #[arg(long, value_enum, default_value_t = Compression::None)]
    pub compression: Compression,
    /// Idempotent producer (no duplicates on retry) [default: on with --acks all].
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub idempotent: Option<bool>,
    /// How long to wait to fill a batch.
    #[arg(long, default_value_t = 5)]
    pub linger_ms: u64,
    /// Give up on a record not acknowledged within this time.
    #[arg(long, default_value_t = 30_000)]
    pub delivery_timeout_ms: u64,
}

impl ProduceArgs {
    fn key_mode(&self) -> KeyMode {
        match (&self.key_field, &self.key_separator) {
            (Some(field), _) => KeyMode::Field(field.clone()),
            (None, Some(sep)) => KeyMode::Separator(sep.as_bytes().to_vec()),
            (None, None) => KeyMode::None,
        }
    }

    fn partitioner(&self) -> Result<Partitioner> {
        match self.partitioner {
            PartitionerKind::Hash if !self.splits.is_empty() => {
                bail!("--splits only applies to --partitioner range")
            }
            PartitionerKind::Hash => Ok(Partitioner::Hash),
            PartitionerKind::Range => {
                Partitioner::range(self.splits.iter().map(|s| s.as_bytes().to_vec()).collect())
            }
        }
    }

    fn idempotent(&self) -> Result<bool> {
        match self.idempotent {
            Some(true) if self.acks != Acks::All => {
                bail!("--idempotent needs --acks all")
            }
            Some(on) => Ok(on),
            None => Ok(self.acks == Acks::All),
        }
    }
}

/// Produce every input line, then flush and print a summary.
pub fn run(client: &ClientArgs, args: ProduceArgs) -> Result<()> {
    let partitioner = args.partitioner()?;
    let producer: KafkaProducer = client.create(&producer_config(client, &args)?)?;
    let topic = client.topic_metadata(producer.client(), &args.topic)?;
    partitioner.check_partitions(&args.topic, topic.partition_count())?;
    let reader = open_input(&args)?;
    let job = Job {
        producer: &producer,
        topic: &args.topic,
        key_mode: args.key_mode(),
        partitioner,
        partitions: topic.partition_count(),
    };
    let sent = job.send_all(reader);
    let flushed = flush(&producer, &args);
    let totals = sent?;
    flushed?;
    totals.report(&args.topic);
    Ok(())
}

/// rdkafka producer settings from the flags.
fn producer_config(client: &ClientArgs, args: &ProduceArgs) -> Result<ClientConfig> {
    let acks = match args.acks {
        Acks::Zero => "0",
        Acks::One => "1",
        Acks::All => "all",
    };
    let compression = match args.compression {
        Compression::None => "none",
        Compression::Gzip => "gzip",
        Compression::Snappy => "snappy",
        Compression::Lz4 => "lz4",
        Compression::Zstd => "zstd",
    };
    let mut config = client.config();
    config
        .set("acks", acks)
        .set("compression.type", compression)
        .set("enable.idempotence", args.idempotent()?.to_string())
        .set("linger.ms", args.linger_ms.to_string())
        .set("message.timeout.ms", args.delivery_timeout_ms.to_string());
    Ok(config)
}

fn open_input(args: &ProduceArgs) -> Result<Box<dyn BufRead>> {
    Ok(match &args.file {
        Some(path) => {
            let file = File::open(path)
                .with_context(|| format!("cannot open input file {}", path.display()))?;
            Box::new(BufReader::with_capacity(1 << 16, file))
        }
        None => Box::new(std::io::stdin().lock()),
    })
}

/// Wait until every record is acknowledged (or failed) and check the outcome.
fn flush(producer: &KafkaProducer, args: &ProduceArgs) -> Result<()> {
    flush_within(producer, Duration::from_millis(args.delivery_timeout_ms))
}

/// Wait up to the delivery timeout (plus slack) for every acknowledgement,
/// and fail naming the first delivery error, if any.
pub(crate) fn flush_within(producer: &KafkaProducer, delivery_timeout: Duration) -> Result<()> {
    producer
        .flush(delivery_timeout + Duration::from_secs(5))
        .context("records were still unacknowledged at the delivery timeout")?;
    let stats = &producer.context().delivery;
    if stats.failed() > 0 {
        bail!(
            "{} record(s) failed: {}",
            stats.failed(),
            stats.first_error().unwrap_or_default()
        );
    }
    Ok(())
}

/// One produce run over an input.
struct Job<'a> {
    producer: &'a KafkaProducer,
    topic: &'a str,
    key_mode: KeyMode,
    partitioner: Partitioner,
    partitions: i32,
}

impl Job<'_> {
    /// Send every line; stops at the first bad line or delivery failure.
    fn send_all(&self, mut reader: Box<dyn BufRead>) -> Result<Totals> {
        let mut totals = Totals::start();
        let mut line = Vec::new();
        while input::read_line(&mut reader, &mut line).context("cannot read input")? {
            let record = input::parse_line(&self.key_mode, &line, totals.records + 1)?;
            let key = record.key.as_deref();
            let partition = key.map(|k| self.partitioner.partition(k, self.partitions));
            self.send(key, record.value, partition)?;
            if totals.add(key.map_or(0, <[u8]>::len) + record.value.len()) {
                self.check_failures()?;
            }
        }
        totals.finish();
        Ok(totals)
    }

    /// Enqueue one record, waiting while the local queue is full.
    fn send(&self, key: Option<&[u8]>, value: &[u8], partition: Option<i32>) -> Result<()> {
        let mut record = BaseRecord::<[u8], [u8]>::to(self.topic).payload(value);
        record.key = key;
        record.partition = partition;
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => bail!("cannot send record: {e}"),
            }
        }
    }

    fn check_failures(&self) -> Result<()> {
        let stats = &self.producer.context().delivery;
        match stats.first_error() {
            Some(e) => bail!("delivery failed: {e}"),
            None => Ok(()),
        }
    }
}

/// Counts and timing for the summary line, plus the terminal progress line.
struct Totals {
    records: u64,
    bytes: u64,
    started: Instant,
    progress: ProgressBar,
}

impl Totals {
    fn start() -> Totals {
        Totals {
            records: 0,
            bytes: 0,
            started: Instant::now(),
            progress: progress_bar(),
        }
    }

    /// Count one record; true every 1024 records (time for periodic checks).
    fn add(&mut self, bytes: usize) -> bool {
        self.records += 1;
        self.bytes += bytes as u64;
        let checkpoint = self.records & 1023 == 0;
        if checkpoint {
            let msg = format!("{} records, {}", self.records, human_bytes(self.bytes));
            self.progress.set_message(msg);
        }
        checkpoint
    }

    fn finish(&self) {
        self.progress.finish_and_clear();
    }

    fn report(&self, topic: &str) {
        let secs = self.started.elapsed().as_secs_f64().max(1e-9);
        eprintln!(
            "produced {} records ({}) to {topic:?} in {secs:.2} s ({:.0} records/s, {}/s)",
            self.records,
            human_bytes(self.bytes),
            self.records as f64 / secs,
            human_bytes((self.bytes as f64 / secs) as u64),
        );
    }
}

/// A spinner on stderr when it is a terminal; hidden otherwise.
pub(crate) fn progress_bar() -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    if let Ok(style) = ProgressStyle::with_template("{spinner} producing: {msg} [{elapsed}]") {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// `1234567` -> `1.18 MiB`.
pub(crate) fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.2} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: ProduceArgs,
    }

    fn parse(args: &[&str]) -> Result<ProduceArgs, clap::Error> {
        Wrapper::try_parse_from(std::iter::once("produce").chain(args.iter().copied()))
            .map(|w| w.args)
    }

    #[test]
    fn idempotence_follows_acks() {
        assert!(parse(&["t"]).unwrap().idempotent().unwrap());
        assert!(!parse(&["t", "--acks", "1"]).unwrap().idempotent().unwrap());
        assert!(parse(&["t", "--acks", "0", "--idempotent"])
            .unwrap()
            .idempotent()
            .is_err());
        let off = parse(&["t", "--idempotent", "false"]).unwrap();
        assert!(!off.idempotent().unwrap());
    }

    #[test]
    fn range_needs_splits() {
        assert!(parse(&["t", "--partitioner", "range"]).is_err());
        let args = parse(&["t", "--partitioner", "range", "--splits", "a,m,t"]).unwrap();
        assert_eq!(args.partitioner().unwrap().required_partitions(), Some(4));
        let hash = parse(&["t", "--splits", "a"]).unwrap();
        assert!(hash.partitioner().is_err());
    }

    #[test]
    fn key_flags_conflict() {
        assert!(parse(&["t", "--key-field", "id", "--key-separator", ":"]).is_err());
        let args = parse(&["t", "--key-separator", ":"]).unwrap();
        assert_eq!(args.key_mode(), KeyMode::Separator(b":".to_vec()));
    }

    #[test]
    fn bytes_are_human_readable() {
        assert_eq!(human_bytes(12), "12 B");
        assert_eq!(human_bytes(2048), "2.00 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024), "3.00 MiB");
    }
}
