//! Running one job. Source tasks (one thread each, owning some partitions)
//! decode, assign windows and run the stateless steps; with a keyed stage
//! they hash rows by group key to keyed tasks over bounded channels (a
//! slow sink blocks its task, which blocks the sources: backpressure, not
//! memory growth). The coordinator (the calling thread) injects checkpoint
//! barriers into the sources; each task passes them on in order with its
//! data, keyed tasks align them across inputs and save their state, sinks
//! make their output durable, and the coordinator records the checkpoint
//! and commits the sinks. A restarted job resumes from the newest
//! checkpoint: offsets, state and sink commits.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hasher;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{
    bounded, unbounded, Receiver, RecvTimeoutError, Select, Sender, TryRecvError,
};
use datafusion::arrow::array::{ArrayRef, UInt32Array};
use datafusion::arrow::compute::take;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{RowConverter, SortField};
use tracing::{debug, info};

use crate::agg::Aggregate;
use crate::checkpoint::{CheckpointStore, Manifest};
use crate::error::{Result, StreamError};
use crate::ops::{Chain, Operator, Step};
use crate::plan::{JobPlan, KeyedOp, KeyedPlan};
use crate::session::SessionOp;
use crate::sink::{Sink, SinkTarget};
use crate::source::TopicReader;
use crate::topn::TopN;

/// Batches in flight between two tasks.
const CHANNEL_DEPTH: usize = 16;
const ROWS_PER_POLL: usize = 8192;
const POLL_WAIT: Duration = Duration::from_millis(50);
/// How often updating aggregates emit their changed groups.
const TICK: Duration = Duration::from_secs(1);

/// How to run a job.
#[derive(Debug, Clone)]
pub struct JobConfig {
    /// Names the job in logs and in committed file names.
    pub name: String,
    pub checkpoint_dir: PathBuf,
    pub parallelism: usize,
    pub checkpoint_interval: Duration,
    /// Read each partition up to its end at start, then finish.
    pub bounded: bool,
    pub fingerprint: String,
}

/// Counters of a running job.
#[derive(Debug, Default)]
pub struct JobStats {
    pub rows_in: AtomicU64,
    pub rows_out: AtomicU64,
    pub late_rows: AtomicU64,
    pub checkpoints: AtomicU64,
    pub watermark: AtomicI64,
}

enum Msg {
    Data(RecordBatch),
    Watermark(i64),
    Barrier(u64),
    End,
}

enum Control {
    Checkpoint(u64),
    Stop,
}

enum Report {
    Ack {
        id: u64,
        offsets: HashMap<i32, i64>,
        states: Vec<(String, String)>,
        files: Vec<PathBuf>,
    },
    Finished,
    Failed(String),
}

