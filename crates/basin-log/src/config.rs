//! Per-topic log configuration, spoken in Kafka's config names so that
//! `kafka-configs`-style tools and `DescribeConfigs` see familiar keys.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{LogError, Result};

/// When appended data is forced to disk with fsync.
///
/// Under every policy a batch is written to the operating system before it
/// is acknowledged, so a crash of the Basin process (kill -9) loses nothing
/// acknowledged; the policy decides what survives a power loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FlushPolicy {
    /// fsync before every produce is acknowledged (`flush.messages=1`).
    EveryBatch,
    /// fsync at most this many milliseconds after a write (`flush.ms`).
    IntervalMs(u64),
    /// Leave write-back to the operating system.
    Os,
}

impl Default for FlushPolicy {
    fn default() -> Self {
        FlushPolicy::IntervalMs(1000)
    }
}

impl fmt::Display for FlushPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlushPolicy::EveryBatch => write!(f, "every-batch"),
            FlushPolicy::IntervalMs(ms) => write!(f, "interval:{ms}"),
            FlushPolicy::Os => write!(f, "os"),
        }
    }
}

impl FromStr for FlushPolicy {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "every-batch" | "batch" => Ok(FlushPolicy::EveryBatch),
            "os" | "none" => Ok(FlushPolicy::Os),
            _ => s
                .strip_prefix("interval:")
                .and_then(|ms| ms.trim_end_matches("ms").parse().ok())
                .map(FlushPolicy::IntervalMs)
                .ok_or_else(|| {
                    format!("unknown flush policy {s:?}: use every-batch, interval:<ms> or os")
                }),
        }
    }
}

/// What happens to old data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CleanupPolicy {
    Delete,
    Compact,
}

/// Configuration of one partition log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogConfig {
    /// Roll to a new segment past this many bytes.
    pub segment_bytes: u64,
    /// Delete old segments while the log is larger than this (-1: no limit).
    pub retention_bytes: i64,
    /// Delete segments whose newest record is older than this (-1: forever).
    pub retention_ms: i64,
    /// Add a sparse index entry every this many bytes.
    pub index_interval_bytes: u64,
    /// Largest record batch accepted.
    pub max_message_bytes: usize,
    pub flush: FlushPolicy,
    pub cleanup: CleanupPolicy,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 256 * 1024 * 1024,
            retention_bytes: -1,
            retention_ms: 7 * 24 * 3600 * 1000,
            index_interval_bytes: 4096,
            max_message_bytes: 8 * 1024 * 1024,
            flush: FlushPolicy::default(),
            cleanup: CleanupPolicy::Delete,
        }
    }
}

fn invalid(key: &str, value: &str, reason: &str) -> LogError {
    LogError::InvalidConfig {
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

fn parse_num<T: FromStr>(key: &str, value: &str) -> Result<T> {
    value
        .parse()
        .map_err(|_| invalid(key, value, "not a number"))
}

impl LogConfig {
    /// Apply one Kafka-named config entry.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        match key {
            "segment.bytes" => self.segment_bytes = parse_num(key, value)?,
            "retention.bytes" => self.retention_bytes = parse_num(key, value)?,
            "retention.ms" => self.retention_ms = parse_num(key, value)?,
            "index.interval.bytes" => self.index_interval_bytes = parse_num(key, value)?,
            "max.message.bytes" => self.max_message_bytes = parse_num(key, value)?,
            "flush.policy" => {
                self.flush = value.parse().map_err(|e: String| invalid(key, value, &e))?
            }
            "flush.messages" => {
                let n: i64 = parse_num(key, value)?;
                if n == 1 {
                    self.flush = FlushPolicy::EveryBatch;
                } else if n >= i64::from(i32::MAX) {
                    self.flush = FlushPolicy::Os;
                } else {
                    return Err(invalid(key, value, "only 1 or unlimited are supported"));
                }
            }
            "flush.ms" => {
                let ms: i64 = parse_num(key, value)?;
                self.flush = if ms >= i64::from(i32::MAX) {
                    FlushPolicy::Os
                } else if ms <= 0 {
                    FlushPolicy::EveryBatch
                } else {
                    FlushPolicy::IntervalMs(ms as u64)
                };
            }
            "cleanup.policy" => {
                self.cleanup = match value {
                    "delete" => CleanupPolicy::Delete,
                    "compact" | "compact,delete" | "delete,compact" => CleanupPolicy::Compact,
                    _ => return Err(invalid(key, value, "use delete or compact")),
                }
            }
            _ => return Err(invalid(key, value, "unknown config key")),
        }
        if self.segment_bytes < 1024 {
            return Err(invalid(key, value, "segment.bytes must be at least 1024"));
        }
        Ok(())
    }

    /// Build a config from defaults plus Kafka-named overrides.
    pub fn from_entries<'a>(entries: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self> {
        let mut config = LogConfig::default();
        for (k, v) in entries {
            config.set(k, v)?;
        }
        Ok(config)
    }

    /// All settings under their Kafka names, as `DescribeConfigs` reports them.
    pub fn entries(&self) -> BTreeMap<&'static str, String> {
        let (flush_messages, flush_ms) = match self.flush {
            FlushPolicy::EveryBatch => (1, 0),
            FlushPolicy::IntervalMs(ms) => (i64::MAX, ms as i64),
            FlushPolicy::Os => (i64::MAX, i64::MAX),
        };
        let cleanup = match self.cleanup {
            CleanupPolicy::Delete => "delete",
            CleanupPolicy::Compact => "compact",
        };
        BTreeMap::from([
            ("segment.bytes", self.segment_bytes.to_string()),
            ("retention.bytes", self.retention_bytes.to_string()),
            ("retention.ms", self.retention_ms.to_string()),
            (
                "index.interval.bytes",
                self.index_interval_bytes.to_string(),
            ),
            ("max.message.bytes", self.max_message_bytes.to_string()),
            ("flush.policy", self.flush.to_string()),
            ("flush.messages", flush_messages.to_string()),
            ("flush.ms", flush_ms.to_string()),
            ("cleanup.policy", cleanup.to_string()),
            ("message.timestamp.type", "CreateTime".to_string()),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flush_policy_parses_and_prints() {
        for s in ["every-batch", "interval:250", "os"] {
            assert_eq!(s.parse::<FlushPolicy>().unwrap().to_string(), s);
        }
        assert!("sometimes".parse::<FlushPolicy>().is_err());
    }

    #[test]
    fn kafka_names_map_to_policy() {
        let c = LogConfig::from_entries([("flush.messages", "1")]).unwrap();
        assert_eq!(c.flush, FlushPolicy::EveryBatch);
        let c = LogConfig::from_entries([("flush.ms", "50")]).unwrap();
        assert_eq!(c.flush, FlushPolicy::IntervalMs(50));
        let err = LogConfig::from_entries([("retention.ms", "soon")]).unwrap_err();
        assert!(err.to_string().contains("retention.ms=soon"), "{err}");
        assert!(LogConfig::from_entries([("no.such", "1")]).is_err());
    }
}
