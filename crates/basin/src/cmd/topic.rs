//! `basin topic create|list|describe|delete`: topic administration over the
//! Kafka protocol (CreateTopics, Metadata, ListOffsets, DescribeConfigs,
//! DeleteTopics) through rdkafka's admin client.

use std::io::Write;

use anyhow::{anyhow, Result};
use rdkafka::admin::{
    AdminClient, AdminOptions, ConfigEntry, ConfigResourceResult, NewTopic, ResourceSpecifier,
    TopicReplication, TopicResult,
};
use rdkafka::error::RDKafkaErrorCode;

use crate::client::{parse_key_value, CliContext, ClientArgs, TopicInfo};

type Admin = AdminClient<CliContext>;

/// The `topic` subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum TopicCommand {
    /// Create a topic.
    Create(CreateArgs),
    /// List topic names.
    List,
    /// Show partitions, leaders, watermarks and configs of a topic.
    Describe {
        /// Topic name.
        name: String,
    },
    /// Delete a topic and its data.
    Delete {
        /// Topic name.
        name: String,
    },
}

/// Flags of `basin topic create`.
#[derive(Debug, Clone, clap::Args)]
pub struct CreateArgs {
    /// Topic name.
    pub name: String,
    /// Number of partitions.
    #[arg(long, short = 'p', default_value_t = 1)]
    pub partitions: i32,
    /// Topic config KEY=VALUE (repeatable), e.g. `retention.ms=86400000`.
    #[arg(long = "config", short = 'c', value_parser = parse_key_value)]
    pub configs: Vec<(String, String)>,
    /// Shorthand for `--config retention.ms=MS` (-1: keep forever).
    #[arg(long)]
    pub retention_ms: Option<i64>,
    /// Shorthand for `--config retention.bytes=BYTES` per partition (-1: no limit).
    #[arg(long)]
    pub retention_bytes: Option<i64>,
    /// Shorthand for `--config flush.policy=...`: every-batch, interval:MS or os.
    #[arg(long, value_parser = parse_flush_policy)]
    pub flush: Option<String>,
}

impl CreateArgs {
    /// `--config` entries followed by the shorthand flags (which win).
    pub fn all_configs(&self) -> Vec<(String, String)> {
        let mut configs = self.configs.clone();
        let shorthands = [
            ("retention.ms", self.retention_ms.map(|v| v.to_string())),
            (
                "retention.bytes",
                self.retention_bytes.map(|v| v.to_string()),
            ),
            ("flush.policy", self.flush.clone()),
        ];
        for (key, value) in shorthands {
            if let Some(value) = value {
                configs.retain(|(k, _)| k != key);
                configs.push((key.to_string(), value));
            }
        }
        configs
    }
}

/// Accept `every-batch`, `interval:MS` or `os`.
pub fn parse_flush_policy(s: &str) -> Result<String, String> {
    let valid = match s.split_once(':') {
        None => s == "every-batch" || s == "os",
        Some(("interval", ms)) => ms.parse::<u64>().is_ok_and(|ms| ms > 0),
        Some(_) => false,
    };
    if valid {
        Ok(s.to_string())
    } else {
        Err(format!(
            "expected every-batch, interval:MS or os, got {s:?}"
        ))
    }
}

/// Run one `topic` subcommand.
pub async fn run(client: &ClientArgs, command: TopicCommand) -> Result<()> {
    let admin = admin_client(client)?;
    // A metadata round trip first, so an unreachable broker fails fast and clearly.
    let cluster = client.metadata(admin.inner(), None)?;
    match command {
        TopicCommand::Create(args) => create(client, &admin, &args).await,
        TopicCommand::List => list(&cluster),
        TopicCommand::Describe { name } => describe(client, &admin, &name).await,
        TopicCommand::Delete { name } => delete(client, &admin, &name).await,
    }
}

/// An admin client that never auto-creates topics by asking for them.
fn admin_client(client: &ClientArgs) -> Result<Admin> {
    let mut config = client.config();
    config.set("allow.auto.create.topics", "false");
    client.create(&config)
}

fn admin_options(client: &ClientArgs) -> AdminOptions {
    AdminOptions::new()
        .request_timeout(Some(client.timeout()))
        .operation_timeout(Some(client.timeout()))
}

async fn create(client: &ClientArgs, admin: &Admin, args: &CreateArgs) -> Result<()> {
    let configs = args.all_configs();
    let mut topic = NewTopic::new(&args.name, args.partitions, TopicReplication::Fixed(1));
    for (key, value) in &configs {
        topic = topic.set(key, value);
    }
    let results = admin
        .create_topics([&topic], &admin_options(client))
        .await
        .map_err(|e| client.request_error(admin.inner().context(), "CreateTopics", &e))?;
    single_result(results, &args.name, "create")?;
    eprintln!(
        "created topic {:?} with {} partition(s)",
        args.name, args.partitions
    );
    Ok(())
}

async fn delete(client: &ClientArgs, admin: &Admin, name: &str) -> Result<()> {
    let results = admin
        .delete_topics(&[name], &admin_options(client))
        .await
        .map_err(|e| client.request_error(admin.inner().context(), "DeleteTopics", &e))?;
    single_result(results, name, "delete")?;
    eprintln!("deleted topic {name:?}");
    Ok(())
}

