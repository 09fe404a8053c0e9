//! `basin gen nexmark`: the Nexmark auction benchmark's events (people,
//! auctions, bids) from `basin-gen`, deterministic from the seed, the first
//! event number, the base time and the event rate. Written as three JSON
//! lines files (`--out DIR`) here, or produced to three topics
//! (`--topics`) by `topics`.

mod topics;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use basin_gen::nexmark::{
    write_files, EventCounts, Generator, NexmarkConfig, NexmarkFiles, DEFAULT_BASE_TIME_MICROS,
    DEFAULT_EVENT_RATE, DEFAULT_EXTRA_LEN, MAX_EXTRA_LEN,
};
use clap::ArgGroup;

use super::{human_bytes, now, parse_rate, parse_start, Rate, Start};
use crate::client::ClientArgs;

/// `--partitions` of topics created by `--topics`.
pub const DEFAULT_PARTITIONS: i32 = 4;

/// Flags of `basin gen nexmark`.
#[derive(Debug, Clone, clap::Args)]
#[command(group(ArgGroup::new("target").required(true).args(["out", "topics"])))]
pub struct NexmarkArgs {
    /// Number of events: per 50, 1 person, 3 auctions and 46 bids.
    #[arg(long)]
    pub events: u64,
    /// Seed of the random streams: the same flags give the same events.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Number of the first event, to split the events across runs.
    #[arg(long, default_value_t = 0)]
    pub first_event: u64,
    /// Time of event 0 (UTC): YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS][Z] or now
    /// [default: 2026-01-01T00:00:00Z].
    #[arg(long, value_parser = parse_base_time)]
    pub base_time: Option<Start>,
    /// Events per second of event time: event N happens at base time + N / rate.
    #[arg(long, default_value_t = DEFAULT_EVENT_RATE)]
    pub event_rate: u64,
    /// Letters of filler in each event's `extra` field.
    #[arg(long, default_value_t = DEFAULT_EXTRA_LEN)]
    pub extra_len: usize,
    /// Write DIR/person.jsonl, DIR/auction.jsonl and DIR/bid.jsonl (replacing them).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Produce to the topics PREFIXperson, PREFIXauction and PREFIXbid,
    /// creating missing ones (key = id, timestamp = event time).
    #[arg(long)]
    pub topics: bool,
    /// Topic name prefix [default: none].
    #[arg(long, conflicts_with = "out")]
    pub prefix: Option<String>,
    /// Partitions of topics that --topics creates [default: 4].
    #[arg(long, conflicts_with = "out")]
    pub partitions: Option<i32>,
    /// Events per second of wall time to the topics: N, N/s, N/m, N/h or max [default: max].
    #[arg(long, value_parser = parse_rate, conflicts_with = "out")]
    pub rate: Option<Rate>,
}

/// Run `basin gen nexmark`.
pub async fn run(client: &ClientArgs, args: NexmarkArgs) -> Result<()> {
    args.check()?;
    if args.topics {
        return topics::run(client.clone(), args).await;
    }
    tokio::task::spawn_blocking(move || write(&args))
        .await
        .context("generator thread panicked")?
}

impl NexmarkArgs {
    /// Range checks clap cannot express, then the generator's own.
    fn check(&self) -> Result<()> {
        if self.events == 0 {
            bail!("--events must be at least 1");
        }
        if self.event_rate == 0 {
            bail!("--event-rate must be at least 1 event per second");
        }
        if self.extra_len > MAX_EXTRA_LEN {
            bail!("--extra-len must be at most {MAX_EXTRA_LEN}");
        }
        if self.partitions() < 1 {
            bail!("--partitions must be at least 1");
        }
        self.generator()?;
        Ok(())
    }

    /// The generator configuration.
    fn config(&self) -> NexmarkConfig {
        NexmarkConfig {
            seed: self.seed,
            base_time_micros: self.base_time_micros(),
            event_rate: self.event_rate,
            extra_len: self.extra_len,
        }
    }

    /// The events to make.
    fn generator(&self) -> Result<Generator> {
        Generator::new(self.config(), self.first_event, self.events)
            .context("invalid generator settings")
    }

    fn base_time_micros(&self) -> i64 {
        match self.base_time {
            None => DEFAULT_BASE_TIME_MICROS,
            Some(Start::Now) => now().and_utc().timestamp_micros(),
            Some(Start::At(t)) => t.and_utc().timestamp_micros(),
        }
    }

    /// `--prefix`, defaulted.
    fn prefix(&self) -> &str {
        self.prefix.as_deref().unwrap_or("")
    }

