//! The `basin` binary's library: command-line definitions, the subcommands
//! (`up`, `topic`, `produce`, `consume`), shared Kafka-client setup and the
//! Java-compatible partitioner. `main.rs` only parses and dispatches.

pub mod cli;
pub mod client;
pub mod cmd;
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
    }
}