/// Turn the one per-topic result of an admin call into a clear error.
fn single_result(results: Vec<TopicResult>, name: &str, verb: &str) -> Result<()> {
    let result = results
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("broker returned no result for topic {name:?}"))?;
    match result {
        Ok(_) => Ok(()),
        Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {
            Err(anyhow!("topic {name:?} already exists"))
        }
        Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {
            Err(anyhow!("unknown topic {name:?}"))
        }
        Err((_, code)) => Err(anyhow!("cannot {verb} topic {name:?}: {code}")),
    }
}

fn list(cluster: &rdkafka::metadata::Metadata) -> Result<()> {
    let mut names: Vec<&str> = cluster.topics().iter().map(|t| t.name()).collect();
    names.sort_unstable();
    let mut out = std::io::stdout().lock();
    for name in names {
        writeln!(out, "{name}")?;
    }
    Ok(())
}

async fn describe(client: &ClientArgs, admin: &Admin, name: &str) -> Result<()> {
    let info = client.topic_metadata(admin.inner(), name)?;
    let watermarks = fetch_watermarks(client, admin, &info)?;
    let configs = describe_configs(client, admin, name).await;
    let mut out = std::io::stdout().lock();
    write_partitions(&mut out, &info, &watermarks)?;
    write_configs(&mut out, configs)?;
    Ok(())
}

/// `(low, high)` watermarks for each partition of the topic.
fn fetch_watermarks(
    client: &ClientArgs,
    admin: &Admin,
    info: &TopicInfo,
) -> Result<Vec<(i64, i64)>> {
    info.partition_ids()
        .map(|p| {
            admin
                .inner()
                .fetch_watermarks(&info.name, p, client.timeout())
                .map_err(|e| client.request_error(admin.inner().context(), "ListOffsets", &e))
        })
        .collect()
}

/// The topic's config entries, sorted by name.
async fn describe_configs(
    client: &ClientArgs,
    admin: &Admin,
    name: &str,
) -> Result<Vec<ConfigEntry>> {
    let resource = ResourceSpecifier::Topic(name);
    let results = admin
        .describe_configs([&resource], &admin_options(client))
        .await
        .map_err(|e| client.request_error(admin.inner().context(), "DescribeConfigs", &e))?;
    let result: Option<ConfigResourceResult> = results.into_iter().next();
    let mut entries = match result {
        Some(Ok(resource)) => resource.entries,
        Some(Err(code)) => return Err(anyhow!("{code}")),
        None => Vec::new(),
    };
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(entries)
}

fn write_partitions(out: &mut impl Write, info: &TopicInfo, marks: &[(i64, i64)]) -> Result<()> {
    writeln!(out, "Topic: {}", info.name)?;
    writeln!(out, "Partitions: {}", info.partition_count())?;
    writeln!(
        out,
        "{:>9}  {:>6}  {:>12}  {:>12}",
        "PARTITION", "LEADER", "LOW", "HIGH"
    )?;
    for ((partition, leader), (low, high)) in info.partitions.iter().zip(marks) {
        writeln!(out, "{partition:>9}  {leader:>6}  {low:>12}  {high:>12}")?;
    }
    Ok(())
}

fn write_configs(out: &mut impl Write, configs: Result<Vec<ConfigEntry>>) -> Result<()> {
    let entries = match configs {
        Ok(entries) => entries,
        Err(e) => {
            writeln!(out, "Configs: unavailable ({e:#})")?;
            return Ok(());
        }
    };
    writeln!(out, "Configs:")?;
    for entry in entries {
        let value = entry.value.as_deref().unwrap_or("(null)");
        let marker = if entry.is_default { " (default)" } else { "" };
        writeln!(out, "  {} = {value}{marker}", entry.name)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flush_policy_values() {
        assert!(parse_flush_policy("every-batch").is_ok());
        assert!(parse_flush_policy("os").is_ok());
        assert!(parse_flush_policy("interval:250").is_ok());
        assert!(parse_flush_policy("interval:").is_err());
        assert!(parse_flush_policy("interval:0").is_err());
        assert!(parse_flush_policy("sometimes").is_err());
    }

    #[test]
    fn shorthands_override_config_entries() {
        let args = CreateArgs {
            name: "t".into(),
            partitions: 1,
            configs: vec![
                ("retention.ms".into(), "5".into()),
                ("cleanup.policy".into(), "delete".into()),
            ],
            retention_ms: Some(1000),
            retention_bytes: None,
            flush: Some("every-batch".into()),
        };
        let configs = args.all_configs();
        assert!(configs.contains(&("retention.ms".into(), "1000".into())));
        assert!(configs.contains(&("cleanup.policy".into(), "delete".into())));
        assert!(configs.contains(&("flush.policy".into(), "every-batch".into())));
        assert_eq!(configs.len(), 3);
    }

    #[test]
    fn admin_errors_are_readable() {
        let exists = single_result(
            vec![Err(("t".into(), RDKafkaErrorCode::TopicAlreadyExists))],
            "t",
            "create",
        );
        assert_eq!(
            exists.unwrap_err().to_string(),
            "topic \"t\" already exists"
        );
        let unknown = single_result(
            vec![Err(("t".into(), RDKafkaErrorCode::UnknownTopicOrPartition))],
            "t",
            "delete",
        );
        assert_eq!(unknown.unwrap_err().to_string(), "unknown topic \"t\"");
    }
}
