//! The model registry in the data dir: `models/<name>/registry.json` lists
//! a model's versions (metrics, feature schema, parameters, the query and
//! data snapshot it was trained on, a stage, the checksum of its file) and
//! its promotion history; `models/<name>/v<N>.json` is version N's fitted
//! model. Files are written to a temporary name, synced and renamed, and
//! `registry.json` is changed under an exclusive file lock, so concurrent
//! training runs (two DAG workers) each get their own version. A model file
//! is checked against its SHA-256 when loaded and refused if it differs.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{io, MlError, Result};
use crate::features::Feature;
use crate::model::Model;
use crate::train::Report;

/// Where a version is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Candidate,
    Production,
    Archived,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Candidate => "candidate",
            Stage::Production => "production",
            Stage::Archived => "archived",
        }
    }
}

/// How a version was trained, as the caller tells it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Lineage {
    pub label: String,
    pub time_column: Option<String>,
    pub validation: String,
    /// The training query's text.
    pub query: String,
    /// What the query read, e.g. each lake table's files and row count.
    pub snapshot: serde_json::Value,
}

/// One version of a model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Version {
    pub version: u32,
    pub stage: Stage,
    /// Milliseconds since the epoch.
    pub created_ms: i64,
    pub algorithm: String,
    pub features: Vec<Feature>,
    pub params: std::collections::BTreeMap<String, String>,
    pub lineage: Lineage,
    pub report: Report,
    pub sha256: String,
}

/// A model's versions and the order they were promoted in.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub name: String,
    pub versions: Vec<Version>,
    /// Versions in the order they became production (the last one is).
    pub promotions: Vec<u32>,
}

impl Entry {
    pub fn production(&self) -> Option<&Version> {
        self.versions.iter().find(|v| v.stage == Stage::Production)
    }

    pub fn version(&self, n: u32) -> Result<&Version> {
        self.versions
            .iter()
            .find(|v| v.version == n)
            .ok_or_else(|| MlError::NotFound(format!("model {} has no version {n}", self.name)))
    }
}

/// A model named in SQL or on the command line: `fare_model` (its
/// production version) or `fare_model@3`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRef {
    pub name: String,
    pub version: Option<u32>,
}

impl ModelRef {
    pub fn parse(s: &str) -> Result<ModelRef> {
        let (name, version) = match s.split_once('@') {
            Some((n, v)) => {
                let v = v.parse().map_err(|_| {
                    MlError::Invalid(format!("'{s}': the version after @ must be a number"))
                })?;
                (n, Some(v))
            }
            None => (s, None),
        };
        check_name(name)?;
        Ok(ModelRef {
            name: name.to_string(),
            version,
        })
    }
}

/// A model name: a letter or `_`, then letters, digits or `_`.
pub fn check_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(MlError::Invalid(format!(
            "'{name}' is not a model name (letters, digits and _, not starting with a digit)"
        )))
    }
}

/// The registry under one data dir, with loaded models cached (a version's
/// file never changes once written).
#[derive(Debug)]
pub struct Registry {
    root: PathBuf,
    cache: Mutex<HashMap<(String, u32), Arc<Model>>>,
}

