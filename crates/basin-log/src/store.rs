//! The log store of one node: every topic and its partition logs under
//! `<data-dir>/topics/<name>/`, with the topic's metadata in `topic.json`.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use tracing::{error, info};
use uuid::Uuid;

use crate::config::LogConfig;
use crate::error::{IoContext, LogError, Result};
use crate::partition::PartitionLog;
use crate::segment::Truncation;

/// What is persisted about a topic.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TopicMeta {
    pub name: String,
    pub id: Uuid,
    pub partitions: i32,
    /// Config entries set on the topic (Kafka names); the rest are defaults.
    pub configs: BTreeMap<String, String>,
    /// Internal topics (consumer offsets) are hidden from ordinary listings.
    #[serde(default)]
    pub internal: bool,
}

/// A topic and its open partition logs.
pub struct Topic {
    pub meta: TopicMeta,
    pub config: LogConfig,
    pub partitions: Vec<Arc<PartitionLog>>,
}

impl Topic {
    pub fn partition(&self, p: i32) -> Option<&Arc<PartitionLog>> {
        usize::try_from(p).ok().and_then(|p| self.partitions.get(p))
    }
}

/// All topics of a node.
pub struct LogStore {
    root: PathBuf,
    defaults: BTreeMap<String, String>,
    topics: RwLock<HashMap<String, Arc<Topic>>>,
}

/// Check a topic name with Kafka's rules.
pub fn validate_topic_name(name: &str) -> Result<()> {
    let bad = |reason: &str| {
        Err(LogError::InvalidTopicName {
            name: name.to_string(),
            reason: reason.to_string(),
        })
    };
    if name.is_empty() || name == "." || name == ".." {
        return bad("empty, `.` and `..` are not topic names");
    }
    if name.len() > 249 {
        return bad("longer than 249 characters");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return bad("only ASCII letters, digits, `.`, `_` and `-` are allowed");
    }
    Ok(())
}

/// A topic directory that `delete_topic` renamed to `.<name>.<uuid>.deleted`.
/// A topic may itself have such a name: its own directory bears the name
/// recorded in its `topic.json`, which a renamed one does not.
fn is_trash(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    if !(name.starts_with('.') && name.ends_with(".deleted")) {
        return false;
    }
    let meta_name = fs::read_to_string(path.join("topic.json"))
        .ok()
        .and_then(|text| serde_json::from_str::<TopicMeta>(&text).ok())
        .map(|meta| meta.name);
    meta_name.as_deref() != Some(name)
}