/// Run `plan` into `sink` until its bounded input ends (or forever).
pub fn run_job(
    plan: JobPlan,
    sink: SinkTarget,
    config: JobConfig,
    stats: Arc<JobStats>,
) -> Result<()> {
    let store = CheckpointStore::new(&config.checkpoint_dir)?;
    let restored = store.latest()?;
    if let Some(m) = &restored {
        check_compatible(m, &config)?;
        sink.commit(&config.name, &m.sink_files)?;
        info!(job = %config.name, checkpoint = m.id, "resuming from checkpoint");
    }
    let partitions = plan.scan.source.partitions()?;
    let sources = config.parallelism.clamp(1, partitions.len());
    let keyed = if plan.keyed.is_some() {
        config.parallelism.max(1)
    } else {
        0
    };
    let (report_tx, report_rx) = unbounded();
    let mut handles = Vec::new();
    let mut keyed_inputs: Vec<Vec<Sender<Msg>>> = vec![Vec::new(); sources];
    for k in 0..keyed {
        let mut receivers = Vec::new();
        for inputs in keyed_inputs.iter_mut() {
            let (tx, rx) = bounded(CHANNEL_DEPTH);
            inputs.push(tx);
            receivers.push(rx);
        }
        let keyed_plan = plan.keyed.clone().expect("keyed");
        let mut stage = Stage::new(&plan)?;
        if let Some(m) = &restored {
            stage.restore(&store, m, k)?;
        }
        let task = KeyedTask {
            index: k,
            plan: keyed_plan,
            sink: sink.open(&config.checkpoint_dir.join("staging"), k)?,
            inputs: receivers,
            store: store.clone(),
            reports: report_tx.clone(),
            stats: stats.clone(),
        };
        handles.push(spawn(
            format!("{}-keyed-{k}", config.name),
            report_tx.clone(),
            move || task.run(stage),
        ));
    }
    let mut controls = Vec::new();
    let start: HashMap<i32, i64> = restored
        .as_ref()
        .map(|m| m.offsets.iter().map(|(p, o)| (*p, *o)).collect())
        .unwrap_or_default();
    for (s, outputs) in keyed_inputs.into_iter().enumerate() {
        let owned: Vec<i32> = partitions
            .iter()
            .copied()
            .skip(s)
            .step_by(sources)
            .collect();
        let (ctl_tx, ctl_rx) = unbounded();
        controls.push(ctl_tx);
        let sink = if keyed == 0 {
            Some(sink.open(&config.checkpoint_dir.join("staging"), s)?)
        } else {
            None
        };
        let task = SourceTask {
            plan: plan.clone(),
            reader: TopicReader::open(plan.scan.source.clone(), &owned, &start, config.bounded)?,
            outputs,
            sink,
            control: ctl_rx,
            reports: report_tx.clone(),
            stats: stats.clone(),
        };
        handles.push(spawn(
            format!("{}-source-{s}", config.name),
            report_tx.clone(),
            move || task.run(),
        ));
    }
    drop(report_tx);
    let mut coordinator = Coordinator {
        config,
        store,
        sink,
        controls,
        tasks: sources + keyed,
        sources,
        next_id: restored.as_ref().map_or(1, |m| m.id + 1),
        stats,
        pending: None,
        finished: 0,
        final_id: None,
    };
    let outcome = coordinator.run(report_rx);
    for c in &coordinator.controls {
        let _ = c.send(Control::Stop);
    }
    if outcome.is_ok() {
        for h in handles {
            let _ = h.join();
        }
    }
    outcome
}

fn check_compatible(m: &Manifest, config: &JobConfig) -> Result<()> {
    if m.fingerprint != config.fingerprint {
        return Err(StreamError::Task(format!(
            "job {} was checkpointed with different SQL; run with --reset to start over from the beginning",
            config.name
        )));
    }
    if m.parallelism != config.parallelism {
        return Err(StreamError::Task(format!(
            "job {} was checkpointed with --parallelism {}; restart it with the same parallelism or --reset",
            config.name, m.parallelism
        )));
    }
    Ok(())
}

fn spawn(
    name: String,
    reports: Sender<Report>,
    body: impl FnOnce() -> Result<()> + Send + 'static,
) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body));
            let failure = match outcome {
                Ok(Ok(())) => return,
                Ok(Err(e)) => format!("{name}: {e}"),
                Err(_) => format!("{name} panicked"),
            };
            let _ = reports.send(Report::Failed(failure));
        })
        .expect("spawn task thread")
}

/// A checkpoint waiting for acknowledgements.
struct Pending {
    id: u64,
    acks: usize,
    offsets: BTreeMap<i32, i64>,
    states: BTreeMap<String, String>,
    files: Vec<PathBuf>,
}

struct Coordinator {
    config: JobConfig,
    store: CheckpointStore,
    sink: SinkTarget,
    controls: Vec<Sender<Control>>,
    tasks: usize,
    sources: usize,
    next_id: u64,
    stats: Arc<JobStats>,
    pending: Option<Pending>,
    finished: usize,
    final_id: Option<u64>,
}

