//! Running one job graph ([`crate::plan::Graph`]). Every stage runs as
//! parallel tasks, one thread each: source tasks own some partitions of a
//! topic, decode, assign windows and run the stage's stateless steps;
//! keyed tasks run a stateful operator (aggregation, top-N, join) for the
//! keys hashed to them. Between stages, rows travel over bounded channels
//! (a slow sink blocks its task, which blocks the ones upstream:
//! backpressure, not memory growth), routed by the consumer's key. The
//! coordinator (the calling thread) injects checkpoint barriers into the
//! sources; tasks pass them on in order with their data, keyed tasks align
//! them across inputs and save their state, sinks make their output
//! durable, and the coordinator records the checkpoint and commits the
//! sinks. A restarted job resumes from the newest checkpoint: offsets,
//! state and sink commits.

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
use datafusion::physical_expr::PhysicalExpr;
use tracing::{debug, info};

use crate::agg::Aggregate;
use crate::checkpoint::{CheckpointStore, Manifest};
use crate::error::{Result, StreamError};
use crate::exec::StreamScanExec;
use crate::join::Join;
use crate::late::LateRows;
use crate::ops::{Chain, Operator};
use crate::plan::{Graph, KeyedOp, KeyedPlan, StageKind};
use crate::remote::{RemoteReader, StateTopic};
use crate::session::SessionOp;
use crate::sink::{JobTxn, Sink, SinkTarget};
use crate::source::TopicReader;
use crate::topn::TopN;

/// Batches in flight between two tasks.
const CHANNEL_DEPTH: usize = 16;
const ROWS_PER_POLL: usize = 8192;
const POLL_WAIT: Duration = Duration::from_millis(50);
/// How often updating operators emit their changed rows.
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
    /// Set to stop the job (it keeps its last checkpoint).
    pub stop: Arc<std::sync::atomic::AtomicBool>,
    /// Set when the job is one task of a pipeline run by a group of
    /// processes ([`crate::group`]).
    pub group: Option<GroupTask>,
    /// Called after each completed checkpoint: `predict()` moves to a newly
    /// promoted model version here, so a version change falls on a
    /// checkpoint boundary.
    pub on_checkpoint: Option<CheckpointHook>,
}

/// See [`JobConfig::on_checkpoint`].
#[derive(Clone)]
pub struct CheckpointHook(pub Arc<dyn Fn() + Send + Sync>);

impl std::fmt::Debug for CheckpointHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CheckpointHook")
    }
}

/// What a job run as one task of a group-mode pipeline has besides a graph.
#[derive(Debug, Clone)]
pub struct GroupTask {
    /// The partition (of its source or repartition topics) the task owns.
    pub partition: i32,
    /// Where its checkpoints go, for whichever process runs it next.
    pub state: StateTopic,
    /// For each stage of the task's graph, the stage of the whole job's
    /// stats it counts in.
    pub stat_stages: Vec<Option<usize>>,
}

/// Counters of a running job.
#[derive(Debug, Default)]
pub struct JobStats {
    pub rows_in: AtomicU64,
    pub rows_out: AtomicU64,
    pub late_rows: AtomicU64,
    pub checkpoints: AtomicU64,
    pub watermark: AtomicI64,
    /// When the last checkpoint completed (ms since the epoch; 0: none yet).
    pub last_checkpoint_ms: AtomicI64,
    /// One entry per stage of the job graph.
    pub stages: Vec<StageStats>,
}

/// Counters of one stage, over its tasks.
#[derive(Debug, Default)]
pub struct StageStats {
    /// What the stage does, e.g. `source bid`, `aggregate`, `join`.
    pub name: String,
    pub rows_in: AtomicU64,
    pub rows_out: AtomicU64,
    /// The stage's output watermark (ms).
    pub watermark: AtomicI64,
    /// Time its tasks waited on full queues downstream (backpressure), ns.
    pub blocked_ns: AtomicU64,
}

impl JobStats {
    pub fn for_graph(graph: &Graph) -> JobStats {
        let stages = graph
            .stages
            .iter()
            .map(|s| StageStats {
                name: stage_name(s),
                watermark: AtomicI64::new(i64::MIN),
                ..StageStats::default()
            })
            .collect();
        JobStats {
            watermark: AtomicI64::new(i64::MIN),
            stages,
            ..JobStats::default()
        }
    }

    /// The counters of stage `s`, if it counts in these stats.
    fn stage_of(&self, s: Option<usize>) -> Option<&StageStats> {
        self.stages.get(s?)
    }
}

fn stage_name(stage: &crate::plan::StagePlan) -> String {
    match &stage.kind {
        StageKind::Source(scan) => format!("source {}", scan.source.topic),
        StageKind::Bounded(_) => "bounded input".into(),
        StageKind::Remote(input) => format!("repartition {}", input.topic),
        StageKind::Keyed(k) => match &k.op {
            KeyedOp::Aggregate(_) if k.session.is_some() => "session aggregate".into(),
            KeyedOp::Aggregate(_) => "aggregate".into(),
            KeyedOp::TopN(_) => "top-n".into(),
            KeyedOp::Join(j) => join_name(j),
        },
    }
}

