//! `kafka-bench`: producer throughput, consumer throughput and end-to-end
//! latency of one Kafka-compatible broker, measured with librdkafka (rdkafka).
//!
//! Every run creates fresh topics through the admin API (replication factor
//! 1), runs the chosen tests and deletes the topics again. Each measurement is
//! printed as one JSON line on stdout; diagnostics go to stderr.

mod admin;
mod client;
mod consume;
mod e2e;
mod produce;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Result};
use clap::{Parser, ValueEnum};
use serde_json::{json, Value};

/// Benchmark a Kafka-compatible broker: producer and consumer throughput and
/// end-to-end latency. Prints one JSON line per measurement.
#[derive(Debug, Clone, Parser)]
#[command(name = "kafka-bench", version, about)]
pub struct Args {
    /// Bootstrap servers (host:port[,host:port...]).
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// Topic name prefix; a unique suffix is appended so every run starts
    /// from a fresh, empty topic.
    #[arg(long, default_value = "kafka-bench")]
    pub topic: String,
    /// Partitions of the created topics.
    #[arg(long, default_value_t = 1)]
    pub partitions: i32,
    /// Value size of each record in bytes (no key).
    #[arg(long, default_value_t = 100)]
    pub record_size: usize,
    /// Records to produce in the throughput test [default: 500000 unless
    /// --seconds is given].
    #[arg(long)]
    pub records: Option<u64>,
    /// Stop producing after this many seconds (whichever of --records and
    /// --seconds is reached first).
    #[arg(long)]
    pub seconds: Option<f64>,
    /// Producer acknowledgements.
    #[arg(long, value_enum, default_value_t = Acks::One)]
    pub acks: Acks,
    /// Tests to run, comma separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "produce,consume,e2e"
    )]
    pub tests: Vec<Test>,
    /// Producer clients in the throughput test, each in its own thread and
    /// with its own connections; they share --records (and --seconds), and
    /// the throughput counts from the first send to the last
    /// acknowledgement of any of them.
    #[arg(long, default_value_t = 1)]
    pub producers: u64,
    /// Producer linger.ms for the throughput test.
    #[arg(long, default_value_t = 5)]
    pub linger_ms: u64,
    /// Producer batch.size in bytes for the throughput test.
    #[arg(long, default_value_t = 1_000_000)]
    pub batch_size: u64,
    /// Records per second sent in the end-to-end latency test.
    #[arg(long, default_value_t = 2000)]
    pub e2e_rate: u64,
    /// Duration of the end-to-end latency test in seconds.
    #[arg(long, default_value_t = 5.0)]
    pub e2e_seconds: f64,
    /// Consumer fetch.wait.max.ms (the librdkafka default is 500).
    #[arg(long, default_value_t = 500)]
    pub fetch_wait_ms: u64,
    /// Give up on a test after this many seconds without finishing.
    #[arg(long, default_value_t = 120.0)]
    pub timeout: f64,
    /// Name of the broker under test, copied into every JSON line.
    #[arg(long, default_value = "")]
    pub label: String,
    /// Extra librdkafka property for every client, KEY=VALUE (repeatable),
    /// e.g. `-X debug=fetch`.
    #[arg(short = 'X', value_parser = parse_key_value)]
    pub client_config: Vec<(String, String)>,
    /// Keep the topics instead of deleting them at the end.
    #[arg(long)]
    pub keep_topics: bool,
}

/// Producer `acks` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Acks {
    /// Leader acknowledgement (`acks=1`).
    #[value(name = "1")]
    One,
    /// All in-sync replicas (`acks=all`, i.e. -1).
    #[value(name = "all", alias = "-1")]
    All,
}

impl Acks {
    /// The value of librdkafka's `acks` property.
    pub fn config_value(self) -> &'static str {
        match self {
            Acks::One => "1",
            Acks::All => "all",
        }
    }
}

/// One of the measurements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Test {
    /// Producer throughput.
    Produce,
    /// Consumer throughput over what `produce` wrote (runs `produce` first
    /// if it was not asked for).
    Consume,
    /// End-to-end latency at a fixed send rate.
    E2e,
}