impl Coordinator {
    fn run(&mut self, reports: Receiver<Report>) -> Result<()> {
        let mut due = Instant::now() + self.config.checkpoint_interval;
        loop {
            let wait = due.saturating_duration_since(Instant::now());
            match reports.recv_timeout(wait) {
                Ok(Report::Ack {
                    id,
                    offsets,
                    states,
                    files,
                }) => {
                    if self.acknowledge(id, offsets, states, files)? {
                        return Ok(());
                    }
                }
                Ok(Report::Finished) => {
                    self.finished += 1;
                    if self.finished == self.sources && self.pending.is_none() {
                        self.trigger(true);
                    }
                }
                Ok(Report::Failed(message)) => return Err(StreamError::Task(message)),
                Err(RecvTimeoutError::Timeout) => {
                    if self.pending.is_none() {
                        self.trigger(false);
                    }
                    due = Instant::now() + self.config.checkpoint_interval;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(StreamError::Task(format!(
                        "job {}: every task stopped",
                        self.config.name
                    )))
                }
            }
        }
    }

    fn trigger(&mut self, last: bool) {
        let id = self.next_id;
        self.next_id += 1;
        if last {
            self.final_id = Some(id);
        }
        debug!(job = %self.config.name, checkpoint = id, "checkpoint triggered");
        self.pending = Some(Pending {
            id,
            acks: 0,
            offsets: BTreeMap::new(),
            states: BTreeMap::new(),
            files: Vec::new(),
        });
        for c in &self.controls {
            let _ = c.send(Control::Checkpoint(id));
        }
    }

    /// Count an ack; true once the final checkpoint is complete.
    fn acknowledge(
        &mut self,
        id: u64,
        offsets: HashMap<i32, i64>,
        states: Vec<(String, String)>,
        files: Vec<PathBuf>,
    ) -> Result<bool> {
        let Some(p) = self.pending.as_mut().filter(|p| p.id == id) else {
            return Ok(false);
        };
        p.acks += 1;
        p.offsets.extend(offsets);
        p.states.extend(states);
        p.files.extend(files);
        if p.acks < self.tasks {
            return Ok(false);
        }
        let p = self.pending.take().expect("pending");
        let manifest = Manifest {
            id: p.id,
            fingerprint: self.config.fingerprint.clone(),
            parallelism: self.config.parallelism,
            offsets: p.offsets,
            states: p.states,
            sink_files: p.files,
            completed_at_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
        };
        self.store.complete(&manifest)?;
        self.sink.commit(&self.config.name, &manifest.sink_files)?;
        self.stats.checkpoints.fetch_add(1, Ordering::Relaxed);
        debug!(job = %self.config.name, checkpoint = id, "checkpoint complete");
        if self.final_id == Some(id) {
            return Ok(true);
        }
        if self.finished == self.sources {
            self.trigger(true);
        }
        Ok(false)
    }
}

/// Reads partitions, runs the stateless steps, and feeds keyed tasks or a sink.
struct SourceTask {
    plan: JobPlan,
    reader: TopicReader,
    outputs: Vec<Sender<Msg>>,
    sink: Option<Box<dyn Sink>>,
    control: Receiver<Control>,
    reports: Sender<Report>,
    stats: Arc<JobStats>,
}

impl SourceTask {
    fn run(mut self) -> Result<()> {
        let mut watermark = i64::MIN;
        let mut done = false;
        let exchange = Exchange::new(&self.plan, self.outputs.len())?;
        loop {
            let control = if done {
                self.control.recv().map_err(|_| TryRecvError::Disconnected)
            } else {
                self.control.try_recv()
            };
            match control {
                Ok(Control::Checkpoint(id)) => self.barrier(id)?,
                Ok(Control::Stop) | Err(TryRecvError::Disconnected) => {
                    self.broadcast(Msg::End);
                    return Ok(());
                }
                Err(TryRecvError::Empty) => {}
            }
            if done {
                continue;
            }
            if let Some(batch) = self.reader.poll(ROWS_PER_POLL, POLL_WAIT)? {
                self.stats
                    .rows_in
                    .fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
                let batch = self.prepare(batch)?;
                self.emit(batch, &exchange)?;
            }
            if let Some(w) = self.reader.watermark().filter(|w| *w > watermark) {
                watermark = w;
                self.stats.watermark.fetch_max(w, Ordering::Relaxed);
                self.broadcast(Msg::Watermark(w));
            }
            if self.reader.finished() {
                done = true;
                let _ = self.reports.send(Report::Finished);
            }
        }
    }

