//! The `basin` binary: parse the command line, set up logging, run the
//! command and print any error with its causes.

use std::process::ExitCode;

use basin::cli::Cli;
use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_filter = cli.command.default_log_filter();
    if let Err(e) = basin::logging::init(cli.log_level.as_deref(), default_filter) {
        eprintln!("error: {}", basin::error_report(&e));
        return ExitCode::from(2);
    }
    match basin::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", basin::error_report(&e));
            ExitCode::FAILURE
        }
    }
}