/// What kind of join, as the status shows it (windowed, interval: state
/// bounded by the watermark).
fn join_name(j: &crate::join::JoinSpec) -> String {
    let kind = if j.left.window_end.is_some() {
        "windowed join"
    } else if j.left.expiry.is_some() || j.right.expiry.is_some() {
        "interval join"
    } else {
        "join"
    };
    match j.semi {
        Some(_) => format!("{kind} (semi)"),
        None => kind.to_string(),
    }
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
        offsets: Vec<(String, i64)>,
        states: Vec<(String, String)>,
        files: Vec<PathBuf>,
    },
    Finished,
    Failed(String),
}

/// Run `graph` into `sink` until its bounded input ends (or forever).
pub fn run_job(
    graph: Graph,
    sink: SinkTarget,
    config: JobConfig,
    stats: Arc<JobStats>,
) -> Result<()> {
    let store = CheckpointStore::new(&config.checkpoint_dir)?;
    let topics = source_topics(&graph);
    let txn = sink.open_txn(&config.name)?;
    if let Some(group) = &config.group {
        // After the transaction above fenced any earlier owner of the task.
        group.state.restore(&store)?;
    }
    let restored = restorable(&store, txn.as_ref(), &topics)?;
    let outputs = Outputs {
        late: late_targets(&graph),
    };
    if let Some(m) = &restored {
        check_compatible(m, &config)?;
        outputs.commit(&sink, &config.name, &m.sink_files)?;
        info!(job = %config.name, checkpoint = m.id, "resuming from checkpoint");
    }
    let wiring = Wiring::new(&graph, &config)?;
    let (report_tx, report_rx) = unbounded();
    let mut launcher = Launcher {
        graph: &graph,
        sink: &sink,
        txn: txn.as_ref(),
        config: &config,
        store: &store,
        restored: restored.as_ref(),
        reports: &report_tx,
        stats: &stats,
        handles: Vec::new(),
        controls: Vec::new(),
    };
    let (mut senders, mut receivers) = wiring.channels();
    for s in 0..graph.stages.len() {
        for t in 0..wiring.tasks[s] {
            let output = launcher.output(s, t, std::mem::take(&mut senders[s][t]))?;
            let inputs = std::mem::take(&mut receivers[s][t]);
            launcher.launch(s, t, &wiring, output, inputs)?;
        }
    }
    let Launcher {
        handles, controls, ..
    } = launcher;
    drop(report_tx);
    let mut coordinator = Coordinator {
        config: config.clone(),
        store,
        sink,
        outputs,
        txn: txn.clone(),
        topics,
        controls,
        tasks: wiring.tasks.iter().sum(),
        sources: wiring.source_tasks(&graph),
        next_id: restored.as_ref().map_or(1, |m| m.id + 1),
        stats,
        pending: None,
        finished: 0,
        final_id: None,
    };
    let outcome = coordinator.run(report_rx);
    if let Some(txn) = &txn {
        // Sink tasks waiting on a checkpoint that will not commit go on.
        txn.fail();
    }
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

/// Where a checkpoint's staged files go besides the sink: side tables of
/// late rows, by name.
struct Outputs {
    late: HashMap<String, SinkTarget>,
}

impl Outputs {
    /// Publish a recorded checkpoint's files: late rows into their side
    /// tables, the rest into the sink (idempotent).
    fn commit(&self, sink: &SinkTarget, job: &str, files: &[PathBuf]) -> Result<()> {
        let mut main = Vec::new();
        let mut late: HashMap<String, Vec<PathBuf>> = HashMap::new();
        for f in files {
            match crate::late::table_of(f).filter(|t| self.late.contains_key(t)) {
                Some(table) => late.entry(table).or_default().push(f.clone()),
                None => main.push(f.clone()),
            }
        }
        for (table, files) in late {
            self.late[&table].commit(job, &files)?;
        }
        sink.commit(job, &main)
    }
}

/// The side tables of the graph's sources, by lake table name.
fn late_targets(graph: &Graph) -> HashMap<String, SinkTarget> {
    graph
        .stages
        .iter()
        .filter_map(|stage| match &stage.kind {
            StageKind::Source(scan) => scan.source.late_rows.clone(),
            _ => None,
        })
        .filter_map(|target| match &target {
            SinkTarget::Lake { meta, .. } => Some((meta.name.clone(), target)),
            _ => None,
        })
        .collect()
}

/// The topic each source stage reads, by stage.
fn source_topics(graph: &Graph) -> HashMap<String, String> {
    graph
        .stages
        .iter()
        .enumerate()
        .filter_map(|(s, stage)| match &stage.kind {
            StageKind::Source(scan) => Some((s.to_string(), scan.source.topic.clone())),
            StageKind::Remote(input) => Some((s.to_string(), input.topic.clone())),
            _ => None,
        })
        .collect()
}

/// The checkpoint to resume from: the newest, or with a transactional
/// topic sink the one whose transaction committed last (newer ones are
/// dropped: their output was aborted).
fn restorable(
    store: &CheckpointStore,
    txn: Option<&JobTxn>,
    topics: &HashMap<String, String>,
) -> Result<Option<Manifest>> {
    let latest = store.latest()?;
    let (Some(txn), Some(m)) = (txn, &latest) else {
        return Ok(latest);
    };
    let committed = txn.last_committed(m, topics)?;
    store.discard_after(committed.unwrap_or(0))?;
    let Some(id) = committed else {
        return Ok(None);
    };
    match store.get(id)? {
        Some(m) => Ok(Some(m)),
        None => Err(StreamError::Task(format!(
            "checkpoint {id} committed its output but is not in {}; the job cannot resume \
             exactly once (run with --reset to start over)",
            store.dir().display()
        ))),
    }
}

/// How many tasks each stage has, and the partitions of source stages.
struct Wiring {
    tasks: Vec<usize>,
    partitions: Vec<Vec<i32>>,
    /// Per stage, its consumers (stage, input).
    consumers: Vec<Vec<(usize, usize)>>,
}

/// Per stage and task: per consumer, senders to the consumer's tasks /
/// receivers with their input.
type Senders = Vec<Vec<Vec<Vec<Sender<Msg>>>>>;
type Receivers = Vec<Vec<Vec<(Receiver<Msg>, usize)>>>;

impl Wiring {
    fn new(graph: &Graph, config: &JobConfig) -> Result<Wiring> {
        let parallelism = config.parallelism;
        let owned = config.group.as_ref().map(|g| g.partition);
        let mut tasks = Vec::new();
        let mut partitions = Vec::new();
        for stage in &graph.stages {
            match &stage.kind {
                StageKind::Source(scan) => {
                    let mut p = scan.source.partitions()?;
                    if let Some(owned) = owned {
                        p.retain(|p| *p == owned);
                    }
                    if p.is_empty() {
                        return Err(StreamError::Task(format!(
                            "source {}: topic '{}' has no partition {}",
                            scan.source.name,
                            scan.source.topic,
                            owned.unwrap_or(0)
                        )));
                    }
                    tasks.push(parallelism.clamp(1, p.len()));
                    partitions.push(p);
                }
                StageKind::Remote(_) => {
                    tasks.push(1);
                    partitions.push(owned.into_iter().collect());
                }
                StageKind::Keyed(_) => {
                    tasks.push(parallelism.max(1));
                    partitions.push(Vec::new());
                }
                StageKind::Bounded(_) => {
                    tasks.push(1);
                    partitions.push(Vec::new());
                }
            }
        }
        let consumers = (0..graph.stages.len())
            .map(|s| graph.consumers(s))
            .collect();
        Ok(Wiring {
            tasks,
            partitions,
            consumers,
        })
    }

    fn source_tasks(&self, graph: &Graph) -> usize {
        graph
            .stages
            .iter()
            .zip(&self.tasks)
            .filter(|(s, _)| !matches!(s.kind, StageKind::Keyed(_)))
            .map(|(_, t)| t)
            .sum()
    }

    /// A channel from every task of a stage to every task of each consumer.
    fn channels(&self) -> (Senders, Receivers) {
        let mut senders: Senders = self
            .tasks
            .iter()
            .zip(&self.consumers)
            .map(|(&n, consumers)| vec![vec![Vec::new(); consumers.len()]; n])
            .collect();
        let mut receivers: Receivers = self
            .tasks
            .iter()
            .map(|&n| (0..n).map(|_| Vec::new()).collect())
            .collect();
        for (s, consumers) in self.consumers.iter().enumerate() {
            for (branch, &(c, input)) in consumers.iter().enumerate() {
                for sender in senders[s].iter_mut() {
                    for receiver in receivers[c].iter_mut() {
                        let (tx, rx) = bounded(CHANNEL_DEPTH);
                        sender[branch].push(tx);
                        receiver.push((rx, input));
                    }
                }
            }
        }
        (senders, receivers)
    }
}

/// Starts the tasks of a job.
struct Launcher<'a> {
    graph: &'a Graph,
    sink: &'a SinkTarget,
    txn: Option<&'a JobTxn>,
    config: &'a JobConfig,
    store: &'a CheckpointStore,
    restored: Option<&'a Manifest>,
    reports: &'a Sender<Report>,
    stats: &'a Arc<JobStats>,
    handles: Vec<JoinHandle<()>>,
    controls: Vec<Sender<Control>>,
}