impl LogStore {
    /// Open every topic under `root`, recovering their logs.
    pub fn open(root: &Path, defaults: BTreeMap<String, String>) -> Result<LogStore> {
        let dir = root.join("topics");
        fs::create_dir_all(&dir).at(&dir)?;
        LogConfig::from_entries(defaults.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
        let store = LogStore {
            root: root.to_path_buf(),
            defaults,
            topics: RwLock::new(HashMap::new()),
        };
        for entry in fs::read_dir(&dir).at(&dir)? {
            let path = entry.at(&dir)?.path();
            if is_trash(&path) {
                // delete_topic renamed it aside but stopped before removing it.
                info!(dir = %path.display(), "finishing the deletion of a deleted topic");
                if let Err(e) = fs::remove_dir_all(&path) {
                    error!(dir = %path.display(), error = %e, "could not remove deleted topic's files");
                }
                continue;
            }
            if path.join("topic.json").exists() {
                let (topic, cuts) = store.load_topic(&path)?;
                for cut in cuts {
                    info!(topic = %topic.meta.name, file = %cut.file.display(), offset = cut.offset, "recovery truncated");
                }
                store
                    .topics
                    .write()
                    .insert(topic.meta.name.clone(), Arc::new(topic));
            }
        }
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn topic_dir(&self, name: &str) -> PathBuf {
        self.root.join("topics").join(name)
    }

    fn config_for(&self, meta: &TopicMeta) -> Result<LogConfig> {
        let merged = self.defaults.iter().chain(meta.configs.iter());
        LogConfig::from_entries(merged.map(|(k, v)| (k.as_str(), v.as_str())))
    }

    fn load_topic(&self, dir: &Path) -> Result<(Topic, Vec<Truncation>)> {
        let meta_path = dir.join("topic.json");
        let text = fs::read_to_string(&meta_path).at(&meta_path)?;
        let meta: TopicMeta =
            serde_json::from_str(&text).map_err(|e| LogError::CorruptMetadata {
                path: meta_path.clone(),
                reason: e.to_string(),
            })?;
        self.open_partitions(meta)
    }

    fn open_partitions(&self, meta: TopicMeta) -> Result<(Topic, Vec<Truncation>)> {
        let config = self.config_for(&meta)?;
        let dir = self.topic_dir(&meta.name);
        let mut partitions = Vec::with_capacity(meta.partitions as usize);
        let mut cuts = Vec::new();
        for p in 0..meta.partitions {
            let (log, mut c) = PartitionLog::open(&dir.join(p.to_string()), config.clone())?;
            partitions.push(Arc::new(log));
            cuts.append(&mut c);
        }
        Ok((
            Topic {
                meta,
                config,
                partitions,
            },
            cuts,
        ))
    }

    fn write_meta(&self, meta: &TopicMeta) -> Result<()> {
        let dir = self.topic_dir(&meta.name);
        fs::create_dir_all(&dir).at(&dir)?;
        let path = dir.join("topic.json");
        let tmp = dir.join("topic.json.tmp");
        fs::write(
            &tmp,
            serde_json::to_string_pretty(meta).expect("serializes"),
        )
        .at(&tmp)?;
        fs::rename(&tmp, &path).at(&path)
    }

    /// Create a topic with `partitions` partitions and config overrides.
    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
        internal: bool,
    ) -> Result<Arc<Topic>> {
        validate_topic_name(name)?;
        if partitions < 1 {
            return Err(LogError::InvalidConfig {
                key: "partitions".into(),
                value: partitions.to_string(),
                reason: "a topic needs at least one partition".into(),
            });
        }
        let mut topics = self.topics.write();
        if topics.contains_key(name) {
            return Err(LogError::TopicExists(name.to_string()));
        }
        let meta = TopicMeta {
            name: name.to_string(),
            id: Uuid::new_v4(),
            partitions,
            configs,
            internal,
        };
        self.config_for(&meta)?;
        self.write_meta(&meta)?;
        let (topic, _) = self.open_partitions(meta)?;
        let topic = Arc::new(topic);
        topics.insert(name.to_string(), topic.clone());
        info!(topic = name, partitions, "created topic");
        Ok(topic)
    }

    /// Delete a topic and its data.
    pub fn delete_topic(&self, name: &str) -> Result<()> {
        let removed = self.topics.write().remove(name);
        if removed.is_none() {
            return Err(LogError::UnknownTopic(name.to_string()));
        }
        let dir = self.topic_dir(name);
        let trash = self
            .root
            .join("topics")
            .join(format!(".{name}.{}.deleted", Uuid::new_v4()));
        fs::rename(&dir, &trash).at(&dir)?;
        if let Err(e) = fs::remove_dir_all(&trash) {
            error!(dir = %trash.display(), error = %e, "could not remove deleted topic's files");
        }
        info!(topic = name, "deleted topic");
        Ok(())
    }

    /// Grow a topic to `total` partitions.
    pub fn add_partitions(&self, name: &str, total: i32) -> Result<Arc<Topic>> {
        let mut topics = self.topics.write();
        let old = topics
            .get(name)
            .ok_or_else(|| LogError::UnknownTopic(name.to_string()))?;
        if total <= old.meta.partitions {
            return Err(LogError::InvalidConfig {
                key: "partitions".into(),
                value: total.to_string(),
                reason: format!(
                    "topic {name} already has {} partitions",
                    old.meta.partitions
                ),
            });
        }
        let mut meta = old.meta.clone();
        let mut partitions = old.partitions.clone();
        let dir = self.topic_dir(name);
        for p in meta.partitions..total {
            let (log, _) = PartitionLog::open(&dir.join(p.to_string()), old.config.clone())?;
            partitions.push(Arc::new(log));
        }
        meta.partitions = total;
        self.write_meta(&meta)?;
        let topic = Arc::new(Topic {
            meta,
            config: old.config.clone(),
            partitions,
        });
        topics.insert(name.to_string(), topic.clone());
        Ok(topic)
    }

    /// Change a topic's config overrides.
    pub fn alter_configs(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
    ) -> Result<Arc<Topic>> {
        let mut topics = self.topics.write();
        let old = topics
            .get(name)
            .ok_or_else(|| LogError::UnknownTopic(name.to_string()))?;
        let meta = TopicMeta {
            configs,
            ..old.meta.clone()
        };
        let config = self.config_for(&meta)?;
        self.write_meta(&meta)?;
        for p in &old.partitions {
            p.set_config(config.clone());
        }
        let topic = Arc::new(Topic {
            meta,
            config,
            partitions: old.partitions.clone(),
        });
        topics.insert(name.to_string(), topic.clone());
        Ok(topic)
    }

    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics.read().get(name).cloned()
    }

    /// All topics, sorted by name.
    pub fn topics(&self) -> Vec<Arc<Topic>> {
        let mut all: Vec<_> = self.topics.read().values().cloned().collect();
        all.sort_by(|a, b| a.meta.name.cmp(&b.meta.name));
        all
    }

    fn each_partition(&self, mut f: impl FnMut(&str, &PartitionLog) -> Result<()>) {
        for topic in self.topics() {
            for p in &topic.partitions {
                if let Err(e) = f(&topic.meta.name, p) {
                    error!(topic = %topic.meta.name, dir = %p.dir().display(), error = %e, "log maintenance failed");
                }
            }
        }
    }

    /// Flush partitions whose flush interval has passed.
    pub fn flush_due(&self, now: Instant) {
        self.each_partition(|_, p| p.flush_if_due(now).map(|_| ()));
    }

    /// Apply retention, and compaction for compacted topics, to every partition.
    pub fn enforce_retention(&self, now_ms: i64) {
        self.each_partition(|_, p| p.enforce_retention(now_ms).map(|_| ()));
        self.each_partition(|_, p| p.compact().map(|_| ()));
    }

    /// Clean close of every partition.
    pub fn close(&self) {
        self.each_partition(|_, p| p.close());
    }
}
