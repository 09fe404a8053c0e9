//! Deployed pipelines: `basin pipeline deploy|list|status|stop|restart`
//! write a pipeline's desired state into the data dir
//! (`deployments/<name>.json`), and the `basin up` node that owns the data
//! dir runs what is deployed, writing each pipeline's status next to it
//! (`deployments/<name>.status.json`, refreshed every second). Deployed
//! pipelines survive a restart of the node, and resume from their last
//! checkpoint.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use basin_stream::pipeline::{Mode, Pipeline, RunOptions};
use basin_stream::runtime::JobStats;
use serde::{Deserialize, Serialize};

/// What the user asked for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Deployment {
    pub name: String,
    pub sql: String,
    pub parallelism: usize,
    pub checkpoint_interval_ms: u64,
    #[serde(default)]
    pub state_ttl_ms: Option<u64>,
    /// Run it (deploy, restart) or not (stop).
    pub running: bool,
    /// Bumped by every deploy and restart, so the node restarts the jobs.
    pub generation: u64,
}

/// What the node reports.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DeploymentStatus {
    pub name: String,
    /// `running`, `stopped` or `failed`.
    pub state: String,
    pub error: Option<String>,
    pub generation: u64,
    pub updated_at_ms: i64,
    pub jobs: Vec<JobStatus>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct JobStatus {
    pub name: String,
    pub sink: String,
    pub rows_in: u64,
    pub rows_out: u64,
    pub late_rows: u64,
    pub checkpoints: u64,
    pub watermark_ms: i64,
    pub last_checkpoint_ms: i64,
    pub stages: Vec<StageStatus>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StageStatus {
    pub name: String,
    pub rows_in: u64,
    pub rows_out: u64,
    pub watermark_ms: i64,
    pub blocked_s: f64,
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("deployments")
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(value)?)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

pub fn write(data_dir: &Path, deployment: &Deployment) -> Result<()> {
    let dir = dir(data_dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    write_json(&dir.join(format!("{}.json", deployment.name)), deployment)
}

pub fn read(data_dir: &Path, name: &str) -> Result<Option<Deployment>> {
    let path = dir(data_dir).join(format!("{name}.json"));
    match std::fs::read(&path) {
        Ok(bytes) => {
            Ok(Some(serde_json::from_slice(&bytes).with_context(|| {
                format!("{} is corrupt", path.display())
            })?))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

pub fn read_status(data_dir: &Path, name: &str) -> Option<DeploymentStatus> {
    let bytes = std::fs::read(dir(data_dir).join(format!("{name}.status.json"))).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Every deployment in the data dir, by name.
pub fn read_all(data_dir: &Path) -> Result<Vec<Deployment>> {
    let Ok(entries) = std::fs::read_dir(dir(data_dir)) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        if let Some(name) = file
            .strip_suffix(".json")
            .filter(|n| !n.ends_with(".status"))
        {
            out.extend(read(data_dir, name)?);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// A deployment the node is running.
struct Active {
    generation: u64,
    stop: Arc<AtomicBool>,
    jobs: Vec<(String, String, Arc<JobStats>)>,
    task: tokio::task::JoinHandle<std::result::Result<(), String>>,
}

/// Run what is deployed in `data_dir` until the process ends.
pub async fn supervise(data_dir: PathBuf) {
    let mut active: HashMap<String, Active> = HashMap::new();
    let mut failed: HashMap<String, (u64, String)> = HashMap::new();
    loop {
        if let Err(e) = reconcile(&data_dir, &mut active, &mut failed).await {
            tracing::warn!(error = %format!("{e:#}"), "deployed pipelines");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn reconcile(
    data_dir: &Path,
    active: &mut HashMap<String, Active>,
    failed: &mut HashMap<String, (u64, String)>,
) -> Result<()> {
    for d in read_all(data_dir)? {
        let current = active.get(&d.name).map(|a| a.generation);
        if current.is_some() && (!d.running || current != Some(d.generation)) {
            let a = active.remove(&d.name).expect("present");
            a.stop.store(true, Ordering::Relaxed);
            let _ = a.task.await;
        }
        if let Some(a) = active.get(&d.name) {
            if a.task.is_finished() {
                let a = active.remove(&d.name).expect("present");
                let error = match a.task.await {
                    Ok(Ok(())) => "the job ended".to_string(),
                    Ok(Err(e)) => e,
                    Err(e) => e.to_string(),
                };
                tracing::warn!(pipeline = %d.name, %error, "deployed pipeline failed");
                failed.insert(d.name.clone(), (d.generation, error));
            }
        }
        let has_failed = failed.get(&d.name).is_some_and(|(g, _)| *g == d.generation);
        if d.running && !active.contains_key(&d.name) && !has_failed {
            match start(data_dir, &d).await {
                Ok(a) => {
                    tracing::info!(pipeline = %d.name, generation = d.generation, "deployed pipeline started");
                    failed.remove(&d.name);
                    active.insert(d.name.clone(), a);
                }
                Err(e) => {
                    failed.insert(d.name.clone(), (d.generation, format!("{e:#}")));
                }
            }
        }
        let status = status_of(&d, active.get(&d.name), failed.get(&d.name));
        write_json(
            &dir(data_dir).join(format!("{}.status.json", d.name)),
            &status,
        )?;
    }
    Ok(())
}

async fn start(data_dir: &Path, d: &Deployment) -> Result<Active> {
    let stop = Arc::new(AtomicBool::new(false));
    let options = RunOptions {
        mode: Mode::Stream,
        data_dir: data_dir.to_path_buf(),
        name: d.name.clone(),
        parallelism: d.parallelism,
        checkpoint_interval: Duration::from_millis(d.checkpoint_interval_ms),
        bounded: false,
        reset: false,
        discard: false,
        stop: stop.clone(),
        state_ttl: d.state_ttl_ms.map(Duration::from_millis),
        group: None,
    };
    let pipeline = Pipeline::open(&d.sql, &options).await?;
    let running = pipeline.start(&options).await?;
    let jobs = running
        .summary
        .jobs
        .iter()
        .map(|j| (j.name.clone(), j.sink.clone(), j.stats.clone()))
        .collect();
    let task =
        tokio::spawn(async move { running.wait().await.map(|_| ()).map_err(|e| e.to_string()) });
    Ok(Active {
        generation: d.generation,
        stop,
        jobs,
        task,
    })
}

fn status_of(
    d: &Deployment,
    active: Option<&Active>,
    failed: Option<&(u64, String)>,
) -> DeploymentStatus {
    let (state, error) = match (active, failed) {
        (Some(_), _) => ("running", None),
        (None, Some((g, e))) if *g == d.generation && d.running => ("failed", Some(e.clone())),
        _ => ("stopped", None),
    };
    DeploymentStatus {
        name: d.name.clone(),
        state: state.into(),
        error,
        generation: d.generation,
        updated_at_ms: now_ms(),
        jobs: active
            .map(|a| a.jobs.iter().map(|(n, s, j)| job_status(n, s, j)).collect())
            .unwrap_or_default(),
    }
}

fn job_status(name: &str, sink: &str, s: &JobStats) -> JobStatus {
    JobStatus {
        name: name.into(),
        sink: sink.into(),
        rows_in: s.rows_in.load(Ordering::Relaxed),
        rows_out: s.rows_out.load(Ordering::Relaxed),
        late_rows: s.late_rows.load(Ordering::Relaxed),
        checkpoints: s.checkpoints.load(Ordering::Relaxed),
        watermark_ms: s.watermark.load(Ordering::Relaxed),
        last_checkpoint_ms: s.last_checkpoint_ms.load(Ordering::Relaxed),
        stages: s
            .stages
            .iter()
            .map(|st| StageStatus {
                name: st.name.clone(),
                rows_in: st.rows_in.load(Ordering::Relaxed),
                rows_out: st.rows_out.load(Ordering::Relaxed),
                watermark_ms: st.watermark.load(Ordering::Relaxed),
                blocked_s: st.blocked_ns.load(Ordering::Relaxed) as f64 / 1e9,
            })
            .collect(),
    }
}