impl Launcher<'_> {
    /// The side-table writer of a windowed source stage's task, if its
    /// table declares one.
    fn late_rows(&self, scan: &StreamScanExec, subtask: usize) -> Result<Option<LateRows>> {
        let (Some(target), Some((spec, _))) = (&scan.source.late_rows, &scan.window) else {
            return Ok(None);
        };
        let window = scan.declared.clone().unwrap_or_else(|| spec.clone());
        let staging = self.config.checkpoint_dir.join("staging");
        Ok(Some(LateRows::open(window, target, &staging, subtask)?))
    }

    /// Where task `t` of stage `s` sends its rows.
    fn output(&self, s: usize, t: usize, senders: Vec<Vec<Sender<Msg>>>) -> Result<Output> {
        let consumers = self.graph.consumers(s);
        if !consumers.is_empty() {
            let mut branches = Vec::new();
            for ((c, input), senders) in consumers.into_iter().zip(senders) {
                let edge = &self.graph.stages[c].inputs[input];
                let schema = edge
                    .schema
                    .clone()
                    .unwrap_or_else(|| self.graph.stages[s].schema.clone());
                branches.push(Branch {
                    chain: edge.chain.clone(),
                    exchange: Exchange::new(edge.keys.clone(), &schema, senders)?,
                });
            }
            return Ok(Output::Exchange(branches));
        }
        let staging = self.config.checkpoint_dir.join("staging");
        Ok(Output::Sink(self.sink.open(
            &staging,
            s * 1000 + t,
            self.txn,
        )?))
    }

    fn launch(
        &mut self,
        s: usize,
        t: usize,
        wiring: &Wiring,
        output: Output,
        inputs: Vec<(Receiver<Msg>, usize)>,
    ) -> Result<()> {
        let stage = self.graph.stages[s].clone();
        let name = format!("{}-stage{s}-task{t}", self.config.name);
        let stat = match &self.config.group {
            Some(g) => g.stat_stages.get(s).copied().flatten(),
            None => Some(s),
        };
        let common = TaskCommon {
            stage: s,
            stat,
            task: t,
            post: stage.post.clone(),
            output,
            reports: self.reports.clone(),
            stats: self.stats.clone(),
        };
        let handle = match stage.kind {
            StageKind::Source(scan) => {
                let n = wiring.tasks[s];
                let owned: Vec<i32> = wiring.partitions[s]
                    .iter()
                    .copied()
                    .skip(t)
                    .step_by(n)
                    .collect();
                let start: HashMap<i32, i64> =
                    self.restored.map(|m| offsets_of(m, s)).unwrap_or_default();
                let reader =
                    TopicReader::open(scan.source.clone(), &owned, &start, self.config.bounded)?;
                let (ctl_tx, ctl_rx) = unbounded();
                self.controls.push(ctl_tx);
                let late = self.late_rows(&scan, s * 1000 + t)?;
                let task = SourceTask {
                    scan,
                    reader,
                    late,
                    control: ctl_rx,
                    common,
                };
                spawn(name, self.reports.clone(), move || task.run())
            }
            StageKind::Remote(input) => {
                let p = wiring.partitions[s].first().copied().unwrap_or(0);
                let start = self
                    .restored
                    .and_then(|m| offsets_of(m, s).get(&p).copied());
                let writers = self.restored.map(|m| writers_of(m, s)).unwrap_or_default();
                let (ctl_tx, ctl_rx) = unbounded();
                self.controls.push(ctl_tx);
                let task = RemoteTask {
                    reader: RemoteReader::open(input, p, start, writers)?,
                    control: ctl_rx,
                    common,
                };
                spawn(name, self.reports.clone(), move || task.run())
            }
            StageKind::Bounded(plan) => {
                let done = self
                    .restored
                    .is_some_and(|m| m.offsets.contains_key(&format!("{s}:done")));
                let (ctl_tx, ctl_rx) = unbounded();
                self.controls.push(ctl_tx);
                let task = BoundedTask {
                    plan,
                    done,
                    control: ctl_rx,
                    common,
                };
                spawn(name, self.reports.clone(), move || task.run())
            }
            StageKind::Keyed(plan) => {
                let mut ops = operators(&plan)?;
                if let Some(m) = self.restored {
                    restore(&mut ops, self.store, m, s, t)?;
                }
                let task = KeyedTask {
                    ops,
                    inputs,
                    store: self.store.clone(),
                    common,
                };
                spawn(name, self.reports.clone(), move || task.run())
            }
        };
        self.handles.push(handle);
        Ok(())
    }
}

