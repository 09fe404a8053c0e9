//! Lake tables: Parquet files under `<data-dir>/lake/<table>/`, optionally
//! partitioned by columns in the hive layout (`col=value/` folders).
//!
//! Writes are atomic. Each write builds a complete new version folder
//! `v<N+1>/` (an append first hard-links the files of `v<N>`), and only then
//! replaces `_table.json`, whose `version` names the folder readers use. A
//! reader therefore sees the old table or the new one, never half; a write
//! killed midway leaves an unreferenced folder, removed on the next open.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Schema, SchemaRef};
use serde::{Deserialize, Serialize};
use tracing::info;

use crate::error::{IoContext, Result, SqlError};

pub const META_FILE: &str = "_table.json";

/// What `_table.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LakeMeta {
    pub name: String,
    /// Arrow schema of the table, partition columns last.
    pub schema: Schema,
    pub partition_cols: Vec<String>,
    /// The live version folder, `v<version>`; 0 means no data yet.
    pub version: u64,
}

impl LakeMeta {
    pub fn schema_ref(&self) -> SchemaRef {
        Arc::new(self.schema.clone())
    }

    /// Partition columns with their types.
    pub fn partition_fields(&self) -> Vec<(String, DataType)> {
        self.partition_cols
            .iter()
            .filter_map(|c| {
                self.schema
                    .field_with_name(c)
                    .ok()
                    .map(|f| (c.clone(), f.data_type().clone()))
            })
            .collect()
    }

    /// Schema of the data files: the table schema without partition columns.
    pub fn file_schema(&self) -> SchemaRef {
        let fields: Vec<_> = self
            .schema
            .fields()
            .iter()
            .filter(|f| !self.partition_cols.contains(f.name()))
            .cloned()
            .collect();
        Arc::new(Schema::new(fields))
    }
}

/// The lake folder of a data dir.
#[derive(Debug, Clone)]
pub struct Lake {
    root: PathBuf,
}

/// What opening the lake cleaned up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    pub table: String,
    pub folder: PathBuf,
}

fn version_of(name: &str) -> Option<u64> {
    name.strip_prefix('v')?.parse().ok()
}

impl Lake {
    pub fn open(data_dir: &Path) -> Result<Lake> {
        let root = data_dir.join("lake");
        fs::create_dir_all(&root).at(&root)?;
        Ok(Lake { root })
    }

    pub fn table_dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    pub fn version_dir(&self, name: &str, version: u64) -> PathBuf {
        self.table_dir(name).join(format!("v{version}"))
    }

