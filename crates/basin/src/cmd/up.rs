//! `basin up`: run one broker node in the foreground until Ctrl-C or SIGTERM.
//!
//! Settings come from flags / `BASIN_*` environment variables, then an
//! optional TOML file (`--config`), then [`BrokerConfig::default`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use basin_broker::{Broker, BrokerConfig};

use crate::client::parse_key_value;

/// Flags of `basin up`; each one also reads a `BASIN_*` variable.
#[derive(Debug, Clone, clap::Args)]
pub struct UpArgs {
    /// Address the Kafka listener binds [default: 127.0.0.1:9092].
    #[arg(long, env = "BASIN_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Folder for topics, group offsets and producer state [default: ./basin-data].
    #[arg(long, env = "BASIN_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// TOML file with broker settings (the fields of `BrokerConfig`).
    #[arg(long, env = "BASIN_CONFIG")]
    pub config: Option<PathBuf>,
    /// This node's id [default: 0].
    #[arg(long, env = "BASIN_NODE_ID")]
    pub node_id: Option<i32>,
    /// Host name advertised to clients (defaults to the listen address).
    #[arg(long, env = "BASIN_ADVERTISED_HOST")]
    pub advertised_host: Option<String>,
    /// Do not create topics that clients ask for but that do not exist.
    #[arg(long, env = "BASIN_NO_AUTO_CREATE")]
    pub no_auto_create: bool,
    /// Partitions of auto-created topics [default: 1].
    #[arg(long, env = "BASIN_DEFAULT_PARTITIONS")]
    pub default_partitions: Option<i32>,
    /// Default topic config, KEY=VALUE (repeatable), e.g. `flush.policy=every-batch`.
    #[arg(
        long = "log-config",
        env = "BASIN_LOG_CONFIG",
        value_parser = parse_key_value,
        value_delimiter = ','
    )]
    pub log_config: Vec<(String, String)>,
    /// Folder of DAG files; when it exists, this node runs the scheduler
    /// and a local worker over it (state in <data-dir>/flow.db).
    #[arg(long, env = "BASIN_DAGS", default_value = "./dags")]
    pub dags: PathBuf,
    /// Keep the orchestrator's state in PostgreSQL
    /// (postgres://user@host:port/db[?schema=name]), so `basin worker`
    /// processes can share the work [default: <data-dir>/flow.db].
    #[arg(long, env = "BASIN_METADATA")]
    pub metadata: Option<String>,
    /// Address of the HTTP API (keyed-table lookups, model predictions,
    /// health), or `off`
    /// [default: 127.0.0.1:9080; when that port is taken the node runs
    /// without the API and says so].
    #[arg(long, env = "BASIN_HTTP", value_parser = parse_http)]
    pub http: Option<HttpListen>,
}

/// Where the HTTP API listens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum HttpListen {
    Off,
    At(SocketAddr),
}

fn parse_http(text: &str) -> std::result::Result<HttpListen, String> {
    if text == "off" {
        return Ok(HttpListen::Off);
    }
    text.parse()
        .map(HttpListen::At)
        .map_err(|_| format!("'{text}' is not an address like 127.0.0.1:9080 (or `off`)"))
}

const DEFAULT_HTTP: &str = "127.0.0.1:9080";