fn offsets_of(m: &Manifest, stage: usize) -> HashMap<i32, i64> {
    m.offsets
        .iter()
        .filter_map(|(k, o)| {
            let (s, p) = k.split_once(':')?;
            (s.parse::<usize>().ok()? == stage).then_some((p.parse().ok()?, *o))
        })
        .collect()
}

/// The writers' watermarks a remote stage had read (`stage:w<writer>`).
fn writers_of(m: &Manifest, stage: usize) -> HashMap<i32, i64> {
    m.offsets
        .iter()
        .filter_map(|(k, w)| {
            let (s, writer) = k.split_once(':')?;
            let writer = writer.strip_prefix('w')?.parse().ok()?;
            (s.parse::<usize>().ok()? == stage).then_some((writer, *w))
        })
        .collect()
}

/// The operators of a keyed stage, in order.
fn operators(plan: &KeyedPlan) -> Result<Vec<Box<dyn Operator>>> {
    let mut ops: Vec<Box<dyn Operator>> = Vec::new();
    if let Some((layout, windowed, pre)) = &plan.session {
        ops.push(Box::new(SessionOp::new(layout.clone(), windowed.clone())));
        ops.push(Box::new(pre.clone()));
    }
    ops.push(match &plan.op {
        KeyedOp::Aggregate(spec) => Box::new(Aggregate::new(spec.clone())?),
        KeyedOp::TopN(spec) => Box::new(TopN::new(spec.clone())?),
        KeyedOp::Join(spec) => Box::new(Join::new(spec.clone())?),
    });
    Ok(ops)
}