    /// Names of every lake table.
    pub fn table_names(&self) -> Vec<String> {
        let Ok(entries) = fs::read_dir(&self.root) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join(META_FILE).exists())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    pub fn meta(&self, name: &str) -> Result<Option<LakeMeta>> {
        let path = self.table_dir(name).join(META_FILE);
        match fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| SqlError::Catalog {
                    path,
                    reason: e.to_string(),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).at(&path),
        }
    }

    /// Make `meta` the live state of its table: write a temp file, fsync it,
    /// rename it over `_table.json`, fsync the folder.
    pub fn commit(&self, meta: &LakeMeta) -> Result<()> {
        let dir = self.table_dir(&meta.name);
        fs::create_dir_all(&dir).at(&dir)?;
        let tmp = dir.join("_table.json.tmp");
        let text = serde_json::to_string_pretty(meta).expect("lake meta serializes");
        fs::write(&tmp, text).at(&tmp)?;
        fs::File::open(&tmp).and_then(|f| f.sync_all()).at(&tmp)?;
        fs::rename(&tmp, dir.join(META_FILE)).at(&dir)?;
        fs::File::open(&dir).and_then(|f| f.sync_all()).at(&dir)?;
        self.collect_garbage(meta)
    }

    /// Remove versions older than the one before `meta.version` (the one
    /// before stays for readers that planned against it).
    fn collect_garbage(&self, meta: &LakeMeta) -> Result<()> {
        for (version, path) in self.versions(&meta.name)? {
            if version + 1 < meta.version {
                fs::remove_dir_all(&path).at(&path)?;
            }
        }
        Ok(())
    }

    fn versions(&self, name: &str) -> Result<Vec<(u64, PathBuf)>> {
        let dir = self.table_dir(name);
        let mut out = Vec::new();
        if !dir.exists() {
            return Ok(out);
        }
        for entry in fs::read_dir(&dir).at(&dir)? {
            let entry = entry.at(&dir)?;
            if let Some(v) = version_of(&entry.file_name().to_string_lossy()) {
                out.push((v, entry.path()));
            }
        }
        Ok(out)
    }

    /// Remove version folders newer than the live one: the remains of
    /// writes that never committed.
    pub fn clean_leftovers(&self) -> Result<Vec<Leftover>> {
        let mut cleaned = self.clean_orphans()?;
        for name in self.table_names() {
            let Some(meta) = self.meta(&name)? else {
                continue;
            };
            for (version, path) in self.versions(&name)? {
                if version > meta.version {
                    fs::remove_dir_all(&path).at(&path)?;
                    info!(table = %name, folder = %path.display(), "removed an unfinished write");
                    cleaned.push(Leftover {
                        table: name.clone(),
                        folder: path,
                    });
                }
            }
        }
        Ok(cleaned)
    }

    /// Remove table folders that never got a `_table.json`: a first write
    /// (CREATE TABLE ... AS) that was killed before its commit.
    fn clean_orphans(&self) -> Result<Vec<Leftover>> {
        let mut cleaned = Vec::new();
        for entry in fs::read_dir(&self.root).at(&self.root)? {
            let path = entry.at(&self.root)?.path();
            if path.is_dir() && !path.join(META_FILE).exists() {
                fs::remove_dir_all(&path).at(&path)?;
                let table = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                info!(table = %table, folder = %path.display(), "removed a table whose first write never finished");
                cleaned.push(Leftover {
                    table,
                    folder: path,
                });
            }
        }
        Ok(cleaned)
    }

    /// Drop a table and its files.
    pub fn drop_table(&self, name: &str) -> Result<bool> {
        let dir = self.table_dir(name);
        if !dir.join(META_FILE).exists() {
            return Ok(false);
        }
        fs::remove_file(dir.join(META_FILE)).at(&dir)?;
        fs::remove_dir_all(&dir).at(&dir)?;
        Ok(true)
    }

    /// Prepare the folder of the next version: empty for an overwrite, or
    /// holding hard links to the live files for an append.
    pub fn stage(&self, meta: &LakeMeta, append: bool) -> Result<(u64, PathBuf)> {
        let next = self
            .versions(&meta.name)?
            .iter()
            .map(|(v, _)| *v)
            .max()
            .unwrap_or(0)
            .max(meta.version)
            + 1;
        let dir = self.version_dir(&meta.name, next);
        fs::create_dir_all(&dir).at(&dir)?;
        if append && meta.version > 0 {
            link_tree(&self.version_dir(&meta.name, meta.version), &dir)?;
        }
        Ok((next, dir))
    }

    /// Files per partition folder of a version (for tests and `describe`).
    pub fn files(&self, name: &str, version: u64) -> Result<HashMap<PathBuf, Vec<PathBuf>>> {
        let mut out: HashMap<PathBuf, Vec<PathBuf>> = HashMap::new();
        collect_files(&self.version_dir(name, version), &mut out)?;
        Ok(out)
    }
}

fn link_tree(from: &Path, to: &Path) -> Result<()> {
    for entry in fs::read_dir(from).at(from)? {
        let entry = entry.at(from)?;
        let target = to.join(entry.file_name());
        if entry.file_type().at(from)?.is_dir() {
            fs::create_dir_all(&target).at(&target)?;
            link_tree(&entry.path(), &target)?;
        } else {
            fs::hard_link(entry.path(), &target).at(&target)?;
        }
    }
    Ok(())
}

fn collect_files(dir: &Path, out: &mut HashMap<PathBuf, Vec<PathBuf>>) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    for entry in fs::read_dir(dir).at(dir)? {
        let entry = entry.at(dir)?;
        if entry.file_type().at(dir)?.is_dir() {
            collect_files(&entry.path(), out)?;
        } else {
            out.entry(dir.to_path_buf()).or_default().push(entry.path());
        }
    }
    Ok(())
}