    /// Windows, projection and stateless steps.
    fn prepare(&self, batch: RecordBatch) -> Result<RecordBatch> {
        let scan = &self.plan.scan;
        let batch = match &scan.window {
            Some((spec, schema)) => spec.assign(&batch, schema)?,
            None => batch,
        };
        if self
            .plan
            .keyed
            .as_ref()
            .is_some_and(|k| k.session.is_some())
        {
            return Ok(batch); // sessions merge first, in the keyed tasks
        }
        let batch = match &scan.projection {
            Some(p) => batch.project(p)?,
            None => batch,
        };
        self.plan.pre.apply(batch)
    }

    fn emit(&mut self, batch: RecordBatch, exchange: &Exchange) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if let Some(sink) = self.sink.as_mut() {
            self.stats
                .rows_out
                .fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
            return sink.write(&batch);
        }
        for (k, part) in exchange.split(batch)? {
            if self.outputs[k].send(Msg::Data(part)).is_err() {
                return Err(StreamError::Task("a keyed task stopped".into()));
            }
        }
        Ok(())
    }

    fn barrier(&mut self, id: u64) -> Result<()> {
        let files = match self.sink.as_mut() {
            Some(s) => s.prepare(id)?,
            None => vec![],
        };
        self.broadcast(Msg::Barrier(id));
        let ack = Report::Ack {
            id,
            offsets: self.reader.offsets(),
            states: Vec::new(),
            files,
        };
        let _ = self.reports.send(ack);
        Ok(())
    }

    fn broadcast(&self, make: Msg) {
        for out in &self.outputs {
            let msg = match &make {
                Msg::Data(b) => Msg::Data(b.clone()),
                Msg::Watermark(w) => Msg::Watermark(*w),
                Msg::Barrier(id) => Msg::Barrier(*id),
                Msg::End => Msg::End,
            };
            let _ = out.send(msg);
        }
    }
}

/// Routes rows to keyed tasks by a hash of their group key.
struct Exchange {
    keys: Vec<Arc<dyn datafusion::physical_expr::PhysicalExpr>>,
    converter: Option<RowConverter>,
    outputs: usize,
}

impl Exchange {
    fn new(plan: &JobPlan, outputs: usize) -> Result<Exchange> {
        let Some(k) = plan.keyed.as_ref() else {
            return Ok(Exchange {
                keys: vec![],
                converter: None,
                outputs,
            });
        };
        // Session rows go by their PARTITION BY columns, straight from the source.
        let (keys, schema) = match (&k.session, &plan.scan.window) {
            (Some(layout), Some((_, windowed))) => {
                let keys = layout
                    .keys
                    .iter()
                    .map(|&i| {
                        let name = windowed.field(i).name();
                        Arc::new(datafusion::physical_expr::expressions::Column::new(name, i)) as _
                    })
                    .collect();
                (keys, windowed.clone())
            }
            _ => (k.keys(), k.input_schema.clone()),
        };
        let fields = keys
            .iter()
            .map(|e: &Arc<dyn datafusion::physical_expr::PhysicalExpr>| {
                e.data_type(&schema).map(SortField::new)
            })
            .collect::<datafusion::common::Result<Vec<_>>>()?;
        Ok(Exchange {
            keys,
            converter: Some(RowConverter::new(fields)?),
            outputs,
        })
    }

