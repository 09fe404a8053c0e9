//! Log setup: `tracing` to stderr, filtered by `--log-level`, else
//! `RUST_LOG`, else a per-command default.

use std::io::IsTerminal;

use anyhow::{anyhow, Result};
use tracing_subscriber::EnvFilter;

/// Install the global subscriber (librdkafka's `log` records included).
pub fn init(level: Option<&str>, default: &str) -> Result<()> {
    let filter = match level {
        Some(level) => {
            EnvFilter::try_new(level).map_err(|e| anyhow!("invalid --log-level {level:?}: {e}"))?
        }
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default)),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init()
        .map_err(|e| anyhow!("cannot install logger: {e}"))
}
