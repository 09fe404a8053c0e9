//! The `basin` binary's library: command-line definitions, the subcommands
//! (`up`, `topic`, `produce`, `consume`), shared Kafka-client setup and the
//! Java-compatible partitioner. `main.rs` only parses and dispatches.

pub mod cli;
pub mod client;
pub mod cmd;
pub mod deploy;
pub mod logging;
pub mod partitioner;

use anyhow::{Context, Result};

use crate::cli::{Cli, Command};

/// Run the parsed command line to completion.
pub async fn run(cli: Cli) -> Result<()> {
    let client = cli.client;
    match cli.command {
        Command::Up(args) => cmd::up::run(args).await,
        Command::Topic(command) => cmd::topic::run(&client, command).await,
        Command::Produce(args) => {
            tokio::task::spawn_blocking(move || cmd::produce::run(&client, args))
                .await
                .context("producer thread panicked")?
        }
        Command::Consume(args) => cmd::consume::run(&client, args).await,
        Command::Gen(command) => cmd::gen::run(&client, command).await,
        Command::Sql(args) => cmd::sql::run(args).await,
        Command::Pipeline(command) => cmd::pipeline::run(&client, command).await,
        Command::Dag(command) => cmd::dag::run(&client, command).await,
        Command::Worker(args) => cmd::worker::run(&client, args).await,
        Command::Model(command) => cmd::model::run(command).await,
    }
}

/// `outer: cause: root cause`, skipping causes whose text an outer message
/// already includes (some errors repeat their source in their own message).
pub fn error_report(error: &anyhow::Error) -> String {
    let mut report = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if report.contains(&text) {
            continue;
        }
        if !report.is_empty() {
            report.push_str(": ");
        }
        report.push_str(&text);
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_report_skips_repeated_causes() {
        let io = std::io::Error::new(std::io::ErrorKind::AddrInUse, "in use");
        let inner = anyhow::Error::new(io).context("cannot listen on x: in use");
        let outer = inner.context("cannot start broker");
        assert_eq!(
            error_report(&outer),
            "cannot start broker: cannot listen on x: in use"
        );
        let plain = anyhow::anyhow!("root").context("outer");
        assert_eq!(error_report(&plain), "outer: root");
    }
}