fn restore(
    ops: &mut [Box<dyn Operator>],
    store: &CheckpointStore,
    m: &Manifest,
    s: usize,
    t: usize,
) -> Result<()> {
    for (i, op) in ops.iter_mut().enumerate() {
        if let Some(state) = store.read_state(m, &format!("{s}.{t}.{i}"))? {
            op.restore(&state)?;
        }
    }
    Ok(())
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
    offsets: BTreeMap<String, i64>,
    states: BTreeMap<String, String>,
    files: Vec<PathBuf>,
}

struct Coordinator {
    config: JobConfig,
    store: CheckpointStore,
    sink: SinkTarget,
    outputs: Outputs,
    txn: Option<JobTxn>,
    /// Source stage → topic (for the transaction's offsets).
    topics: HashMap<String, String>,
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
            if self.config.stop.load(Ordering::Relaxed) {
                info!(job = %self.config.name, "stopped");
                return Ok(());
            }
            let wait = due
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(200));
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
                Err(RecvTimeoutError::Timeout) if Instant::now() < due => {}
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
        offsets: Vec<(String, i64)>,
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
        if let (Some(group), Some(txn)) = (
            &self.config.group,
            self.txn.as_ref().and_then(JobTxn::topic),
        ) {
            group.state.save(txn, &self.store, &manifest)?;
        }
        self.outputs
            .commit(&self.sink, &self.config.name, &manifest.sink_files)?;
        if let Some(txn) = &self.txn {
            txn.commit(&manifest, &self.topics)?;
        }
        self.stats.checkpoints.fetch_add(1, Ordering::Relaxed);
        self.stats
            .last_checkpoint_ms
            .store(manifest.completed_at_ms, Ordering::Relaxed);
        debug!(job = %self.config.name, checkpoint = id, "checkpoint complete");
        if let Some(hook) = &self.config.on_checkpoint {
            (hook.0)();
        }
        if self.final_id == Some(id) {
            return Ok(true);
        }
        if self.finished == self.sources {
            self.trigger(true);
        }
        Ok(false)
    }
}

/// Where a task's output rows go: the next stages' tasks, or the sink.
enum Output {
    /// One branch per consuming stage.
    Exchange(Vec<Branch>),
    Sink(Box<dyn Sink>),
}

/// Rows to one consuming stage: its own steps, then routed by its key.
struct Branch {
    chain: Chain,
    exchange: Exchange,
}

/// What every task has.
struct TaskCommon {
    stage: usize,
    /// The stage of the job's stats this task counts in.
    stat: Option<usize>,
    task: usize,
    post: Chain,
    output: Output,
    reports: Sender<Report>,
    stats: Arc<JobStats>,
}

impl TaskCommon {
    /// Count rows read by this task (`source`: new to the job too).
    fn count_in(&self, rows: usize, source: bool) {
        if source {
            self.stats.rows_in.fetch_add(rows as u64, Ordering::Relaxed);
        }
        if let Some(s) = self.stats.stage_of(self.stat) {
            s.rows_in.fetch_add(rows as u64, Ordering::Relaxed);
        }
    }

    /// The stage's watermark: the lowest over its tasks would be exact;
    /// the highest seen is what a status line needs and costs no locking.
    fn set_watermark(&self, watermark: i64) {
        if let Some(s) = self.stats.stage_of(self.stat) {
            s.watermark.fetch_max(watermark, Ordering::Relaxed);
        }
    }

    /// Run the stage's steps on `batch` and send the rows on.
    fn emit(&mut self, batch: RecordBatch) -> Result<()> {
        let batch = self.post.apply(batch)?;
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let stage = self.stats.stage_of(self.stat);
        if let Some(s) = stage {
            s.rows_out
                .fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
        }
        match &mut self.output {
            Output::Sink(sink) => {
                if !sink.internal() {
                    self.stats
                        .rows_out
                        .fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
                }
                sink.write(&batch)
            }
            Output::Exchange(branches) => {
                for branch in branches.iter() {
                    // A batch's columns are shared, so each copy is cheap.
                    route(&branch.exchange, branch.chain.apply(batch.clone())?, stage)?;
                }
                Ok(())
            }
        }
    }

    fn forward(&mut self, make: impl Fn() -> Msg) -> Result<()> {
        match &mut self.output {
            Output::Exchange(branches) => {
                for out in branches.iter().flat_map(|b| &b.exchange.senders) {
                    let _ = out.send(make());
                }
                Ok(())
            }
            Output::Sink(sink) => match make() {
                Msg::Watermark(w) => sink.watermark(w),
                _ => Ok(()),
            },
        }
    }