impl Registry {
    pub fn open(data_dir: &Path) -> Registry {
        Registry {
            root: data_dir.join("models"),
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Store `model` as the next version of `name`, a candidate.
    pub fn register(
        &self,
        name: &str,
        model: &Model,
        lineage: Lineage,
        report: Report,
    ) -> Result<u32> {
        check_name(name)?;
        let dir = self.dir(name);
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let bytes = serde_json::to_vec(model).expect("models serialize");
        self.update(name, |entry| {
            let version = entry.versions.iter().map(|v| v.version).max().unwrap_or(0) + 1;
            write_atomic(&dir.join(format!("v{version}.json")), &bytes)?;
            entry.versions.push(Version {
                version,
                stage: Stage::Candidate,
                created_ms: now_ms(),
                algorithm: model.algorithm.name().to_string(),
                features: model.features.clone(),
                params: model.param_map(),
                lineage,
                report,
                sha256: sha256_hex(&bytes),
            });
            Ok(version)
        })
    }

    /// Make `version` production; the production version before it is
    /// archived.
    pub fn promote(&self, name: &str, version: u32) -> Result<()> {
        self.update(name, |entry| {
            entry.version(version)?;
            for v in &mut entry.versions {
                if v.stage == Stage::Production && v.version != version {
                    v.stage = Stage::Archived;
                }
                if v.version == version {
                    v.stage = Stage::Production;
                }
            }
            if entry.promotions.last() != Some(&version) {
                entry.promotions.push(version);
            }
            Ok(())
        })
    }

    /// Put back the version that was production before the current one;
    /// the current one is archived. Returns the version now in production.
    pub fn rollback(&self, name: &str) -> Result<u32> {
        self.update(name, |entry| {
            let current = entry.production().map(|v| v.version).ok_or_else(|| {
                MlError::NotFound(format!("model {name} has no production version"))
            })?;
            let earlier = entry.promotions.iter().rev().find(|&&v| v != current).copied();
            let Some(back) = earlier else {
                return Err(MlError::NotFound(format!(
                    "model {name}: version {current} is the only one ever in production; nothing to roll back to"
                )));
            };
            for v in &mut entry.versions {
                if v.version == current {
                    v.stage = Stage::Archived;
                } else if v.version == back {
                    v.stage = Stage::Production;
                }
            }
            entry.promotions.pop();
            while entry.promotions.last().is_some_and(|&v| v != back) {
                entry.promotions.pop();
            }
            if entry.promotions.is_empty() {
                entry.promotions.push(back);
            }
            Ok(back)
        })
    }

    /// Every model, by name.
    pub fn list(&self) -> Result<Vec<Entry>> {
        let mut out = Vec::new();
        let Ok(dirs) = fs::read_dir(&self.root) else {
            return Ok(out);
        };
        for d in dirs.flatten() {
            let name = d.file_name().to_string_lossy().to_string();
            if d.path().join("registry.json").exists() {
                out.push(self.entry(&name)?);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// One model's registry entry.
    pub fn entry(&self, name: &str) -> Result<Entry> {
        check_name(name)?;
        let path = self.dir(name).join("registry.json");
        match fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|source| MlError::Format { path, source })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(MlError::NotFound(format!(
                "no model named {name} (train one with CREATE MODEL {name} ... AS SELECT ...)"
            ))),
            Err(e) => Err(io(path)(e)),
        }
    }

    /// The version `r` names: its own, or the production one.
    pub fn resolve(&self, r: &ModelRef) -> Result<Version> {
        let entry = self.entry(&r.name)?;
        let v = match r.version {
            Some(n) => entry.version(n)?,
            None => entry.production().ok_or_else(|| {
                MlError::NotFound(format!(
                    "model {} has no production version; promote one (basin model promote {} <version>) or pin one ({}@<version>)",
                    r.name, r.name, r.name
                ))
            })?,
        };
        Ok(v.clone())
    }

    /// Version `v` of `name`, checked against its checksum.
    pub fn load(&self, name: &str, v: &Version) -> Result<Arc<Model>> {
        let key = (name.to_string(), v.version);
        if let Some(m) = self.cache.lock().expect("cache").get(&key) {
            return Ok(m.clone());
        }
        let path = self.dir(name).join(format!("v{}.json", v.version));
        let bytes = fs::read(&path).map_err(io(&path))?;
        let found = sha256_hex(&bytes);
        if found != v.sha256 {
            return Err(MlError::Checksum {
                path,
                expected: v.sha256.clone(),
                found,
            });
        }
        let model: Model =
            serde_json::from_slice(&bytes).map_err(|source| MlError::Format { path, source })?;
        let model = Arc::new(model);
        self.cache.lock().expect("cache").insert(key, model.clone());
        Ok(model)
    }

    /// Change `name`'s entry under its lock and write it back.
    fn update<T>(&self, name: &str, change: impl FnOnce(&mut Entry) -> Result<T>) -> Result<T> {
        check_name(name)?;
        let dir = self.dir(name);
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let lock_path = dir.join(".lock");
        let lock = File::create(&lock_path).map_err(io(&lock_path))?;
        lock.lock().map_err(io(&lock_path))?;
        let mut entry = match self.entry(name) {
            Ok(e) => e,
            Err(MlError::NotFound(_)) => Entry {
                name: name.to_string(),
                versions: Vec::new(),
                promotions: Vec::new(),
            },
            Err(e) => return Err(e),
        };
        let out = change(&mut entry)?;
        let bytes = serde_json::to_vec_pretty(&entry).expect("entries serialize");
        write_atomic(&dir.join("registry.json"), &bytes)?;
        Ok(out)
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    fs::rename(&tmp, path).map_err(io(path))?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