    fn split(&self, batch: RecordBatch) -> Result<Vec<(usize, RecordBatch)>> {
        let Some(converter) = self
            .converter
            .as_ref()
            .filter(|_| self.outputs > 1 && !self.keys.is_empty())
        else {
            return Ok(vec![(0, batch)]);
        };
        let n = batch.num_rows();
        let keys: Vec<ArrayRef> = self
            .keys
            .iter()
            .map(|e| e.evaluate(&batch).and_then(|v| v.into_array(n)))
            .collect::<datafusion::common::Result<_>>()?;
        let rows = converter.convert_columns(&keys)?;
        let mut parts: Vec<Vec<u32>> = vec![Vec::new(); self.outputs];
        for (i, row) in rows.iter().enumerate() {
            parts[bucket(row.as_ref(), self.outputs)].push(i as u32);
        }
        let mut out = Vec::new();
        for (k, rows) in parts.into_iter().enumerate().filter(|(_, r)| !r.is_empty()) {
            let indices = UInt32Array::from(rows);
            let columns = batch
                .columns()
                .iter()
                .map(|c| take(c, &indices, None))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            out.push((k, RecordBatch::try_new(batch.schema(), columns)?));
        }
        Ok(out)
    }
}

/// FNV-1a: stable across runs and builds, so state stays with its keys.
fn bucket(bytes: &[u8], buckets: usize) -> usize {
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    h.write(bytes);
    (h.finish() % buckets as u64) as usize
}