    /// Make the output durable, pass the barrier on, and acknowledge.
    fn barrier(
        &mut self,
        id: u64,
        offsets: Vec<(String, i64)>,
        states: Vec<(String, String)>,
        mut files: Vec<PathBuf>,
    ) -> Result<()> {
        if let Output::Sink(sink) = &mut self.output {
            files.extend(sink.prepare(id)?);
        }
        self.forward(|| Msg::Barrier(id))?;
        let _ = self.reports.send(Report::Ack {
            id,
            offsets,
            states,
            files,
        });
        match &mut self.output {
            Output::Sink(sink) => sink.after_ack(id),
            Output::Exchange(_) => Ok(()),
        }
    }
}

/// Send `batch` to `exchange`'s tasks by key, waiting when their queues
/// are full (counted as backpressure of `stage`).
fn route(exchange: &Exchange, batch: RecordBatch, stage: Option<&StageStats>) -> Result<()> {
    if batch.num_rows() == 0 {
        return Ok(());
    }
    for (k, part) in exchange.split(batch)? {
        let msg = match exchange.senders[k].try_send(Msg::Data(part)) {
            Ok(()) => continue,
            Err(crossbeam_channel::TrySendError::Full(msg)) => msg,
            Err(crossbeam_channel::TrySendError::Disconnected(_)) => {
                return Err(StreamError::Task("a downstream task stopped".into()))
            }
        };
        let waited = Instant::now();
        if exchange.senders[k].send(msg).is_err() {
            return Err(StreamError::Task("a downstream task stopped".into()));
        }
        if let Some(s) = stage {
            s.blocked_ns
                .fetch_add(waited.elapsed().as_nanos() as u64, Ordering::Relaxed);
        }
    }
    Ok(())
}

/// Reads partitions, assigns windows, runs the stage's steps.
struct SourceTask {
    scan: StreamScanExec,
    reader: TopicReader,
    late: Option<LateRows>,
    control: Receiver<Control>,
    common: TaskCommon,
}

impl SourceTask {
    fn run(mut self) -> Result<()> {
        let mut watermark = i64::MIN;
        let mut done = false;
        loop {
            let control = if done {
                self.control.recv().map_err(|_| TryRecvError::Disconnected)
            } else {
                self.control.try_recv()
            };
            match control {
                Ok(Control::Checkpoint(id)) => self.barrier(id)?,
                Ok(Control::Stop) | Err(TryRecvError::Disconnected) => {
                    return self.common.forward(|| Msg::End);
                }
                Err(TryRecvError::Empty) => {}
            }
            if done {
                continue;
            }
            if let Some(batch) = self.reader.poll(ROWS_PER_POLL, POLL_WAIT)? {
                self.common.count_in(batch.num_rows(), true);
                let batch = self.divert_late(batch, watermark)?;
                let batch = self.prepare(batch)?;
                self.common.emit(batch)?;
            }
            if let Some(w) = self.reader.watermark().filter(|w| *w > watermark) {
                watermark = w;
                self.common.stats.watermark.fetch_max(w, Ordering::Relaxed);
                self.common.set_watermark(w);
                self.common.forward(|| Msg::Watermark(w))?;
            }
            if self.reader.finished() {
                done = true;
                let _ = self.common.reports.send(Report::Finished);
            }
        }
    }

    /// With a side table for late rows: send them there.
    fn divert_late(&mut self, batch: RecordBatch, watermark: i64) -> Result<RecordBatch> {
        let Some(late) = &mut self.late else {
            return Ok(batch);
        };
        let (on_time, n) = late.split(batch, watermark)?;
        self.common
            .stats
            .late_rows
            .fetch_add(n as u64, Ordering::Relaxed);
        Ok(on_time)
    }

    /// Windows and projection (the stage's steps run in `emit`).
    fn prepare(&self, batch: RecordBatch) -> Result<RecordBatch> {
        let batch = match &self.scan.window {
            Some((spec, schema)) => spec.assign(&batch, schema)?,
            None => batch,
        };
        Ok(match &self.scan.projection {
            Some(p) => batch.project(p)?,
            None => batch,
        })
    }

    fn barrier(&mut self, id: u64) -> Result<()> {
        let stage = self.common.stage;
        let offsets = self
            .reader
            .offsets()
            .into_iter()
            .map(|(p, o)| (format!("{stage}:{p}"), o))
            .collect();
        let late = match &mut self.late {
            Some(late) => late.prepare(id)?,
            None => Vec::new(),
        };
        self.common.barrier(id, offsets, Vec::new(), late)
    }
}

/// Reads a partition of a repartition topic (group mode) and passes the
/// rows and the writers' lowest watermark on.
struct RemoteTask {
    reader: RemoteReader,
    control: Receiver<Control>,
    common: TaskCommon,
}

