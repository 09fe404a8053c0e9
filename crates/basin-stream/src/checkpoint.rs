//! Checkpoint storage of one job: `chk-<id>/` folders under the job's
//! folder, each with the state of every keyed task (Arrow IPC files) and a
//! `_manifest.json` (source offsets, state files, sink files to commit)
//! written last, by rename, after everything it names is fsynced. A
//! checkpoint exists once its manifest does; the newest one is where a
//! restarted job resumes.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use datafusion::arrow::ipc::reader::FileReader;
use datafusion::arrow::ipc::writer::FileWriter;
use datafusion::arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

use crate::error::{IoContext, Result, StreamError};

const MANIFEST: &str = "_manifest.json";
/// Completed checkpoints kept on disk.
const KEEP: usize = 2;

/// What a completed checkpoint holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub id: u64,
    /// Identifies the pipeline SQL the state belongs to.
    pub fingerprint: String,
    pub parallelism: usize,
    /// Next offset to read, per source stage and partition (`stage:partition`);
    /// for a repartition input also each writer's last watermark (`stage:w<writer>`).
    pub offsets: BTreeMap<String, i64>,
    /// State file of each stateful operator, by `task-operator` key.
    pub states: BTreeMap<String, String>,
    /// Files the sink commits for this checkpoint.
    pub sink_files: Vec<PathBuf>,
    pub completed_at_ms: i64,
}

/// The checkpoints of one job.
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    dir: PathBuf,
}

impl CheckpointStore {
    pub fn new(dir: &Path) -> Result<CheckpointStore> {
        fs::create_dir_all(dir).at(dir)?;
        Ok(CheckpointStore {
            dir: dir.to_path_buf(),
        })
    }

    /// The job's checkpoint folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn folder(&self, id: u64) -> PathBuf {
        self.dir.join(format!("chk-{id:012}"))
    }

    /// Completed checkpoints, oldest first.
    fn completed(&self) -> Result<Vec<u64>> {
        let mut ids = Vec::new();
        for entry in fs::read_dir(&self.dir).at(&self.dir)? {
            let path = entry.at(&self.dir)?.path();
            let name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            if let Some(id) = name
                .strip_prefix("chk-")
                .and_then(|n| n.parse::<u64>().ok())
            {
                if path.join(MANIFEST).exists() {
                    ids.push(id);
                }
            }
        }
        ids.sort_unstable();
        Ok(ids)
    }

    /// The newest completed checkpoint.
    pub fn latest(&self) -> Result<Option<Manifest>> {
        let Some(id) = self.completed()?.pop() else {
            return Ok(None);
        };
        self.get(id)
    }

    /// Forget checkpoints newer than `id` (their output never committed).
    pub fn discard_after(&self, id: u64) -> Result<()> {
        for newer in self.completed()?.into_iter().filter(|c| *c > id) {
            let path = self.folder(newer);
            fs::remove_dir_all(&path).at(&path)?;
        }
        Ok(())
    }

    /// Checkpoint `id`, if it completed and is still kept.
    pub fn get(&self, id: u64) -> Result<Option<Manifest>> {
        let path = self.folder(id).join(MANIFEST);
        if !path.exists() {
            return Ok(None);
        }
        let text = fs::read_to_string(&path).at(&path)?;
        let manifest = serde_json::from_str(&text).map_err(|e| StreamError::Checkpoint {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        Ok(Some(manifest))
    }

    /// Write keyed task `task`'s state for checkpoint `id`; its file name.
    pub fn write_state(&self, id: u64, key: &str, state: &RecordBatch) -> Result<String> {
        let folder = self.folder(id);
        fs::create_dir_all(&folder).at(&folder)?;
        let name = format!("state-{key}.arrow");
        let path = folder.join(&name);
        let file = fs::File::create(&path).at(&path)?;
        let mut writer = FileWriter::try_new(file, &state.schema())?;
        writer.write(state)?;
        writer.finish()?;
        writer.into_inner()?.sync_all().at(&path)?;
        Ok(name)
    }

    /// The state `manifest` records for keyed task `task`.
    pub fn read_state(&self, manifest: &Manifest, key: &str) -> Result<Option<RecordBatch>> {
        let Some(name) = manifest.states.get(key) else {
            return Ok(None);
        };
        let path = self.folder(manifest.id).join(name);
        let file = fs::File::open(&path).at(&path)?;
        let reader = FileReader::try_new(file, None)?;
        let schema = reader.schema();
        let batches = reader.collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(Some(datafusion::arrow::compute::concat_batches(
            &schema, &batches,
        )?))
    }

    /// The bytes of state file `name` of checkpoint `id`.
    pub fn state_bytes(&self, id: u64, name: &str) -> Result<Vec<u8>> {
        let path = self.folder(id).join(name);
        fs::read(&path).at(&path)
    }

    /// Write state file `name` of checkpoint `id` as restored from
    /// elsewhere (the checkpoint completes with its manifest).
    pub fn put_state(&self, id: u64, name: &str, bytes: &[u8]) -> Result<()> {
        let folder = self.folder(id);
        fs::create_dir_all(&folder).at(&folder)?;
        let path = folder.join(name);
        fs::write(&path, bytes).at(&path)?;
        fs::File::open(&path).and_then(|f| f.sync_all()).at(&path)
    }

    /// Record a checkpoint as complete, then drop old ones.
    pub fn complete(&self, manifest: &Manifest) -> Result<()> {
        let folder = self.folder(manifest.id);
        fs::create_dir_all(&folder).at(&folder)?;
        let tmp = folder.join("_manifest.tmp");
        let text = serde_json::to_string_pretty(manifest).expect("manifest serializes");
        fs::write(&tmp, text).at(&tmp)?;
        fs::File::open(&tmp).and_then(|f| f.sync_all()).at(&tmp)?;
        fs::rename(&tmp, folder.join(MANIFEST)).at(&folder)?;
        fs::File::open(&folder)
            .and_then(|f| f.sync_all())
            .at(&folder)?;
        let completed = self.completed()?;
        for old in &completed[..completed.len().saturating_sub(KEEP)] {
            let path = self.folder(*old);
            fs::remove_dir_all(&path).at(&path)?;
        }
        Ok(())
    }

    /// Remove every checkpoint (`--reset`).
    pub fn clear(&self) -> Result<()> {
        fs::remove_dir_all(&self.dir).at(&self.dir)?;
        fs::create_dir_all(&self.dir).at(&self.dir)
    }
}