impl Args {
    fn validate(&self) -> Result<()> {
        if self.partitions < 1 {
            bail!("--partitions must be at least 1");
        }
        if self.producers < 1 {
            bail!("--producers must be at least 1");
        }
        if self.record_size < e2e::STAMP_LEN && self.tests.contains(&Test::E2e) {
            bail!("--record-size must be at least {} for e2e", e2e::STAMP_LEN);
        }
        if self.e2e_rate == 0 || self.e2e_seconds <= 0.0 {
            bail!("--e2e-rate and --e2e-seconds must be positive");
        }
        Ok(())
    }

    /// Records to produce (None: only --seconds bounds the run).
    pub fn record_limit(&self) -> Option<u64> {
        match (self.records, self.seconds) {
            (Some(n), _) => Some(n),
            (None, Some(_)) => None,
            (None, None) => Some(500_000),
        }
    }

    /// The overall per-test timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout)
    }

    /// Fields common to every JSON line.
    fn base_json(&self, test: &str, topic: &str) -> Value {
        json!({
            "test": test,
            "label": self.label,
            "brokers": self.brokers,
            "topic": topic,
            "partitions": self.partitions,
            "record_size": self.record_size,
            "acks": self.acks.config_value(),
            "producers": self.producers,
            "fetch_wait_ms": self.fetch_wait_ms,
        })
    }
}

/// Parse `KEY=VALUE`.
fn parse_key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))
}

/// Print one measurement: `base` merged with `fields`.
fn emit(mut base: Value, fields: Value) {
    if let (Some(b), Value::Object(f)) = (base.as_object_mut(), fields) {
        b.extend(f);
    }
    println!("{base}");
}

/// A topic name nobody has used yet.
fn fresh_topic(prefix: &str, what: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{prefix}-{what}-{}-{nanos:x}", std::process::id())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    args.validate()?;
    client::set_extra_config(args.client_config.clone());
    let admin = admin::Admin::new(&args.brokers)?;
    let mut created = Vec::new();
    let result = run(&args, &admin, &mut created).await;
    if !args.keep_topics && !created.is_empty() {
        // A consumer's last fetch may still be waiting at the broker (up to
        // fetch.wait.max.ms); deleting its topic under it has crashed Tansu
        // 0.6.0's sqlite engine ("more or less than one row" in
        // offset_stage), so let such fetches finish first.
        tokio::time::sleep(Duration::from_millis(args.fetch_wait_ms + 1000)).await;
        for topic in &created {
            if let Err(e) = admin.delete_topic(topic).await {
                eprintln!("kafka-bench: warning: cannot delete topic {topic}: {e:#}");
            }
        }
    }
    result
}

async fn run(args: &Args, admin: &admin::Admin, created: &mut Vec<String>) -> Result<()> {
    let wants = |t: Test| args.tests.contains(&t);
    if wants(Test::Produce) || wants(Test::Consume) {
        let topic = fresh_topic(&args.topic, "tput");
        admin.create_topic(&topic, args.partitions).await?;
        created.push(topic.clone());

        let (a, t) = (args.clone(), topic.clone());
        let produced = tokio::task::spawn_blocking(move || produce::run(&a, &t)).await??;
        if wants(Test::Produce) {
            emit(args.base_json("produce", &topic), produced.to_json());
        }
        if wants(Test::Consume) {
            let expected = produced.delivered;
            let (a, t) = (args.clone(), topic.clone());
            let consumed =
                tokio::task::spawn_blocking(move || consume::run(&a, &t, expected)).await??;
            emit(args.base_json("consume", &topic), consumed.to_json());
        }
    }
    if wants(Test::E2e) {
        let topic = fresh_topic(&args.topic, "e2e");
        admin.create_topic(&topic, args.partitions).await?;
        created.push(topic.clone());
        let (a, t) = (args.clone(), topic.clone());
        let latency = tokio::task::spawn_blocking(move || e2e::run(&a, &t)).await??;
        emit(args.base_json("e2e", &topic), latency.to_json());
    }
    Ok(())
}
