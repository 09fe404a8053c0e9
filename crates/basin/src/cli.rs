//! The `basin` command line: global flags and the subcommand tree.

use clap::{Parser, Subcommand};

use crate::client::ClientArgs;
use crate::cmd::consume::ConsumeArgs;
use crate::cmd::gen::GenCommand;
use crate::cmd::pipeline::PipelineCommand;
use crate::cmd::produce::ProduceArgs;
use crate::cmd::sql::SqlArgs;
use crate::cmd::topic::TopicCommand;
use crate::cmd::up::UpArgs;

/// Basin: a data platform in one binary. This part runs a Kafka-compatible
/// broker and talks to one.
#[derive(Debug, Parser)]
#[command(name = "basin", version, about, propagate_version = true)]
pub struct Cli {
    /// Log filter: a level (error, warn, info, debug, trace) or RUST_LOG-style
    /// directives. Overrides RUST_LOG.
    #[arg(long, global = true)]
    pub log_level: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one broker node in the foreground (Ctrl-C or SIGTERM stops it).
    Up(UpArgs),
    /// Create, list, describe and delete topics.
    #[command(subcommand)]
    Topic(TopicCommand),
    /// Send lines from stdin or a file as records, one per line.
    Produce(ProduceArgs),
    /// Print a topic's records to stdout, one per line.
    Consume(ConsumeArgs),
    /// Run SQL over the catalog and the lake: a statement, a file, or a shell.
    Sql(SqlArgs),
    /// Generate realistic synthetic data sets: files or a stream to a topic.
    #[command(subcommand)]
    Gen(GenCommand),
    /// Run SQL pipelines: stream jobs over live topics, or the same file as a batch job.
    #[command(subcommand)]
    Pipeline(PipelineCommand),
    /// Orchestrate: DAGs of tasks (SQL, pipelines, shell) on schedules.
    #[command(subcommand)]
    Dag(crate::cmd::dag::DagCommand),
    /// Train models from SQL and manage their versions in the registry.
    #[command(subcommand)]
    Model(crate::cmd::model::ModelCommand),
    /// Run tasks of the orchestrator's PostgreSQL queue (--metadata) in
    /// this process, beside the scheduler's.
    Worker(crate::cmd::worker::WorkerArgs),
}

impl Command {
    /// The log filter used when neither --log-level nor RUST_LOG is set:
    /// the broker logs at info; client commands stay quiet but for warnings
    /// (librdkafka's own chatter is off; its last error shows in our errors).
    pub fn default_log_filter(&self) -> &'static str {
        match self {
            Command::Up(_) | Command::Worker(_) => "info",
            // librdkafka reports reaching a partition's end as an error.
            Command::Pipeline(_) => "info,librdkafka=off,rdkafka::client=off",
            _ => "warn,librdkafka=off",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_go_anywhere() {
        let cli = Cli::try_parse_from(["basin", "topic", "list", "--brokers", "h:1"]).unwrap();
        assert_eq!(cli.client.brokers, "h:1");
        let cli = Cli::try_parse_from(["basin", "--log-level", "debug", "topic", "list"]).unwrap();
        assert_eq!(cli.log_level.as_deref(), Some("debug"));
    }
}
