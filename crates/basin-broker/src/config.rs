//! Broker settings, filled by the `basin` binary from flags, a TOML file and
//! `BASIN_*` environment variables.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Everything a single broker node needs to start.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    /// Address the Kafka listener binds.
    pub listen: SocketAddr,
    /// Host name advertised to clients in Metadata (defaults to the listen IP).
    pub advertised_host: Option<String>,
    /// Folder holding topics, group offsets and producer ids.
    pub data_dir: PathBuf,
    pub node_id: i32,
    /// Create a topic when a client asks Metadata for one that is missing.
    pub auto_create_topics: bool,
    /// Partitions of auto-created topics.
    pub default_partitions: i32,
    /// Log config defaults for every topic (Kafka names: `retention.ms`, `flush.policy`...).
    pub log_defaults: BTreeMap<String, String>,
    /// Largest request frame accepted; larger ones close the connection.
    pub max_request_bytes: usize,
    /// How often retention is enforced.
    #[serde(with = "millis")]
    pub retention_check_interval: Duration,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            listen: "127.0.0.1:9092".parse().expect("valid address"),
            advertised_host: None,
            data_dir: PathBuf::from("basin-data"),
            node_id: 0,
            auto_create_topics: true,
            default_partitions: 1,
            log_defaults: BTreeMap::new(),
            max_request_bytes: 100 * 1024 * 1024,
            retention_check_interval: Duration::from_secs(60),
        }
    }
}

mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}