impl RemoteTask {
    fn run(mut self) -> Result<()> {
        let mut watermark = i64::MIN;
        loop {
            match self.control.try_recv() {
                Ok(Control::Checkpoint(id)) => {
                    let stage = self.common.stage;
                    let key = format!("{stage}:{}", self.reader.partition());
                    let mut offsets = vec![(key, self.reader.offset())];
                    for (w, mark) in self.reader.writers() {
                        offsets.push((format!("{stage}:w{w}"), *mark));
                    }
                    self.common.barrier(id, offsets, Vec::new(), Vec::new())?;
                }
                Ok(Control::Stop) | Err(TryRecvError::Disconnected) => {
                    return self.common.forward(|| Msg::End);
                }
                Err(TryRecvError::Empty) => {}
            }
            if let Some(batch) = self.reader.poll(ROWS_PER_POLL, POLL_WAIT)? {
                self.common.count_in(batch.num_rows(), false);
                self.common.emit(batch)?;
            }
            if let Some(w) = self.reader.watermark().filter(|w| *w > watermark) {
                watermark = w;
                self.common.set_watermark(w);
                self.common.forward(|| Msg::Watermark(w))?;
            }
        }
    }
}

/// Reads a bounded input (a lake table, files) once through DataFusion.
/// A checkpoint taken after it has sent everything records it as done,
/// so a restarted job does not read it again (its rows are in the state
/// of the operators downstream).
struct BoundedTask {
    plan: Arc<dyn datafusion::physical_plan::ExecutionPlan>,
    done: bool,
    control: Receiver<Control>,
    common: TaskCommon,
}

impl BoundedTask {
    fn run(mut self) -> Result<()> {
        if !self.done {
            self.read_all()?;
        }
        self.common.forward(|| Msg::Watermark(i64::MAX))?;
        let _ = self.common.reports.send(Report::Finished);
        let stage = self.common.stage;
        loop {
            match self.control.recv() {
                Ok(Control::Checkpoint(id)) => self.common.barrier(
                    id,
                    vec![(format!("{stage}:done"), 1)],
                    Vec::new(),
                    Vec::new(),
                )?,
                Ok(Control::Stop) | Err(_) => {
                    return self.common.forward(|| Msg::End);
                }
            }
        }
    }

    fn read_all(&mut self) -> Result<()> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StreamError::Task(format!("bounded source runtime: {e}")))?;
        let context = Arc::new(datafusion::execution::TaskContext::default());
        let partitions = self
            .plan
            .properties()
            .output_partitioning()
            .partition_count();
        for p in 0..partitions {
            let mut stream = self.plan.execute(p, context.clone())?;
            while let Some(batch) = runtime.block_on(futures::StreamExt::next(&mut stream)) {
                let batch = batch?;
                self.common.count_in(batch.num_rows(), true);
                self.common.emit(batch)?;
            }
        }
        Ok(())
    }
}

/// Routes rows to the next stage's tasks by a hash of their key.
struct Exchange {
    router: Router,
    senders: Vec<Sender<Msg>>,
}

impl Exchange {
    fn new(
        keys: Vec<Arc<dyn PhysicalExpr>>,
        schema: &datafusion::arrow::datatypes::SchemaRef,
        senders: Vec<Sender<Msg>>,
    ) -> Result<Exchange> {
        Ok(Exchange {
            router: Router::new(keys, schema)?,
            senders,
        })
    }

    fn split(&self, batch: RecordBatch) -> Result<Vec<(usize, RecordBatch)>> {
        self.router.split(batch, self.senders.len())
    }
}

/// Cuts batches by a hash of their key (the same key, the same bucket).
pub(crate) struct Router {
    keys: Vec<Arc<dyn PhysicalExpr>>,
    converter: RowConverter,
}

impl Router {
    pub(crate) fn new(
        keys: Vec<Arc<dyn PhysicalExpr>>,
        schema: &datafusion::arrow::datatypes::SchemaRef,
    ) -> Result<Router> {
        let fields = keys
            .iter()
            .map(|e| e.data_type(schema).map(SortField::new))
            .collect::<datafusion::common::Result<Vec<_>>>()?;
        Ok(Router {
            keys,
            converter: RowConverter::new(fields)?,
        })
    }