    /// `--partitions`, defaulted.
    fn partitions(&self) -> i32 {
        self.partitions.unwrap_or(DEFAULT_PARTITIONS)
    }

    /// `--rate`, defaulted (unpaced).
    fn rate(&self) -> Rate {
        self.rate.unwrap_or(Rate::Max)
    }
}

/// Parse `--base-time`: `--start`'s forms, plus an optional trailing `Z`.
pub fn parse_base_time(s: &str) -> Result<Start, String> {
    let s = s.trim();
    parse_start(s.strip_suffix(['Z', 'z']).unwrap_or(s))
}

/// Generate and write the three files, then print the summary to stderr.
fn write(args: &NexmarkArgs) -> Result<()> {
    let dir = args.out.clone().context("--out is required")?;
    let generator = args.generator()?;
    tracing::info!(
        events = args.events,
        seed = args.seed,
        "generating Nexmark events"
    );
    let started = Instant::now();
    let progress = super::files::progress_bar(args.events, "events");
    let written = write_files(generator, &dir, &mut |n| progress.set_position(n));
    progress.finish_and_clear();
    let summary = written.with_context(|| format!("cannot write to {}", dir.display()))?;
    eprintln!("{}", summary_line(&summary, &dir, started.elapsed()));
    Ok(())
}

/// `wrote 5000 events (100 person, 300 auction, 4600 bid; 812.3 KiB) to DIR in 0.05 s (100000 events/s)`.
fn summary_line(summary: &NexmarkFiles, dir: &std::path::Path, elapsed: Duration) -> String {
    format!(
        "wrote {} to {} in {}",
        describe(&summary.counts, summary.bytes),
        dir.display(),
        speed(summary.counts.total(), elapsed),
    )
}

/// `5000 events (100 person, 300 auction, 4600 bid; 812.3 KiB)`.
fn describe(counts: &EventCounts, bytes: u64) -> String {
    format!(
        "{} events ({} person, {} auction, {} bid; {})",
        counts.total(),
        counts.person,
        counts.auction,
        counts.bid,
        human_bytes(bytes)
    )
}

/// `0.05 s (100000 events/s)`.
fn speed(events: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(1e-9);
    format!("{secs:.2} s ({:.0} events/s)", events as f64 / secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use crate::cmd::gen::GenCommand;
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<NexmarkArgs, clap::Error> {
        let argv = ["basin", "gen", "nexmark"].iter().chain(args);
        let cli = Cli::try_parse_from(argv)?;
        match cli.command {
            Command::Gen(GenCommand::Nexmark(args)) => Ok(args),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn file_flags() {
        let args = parse(&["--events", "10", "--out", "d"]).unwrap();
        assert_eq!(args.config(), NexmarkConfig::new(1));
        let args = parse(&[
            "--events",
            "10",
            "--out",
            "d",
            "--base-time",
            "2024-03-04T05:06:07Z",
            "--event-rate",
            "5",
            "--seed",
            "3",
        ])
        .unwrap();
        let config = args.config();
        assert_eq!(config.base_time_micros, 1_709_528_767_000_000);
        assert_eq!((config.event_rate, config.seed), (5, 3));
        assert!(args.check().is_ok());
    }

    #[test]
    fn topic_flags() {
        let args = parse(&["--events", "9", "--topics", "--prefix", "nx_"]).unwrap();
        assert_eq!((args.prefix(), args.partitions()), ("nx_", 4));
        assert_eq!(args.rate(), Rate::Max);
        let args = parse(&["--events", "9", "--topics", "--rate", "10/s"]).unwrap();
        assert_eq!(args.rate(), Rate::PerSecond(10.0));
    }

    #[test]
    fn bad_flags() {
        assert!(parse(&["--events", "10"]).is_err(), "needs a target");
        assert!(parse(&["--out", "d"]).is_err(), "needs --events");
        assert!(parse(&["--events", "1", "--out", "d", "--topics"]).is_err());
        assert!(parse(&["--events", "1", "--out", "d", "--prefix", "p"]).is_err());
        assert!(parse(&["--events", "1", "--out", "d", "--base-time", "x"]).is_err());
        let check = |a: &[&str]| parse(a).unwrap().check();
        assert!(check(&["--events", "0", "--out", "d"]).is_err());
        assert!(check(&["--events", "1", "--out", "d", "--event-rate", "0"]).is_err());
        assert!(check(&["--events", "1", "--topics", "--partitions", "0"]).is_err());
    }
}