pub(crate) struct Fnv(pub u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// Aggregates the rows of its keys, aligns barriers, writes to the sink.
struct KeyedTask {
    index: usize,
    plan: KeyedPlan,
    sink: Box<dyn Sink>,
    inputs: Vec<Receiver<Msg>>,
    store: CheckpointStore,
    reports: Sender<Report>,
    stats: Arc<JobStats>,
}

impl KeyedTask {
    fn run(mut self, mut stage: Stage) -> Result<()> {
        let n = self.inputs.len();
        let mut watermarks = vec![i64::MIN; n];
        let mut blocked = vec![false; n];
        let mut ended = vec![false; n];
        let mut current = i64::MIN;
        let mut out = Vec::new();
        let mut tick = Instant::now() + TICK;
        while ended.iter().any(|e| !e) {
            let Some((i, msg)) = self.next(&blocked, &ended, tick) else {
                stage.tick(&mut out)?;
                self.write(&mut out)?;
                tick = Instant::now() + TICK;
                continue;
            };
            match msg {
                Some(Msg::Data(batch)) => stage.push(0, batch, &mut out)?,
                Some(Msg::Watermark(w)) => watermarks[i] = w,
                Some(Msg::Barrier(id)) => {
                    blocked[i] = true;
                    if (0..n).all(|j| blocked[j] || ended[j]) {
                        stage.tick(&mut out)?;
                        self.write(&mut out)?;
                        self.checkpoint(id, &mut stage)?;
                        blocked.iter_mut().for_each(|b| *b = false);
                    }
                }
                Some(Msg::End) | None => {
                    ended[i] = true;
                    watermarks[i] = i64::MAX;
                }
            }
            let low = watermarks.iter().copied().min().unwrap_or(i64::MIN);
            if low > current {
                current = low;
                stage.advance(low, &mut out)?;
            }
            let late = stage.late_rows();
            self.stats.late_rows.fetch_max(late, Ordering::Relaxed);
            self.write(&mut out)?;
        }
        Ok(())
    }

    /// The next message from an input that is neither blocked nor ended.
    /// `None` when `deadline` passes first.
    fn next(
        &self,
        blocked: &[bool],
        ended: &[bool],
        deadline: Instant,
    ) -> Option<(usize, Option<Msg>)> {
        let open: Vec<usize> = (0..self.inputs.len())
            .filter(|&i| !blocked[i] && !ended[i])
            .collect();
        let mut select = Select::new();
        for &i in &open {
            select.recv(&self.inputs[i]);
        }
        let op = select.select_deadline(deadline).ok()?;
        let i = open[op.index()];
        Some((i, op.recv(&self.inputs[i]).ok()))
    }

    fn write(&mut self, out: &mut Vec<RecordBatch>) -> Result<()> {
        for batch in out.drain(..) {
            let batch = self.plan.post.apply(batch)?;
            if batch.num_rows() > 0 {
                self.stats
                    .rows_out
                    .fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
                self.sink.write(&batch)?;
            }
        }
        Ok(())
    }

    fn checkpoint(&mut self, id: u64, stage: &mut Stage) -> Result<()> {
        let states = stage.snapshot(&self.store, id, self.index)?;
        let files = self.sink.prepare(id)?;
        let ack = Report::Ack {
            id,
            offsets: HashMap::new(),
            states,
            files,
        };
        let _ = self.reports.send(ack);
        Ok(())
    }
}

/// The operators of a keyed task, in order: each one's output is the
/// next one's input.
struct Stage {
    ops: Vec<Box<dyn Operator>>,
}

impl Stage {
    fn new(job: &JobPlan) -> Result<Stage> {
        let plan = job.keyed.as_ref().expect("a keyed job");
        let mut ops: Vec<Box<dyn Operator>> = Vec::new();
        if let (Some(layout), Some((_, windowed))) = (&plan.session, &job.scan.window) {
            ops.push(Box::new(SessionOp::new(layout.clone(), windowed.clone())));
            let mut steps = Vec::new();
            if let Some(p) = &job.scan.projection {
                steps.push(Step::Select(p.clone()));
            }
            steps.extend(job.pre.0.iter().cloned());
            ops.push(Box::new(Chain(steps)));
        }
        ops.push(match &plan.op {
            KeyedOp::Aggregate(spec) => Box::new(Aggregate::new(spec.clone())?),
            KeyedOp::TopN(spec) => Box::new(TopN::new(spec.clone())?),
        });
        Ok(Stage { ops })
    }

    /// Feed `batch` to operator `from`, and what it emits onwards.
    fn push(&mut self, from: usize, batch: RecordBatch, out: &mut Vec<RecordBatch>) -> Result<()> {
        let Some(op) = self.ops.get_mut(from) else {
            out.push(batch);
            return Ok(());
        };
        let mut emitted = Vec::new();
        op.on_batch(batch, &mut emitted)?;
        for b in emitted {
            self.push(from + 1, b, out)?;
        }
        Ok(())
    }

    /// Pass a watermark through the operators in order.
    fn advance(&mut self, watermark: i64, out: &mut Vec<RecordBatch>) -> Result<()> {
        for i in 0..self.ops.len() {
            let mut emitted = Vec::new();
            self.ops[i].on_watermark(watermark, &mut emitted)?;
            for b in emitted {
                self.push(i + 1, b, out)?;
            }
        }
        Ok(())
    }

    fn tick(&mut self, out: &mut Vec<RecordBatch>) -> Result<()> {
        for i in 0..self.ops.len() {
            let mut emitted = Vec::new();
            self.ops[i].on_tick(&mut emitted)?;
            for b in emitted {
                self.push(i + 1, b, out)?;
            }
        }
        Ok(())
    }

    fn late_rows(&self) -> u64 {
        self.ops.iter().map(|o| o.late_rows()).sum()
    }

    /// Save each operator's state; the (key, file) pairs for the manifest.
    fn snapshot(
        &mut self,
        store: &CheckpointStore,
        id: u64,
        task: usize,
    ) -> Result<Vec<(String, String)>> {
        let mut states = Vec::new();
        for (i, op) in self.ops.iter_mut().enumerate() {
            if let Some(state) = op.snapshot()? {
                let key = format!("{task}-{i}");
                let file = store.write_state(id, &key, &state)?;
                states.push((key, file));
            }
        }
        Ok(states)
    }

    fn restore(&mut self, store: &CheckpointStore, manifest: &Manifest, task: usize) -> Result<()> {
        for (i, op) in self.ops.iter_mut().enumerate() {
            if let Some(state) = store.read_state(manifest, &format!("{task}-{i}"))? {
                op.restore(&state)?;
            }
        }
        Ok(())
    }
}