    /// `batch`'s rows by bucket (of `buckets`); no key: all in bucket 0.
    pub(crate) fn split(
        &self,
        batch: RecordBatch,
        buckets: usize,
    ) -> Result<Vec<(usize, RecordBatch)>> {
        if buckets == 1 || self.keys.is_empty() {
            return Ok(vec![(0, batch)]);
        }
        let n = batch.num_rows();
        let keys: Vec<ArrayRef> = self
            .keys
            .iter()
            .map(|e| e.evaluate(&batch).and_then(|v| v.into_array(n)))
            .collect::<datafusion::common::Result<_>>()?;
        let rows = self.converter.convert_columns(&keys)?;
        let mut parts: Vec<Vec<u32>> = vec![Vec::new(); buckets];
        for (i, row) in rows.iter().enumerate() {
            parts[bucket(row.as_ref(), buckets)].push(i as u32);
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

/// Runs a stateful operator for the keys routed to it, aligning barriers
/// and watermarks across its inputs.
struct KeyedTask {
    ops: Vec<Box<dyn Operator>>,
    inputs: Vec<(Receiver<Msg>, usize)>,
    store: CheckpointStore,
    common: TaskCommon,
}

impl KeyedTask {
    fn run(mut self) -> Result<()> {
        let n = self.inputs.len();
        let mut watermarks = vec![i64::MIN; n];
        let mut blocked = vec![false; n];
        let mut ended = vec![false; n];
        let mut current = i64::MIN;
        let mut out = Vec::new();
        let mut tick = Instant::now() + TICK;
        while ended.iter().any(|e| !e) {
            let Some((i, msg)) = self.next(&blocked, &ended, tick) else {
                self.each(&mut out, |op, o| op.on_tick(o))?;
                self.write(&mut out)?;
                tick = Instant::now() + TICK;
                continue;
            };
            match msg {
                Some(Msg::Data(batch)) => {
                    self.common.count_in(batch.num_rows(), false);
                    let input = self.inputs[i].1;
                    self.push_input(input, batch, &mut out)?
                }
                Some(Msg::Watermark(w)) => {
                    watermarks[i] = w;
                    self.input_watermark(self.inputs[i].1, &watermarks);
                }
                Some(Msg::Barrier(id)) => {
                    blocked[i] = true;
                    if (0..n).all(|j| blocked[j] || ended[j]) {
                        self.each(&mut out, |op, o| op.on_tick(o))?;
                        self.write(&mut out)?;
                        self.checkpoint(id)?;
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
                self.each(&mut out, |op, o| op.on_watermark(low, o))?;
                self.write(&mut out)?;
                self.common.set_watermark(low);
                self.common.forward(|| Msg::Watermark(low))?;
            }
            let late = self.ops.iter().map(|o| o.late_rows()).sum();
            self.common
                .stats
                .late_rows
                .fetch_max(late, Ordering::Relaxed);
            self.write(&mut out)?;
        }
        self.common.forward(|| Msg::End)
    }

    /// The next message from an input that is neither blocked nor ended;
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
            select.recv(&self.inputs[i].0);
        }
        let op = select.select_deadline(deadline).ok()?;
        let i = open[op.index()];
        Some((i, op.recv(&self.inputs[i].0).ok()))
    }

    /// Tell the first operator the watermark of input `input` (the lowest
    /// over the upstream tasks of that input).
    fn input_watermark(&mut self, input: usize, watermarks: &[i64]) {
        let low = (0..self.inputs.len())
            .filter(|&j| self.inputs[j].1 == input)
            .map(|j| watermarks[j])
            .min()
            .unwrap_or(i64::MIN);
        self.ops[0].on_input_watermark(input, low);
    }

    fn push_input(
        &mut self,
        input: usize,
        batch: RecordBatch,
        out: &mut Vec<RecordBatch>,
    ) -> Result<()> {
        let mut emitted = Vec::new();
        self.ops[0].on_input(input, batch, &mut emitted)?;
        for b in emitted {
            push(&mut self.ops, 1, b, out)?;
        }
        Ok(())
    }

    /// Call `f` on each operator in order, feeding what it emits onwards.
    fn each(
        &mut self,
        out: &mut Vec<RecordBatch>,
        f: impl Fn(&mut Box<dyn Operator>, &mut Vec<RecordBatch>) -> Result<()>,
    ) -> Result<()> {
        for i in 0..self.ops.len() {
            let mut emitted = Vec::new();
            f(&mut self.ops[i], &mut emitted)?;
            for b in emitted {
                push(&mut self.ops, i + 1, b, out)?;
            }
        }
        Ok(())
    }

    fn write(&mut self, out: &mut Vec<RecordBatch>) -> Result<()> {
        for batch in out.drain(..) {
            self.common.emit(batch)?;
        }
        Ok(())
    }

    fn checkpoint(&mut self, id: u64) -> Result<()> {
        let (s, t) = (self.common.stage, self.common.task);
        let mut states = Vec::new();
        for (i, op) in self.ops.iter_mut().enumerate() {
            if let Some(state) = op.snapshot()? {
                let key = format!("{s}.{t}.{i}");
                let file = self.store.write_state(id, &key, &state)?;
                states.push((key, file));
            }
        }
        self.common.barrier(id, Vec::new(), states, Vec::new())
    }
}

/// Feed `batch` to operator `from`, and what it emits onwards.
fn push(
    ops: &mut [Box<dyn Operator>],
    from: usize,
    batch: RecordBatch,
    out: &mut Vec<RecordBatch>,
) -> Result<()> {
    let Some(op) = ops.get_mut(from) else {
        out.push(batch);
        return Ok(());
    };
    let mut emitted = Vec::new();
    op.on_batch(batch, &mut emitted)?;
    for b in emitted {
        push(ops, from + 1, b, out)?;
    }
    Ok(())
}