/// Run the broker until a shutdown signal arrives.
pub async fn run(args: UpArgs) -> Result<()> {
    let config = resolve_config(&args)?;
    tracing::debug!(?config, "broker configuration");
    let data_dir = config.data_dir.clone();
    let broker = Broker::bind(config).await.context("cannot start broker")?;
    let addr = broker.local_addr();
    tracing::info!(%addr, data_dir = %data_dir.display(), "broker bound");
    eprintln!(
        "basin broker listening on {addr} (data in {})",
        data_dir.display()
    );
    // Deployed pipelines run here, against this node's own listener.
    std::env::set_var("BASIN_BROKERS", addr.to_string());
    let supervisor = tokio::spawn(crate::deploy::supervise(data_dir.clone()));
    let scheduler = start_scheduler(&args, &data_dir, addr)?;
    let http = start_http(args.http, addr, &data_dir).await?;
    broker
        .serve(shutdown_signal())
        .await
        .context("broker stopped with an error")?;
    supervisor.abort();
    if let Some(http) = http {
        http.abort();
    }
    // Runs in progress resume when the node starts again.
    if let Some(s) = scheduler {
        s.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    tracing::info!("broker stopped");
    Ok(())
}

/// `host:port` to reach this node's listener at `kafka` from here.
fn local(mut kafka: SocketAddr) -> String {
    if kafka.ip().is_unspecified() {
        kafka.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    kafka.to_string()
}

/// The HTTP API, reading topics through this node's listener at `kafka`
/// and models from the registry under `data_dir`.
async fn start_http(
    http: Option<HttpListen>,
    kafka: SocketAddr,
    data_dir: &Path,
) -> Result<Option<tokio::task::JoinHandle<()>>> {
    let (at, explicit) = match http {
        Some(HttpListen::Off) => return Ok(None),
        Some(HttpListen::At(at)) => (at, true),
        None => (DEFAULT_HTTP.parse().expect("valid default"), false),
    };
    let listener = match tokio::net::TcpListener::bind(at).await {
        Ok(l) => l,
        Err(e) if !explicit => {
            eprintln!(
                "no HTTP API: cannot bind {at} ({e}); pass --http ADDR to pick another address"
            );
            return Ok(None);
        }
        Err(e) => return Err(e).with_context(|| format!("--http {at}: cannot bind")),
    };
    let bound = listener.local_addr()?;
    eprintln!("basin http api on http://{bound}");
    let app = basin_server::App::new(&local(kafka), data_dir);
    Ok(Some(tokio::spawn(async move {
        if let Err(e) = basin_server::serve(listener, app, std::future::pending()).await {
            tracing::error!(error = %e, "http api stopped");
        }
    })))
}

/// The DAG scheduler over `--dags`, when that folder exists.
fn start_scheduler(
    args: &UpArgs,
    data_dir: &Path,
    kafka: SocketAddr,
) -> Result<Option<crate::cmd::dag::RunningScheduler>> {
    if !args.dags.is_dir() {
        tracing::info!(dags = %args.dags.display(), "no DAG folder: the scheduler is off");
        return Ok(None);
    }
    let settings = crate::cmd::dag::SchedulerArgs {
        folder: crate::cmd::dag::FolderArgs {
            dags: args.dags.clone(),
        },
        data_dir: data_dir.to_path_buf(),
        metadata: crate::cmd::dag::MetadataArgs {
            metadata: args.metadata.clone(),
        },
        heartbeat_timeout: std::time::Duration::from_secs(30),
        no_local_worker: false,
        tick: std::time::Duration::from_secs(1),
        concurrency: 4,
        pools: Vec::new(),
    };
    eprintln!("scheduling the DAGs of {}", args.dags.display());
    Ok(Some(crate::cmd::dag::spawn_scheduler(
        &settings,
        &local(kafka),
    )?))
}

/// Defaults, overlaid by the config file, overlaid by flags / environment.
pub fn resolve_config(args: &UpArgs) -> Result<BrokerConfig> {
    let mut config = match &args.config {
        Some(path) => load_config_file(path)?,
        None => BrokerConfig::default(),
    };
    apply_overrides(&mut config, args);
    Ok(config)
}

/// Read and parse a TOML broker config.
pub fn load_config_file(path: &Path) -> Result<BrokerConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
}

/// Replace every setting given on the command line or in the environment.
fn apply_overrides(config: &mut BrokerConfig, args: &UpArgs) {
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(dir) = &args.data_dir {
        config.data_dir = dir.clone();
    }
    if let Some(id) = args.node_id {
        config.node_id = id;
    }
    if let Some(host) = &args.advertised_host {
        config.advertised_host = Some(host.clone());
    }
    if args.no_auto_create {
        config.auto_create_topics = false;
    }
    if let Some(n) = args.default_partitions {
        config.default_partitions = n;
    }
    merge_log_config(&mut config.log_defaults, &args.log_config);
}

/// Flag entries win over the same keys from the file.
fn merge_log_config(defaults: &mut BTreeMap<String, String>, entries: &[(String, String)]) {
    for (key, value) in entries {
        defaults.insert(key.clone(), value.clone());
    }
}

/// Completes on Ctrl-C or (on Unix) SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!("cannot listen for Ctrl-C: {e}");
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        _ = ctrl_c => tracing::info!("Ctrl-C received, shutting down"),
        _ = sigterm() => tracing::info!("SIGTERM received, shutting down"),
    }
}

#[cfg(unix)]
async fn sigterm() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            term.recv().await;
        }
        Err(e) => {
            tracing::warn!("cannot listen for SIGTERM: {e}");
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(not(unix))]
async fn sigterm() {
    std::future::pending::<()>().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        up: UpArgs,
    }

    fn parse(args: &[&str]) -> UpArgs {
        Wrapper::parse_from(std::iter::once("up").chain(args.iter().copied())).up
    }

    #[test]
    fn defaults_without_flags_or_file() {
        let config = resolve_config(&parse(&[])).unwrap();
        assert_eq!(config.listen, "127.0.0.1:9092".parse().unwrap());
        assert_eq!(config.data_dir, PathBuf::from("basin-data"));
        assert!(config.auto_create_topics);
    }

    #[test]
    fn flags_override_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("basin.toml");
        let toml = "listen = \"127.0.0.1:19092\"\nnode_id = 3\ndefault_partitions = 4\n\
                    [log_defaults]\n\"retention.ms\" = \"1000\"\n\"flush.policy\" = \"os\"\n";
        std::fs::write(&path, toml).unwrap();
        let args = parse(&[
            "--config",
            path.to_str().unwrap(),
            "--node-id",
            "7",
            "--no-auto-create",
            "--log-config",
            "flush.policy=every-batch",
        ]);
        let config = resolve_config(&args).unwrap();
        assert_eq!(config.listen, "127.0.0.1:19092".parse().unwrap());
        assert_eq!(config.node_id, 7);
        assert_eq!(config.default_partitions, 4);
        assert!(!config.auto_create_topics);
        assert_eq!(config.log_defaults["retention.ms"], "1000");
        assert_eq!(config.log_defaults["flush.policy"], "every-batch");
    }

    #[test]
    fn bad_config_file_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "no_such_field = 1\n").unwrap();
        let err = load_config_file(&path).unwrap_err();
        assert!(format!("{err:#}").contains("bad.toml"), "{err:#}");
    }
}
