//! Group mode (`basin pipeline run --group NAME`): several processes run
//! one stream job together, as Kafka Streams instances do. The job graph
//! is cut into segments, one per source stage and one per keyed stage;
//! a keyed stage reads its inputs from repartition topics
//! ([`crate::remote`]) that the stages before it write, routed by its key.
//! Every topic of a job has the same partition count N, and a task is one
//! segment for one partition number p. The processes join one consumer
//! group on the first source topic; the partitions it assigns a process
//! are the task numbers it runs, every segment of each.
//!
//! Each task is a job of its own ([`crate::runtime::run_job`]) with its
//! own transactional producer (`transactional.id` names the task, so a
//! process taking a task over fences the one it replaces and aborts what
//! that left open), its own checkpoints, and its own partition of the
//! job's state topic, where each checkpoint is written in the same
//! transaction as the task's output and source offsets. When a process
//! dies, the group hands its partitions to the survivors once its session
//! times out; they restore those tasks from the state topic and go on
//! exactly once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use basin_sql::topic::QuietContext;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;
use tracing::{info, warn};

use crate::error::{Result, StreamError};
use crate::plan::{Edge, Graph, StageKind, StagePlan};
use crate::remote::{RemoteInput, RepartitionTarget, StateTopic};
use crate::runtime::{run_job, GroupTask, JobConfig, JobStats};
use crate::sink::SinkTarget;

/// A process that stops heartbeating loses its tasks after this long.
const SESSION_TIMEOUT: Duration = Duration::from_secs(6);
/// A task that failed this many times in a row fails the job.
const MAX_FAILURES: u32 = 5;
const RETRY_AFTER: Duration = Duration::from_secs(1);
const TIMEOUT: Duration = Duration::from_secs(30);

/// One segment of the job graph: what a task runs for its partition.
struct Segment {
    graph: Graph,
    /// Where its rows go: the job's sink, or a repartition topic.
    output: SegmentOutput,
    stat_stages: Vec<Option<usize>>,
}

enum SegmentOutput {
    Sink(SinkTarget),
    Repartition {
        topic: String,
        keys: Vec<Arc<dyn datafusion::physical_expr::PhysicalExpr>>,
        schema: datafusion::arrow::datatypes::SchemaRef,
    },
}

/// A job cut for group mode, with the topics it needs.
struct Layout {
    brokers: String,
    /// The topic whose partitions the group assigns.
    anchor: String,
    partitions: usize,
    segments: Vec<Segment>,
    repartition_topics: Vec<String>,
    state_topic: String,
}

/// Run `graph` as this process's share of the job `config.name`, with
/// every process that runs it with the same `group`, until stopped.
pub fn run_group(
    graph: Graph,
    sink: SinkTarget,
    config: JobConfig,
    stats: Arc<JobStats>,
    group: &str,
) -> Result<()> {
    if config.bounded {
        return Err(StreamError::Unsupported(
            "--bounded with --group: a group-mode job runs until stopped".into(),
        ));
    }
    let layout = layout(&graph, sink, &config.name, group)?;
    ensure_topics(&layout)?;
    let member = Member::join(&layout, &format!("basin-{group}-{}", config.name))?;
    info!(job = %config.name, group, partitions = layout.partitions,
        segments = layout.segments.len(), "joined the pipeline's group");
    let mut tasks = Tasks {
        layout: &layout,
        config: &config,
        group,
        stats,
        running: BTreeMap::new(),
    };
    let outcome = member.run(&config.stop, &mut tasks);
    tasks.stop_all();
    outcome
}

/// Cut `graph` into segments; their topics are named after `job` and `group`.
fn layout(graph: &Graph, sink: SinkTarget, job: &str, group: &str) -> Result<Layout> {
    if !matches!(sink, SinkTarget::Topic(_)) {
        return Err(StreamError::Unsupported(format!(
            "--group: a group-mode job writes to a topic (exactly once, through \
             transactions); this one writes to {}",
            sink.describe()
        )));
    }
    let (brokers, anchor, partitions) = sources(graph)?;
    let prefix = format!("_basin-{group}-{job}");
    let rep_topic = |stage: usize, input: usize| format!("{prefix}-s{stage}-i{input}");
    let mut segments = Vec::new();
    let mut repartition_topics = Vec::new();
    for (s, stage) in graph.stages.iter().enumerate() {
        let (stages, stat_stages) = match &stage.kind {
            StageKind::Source(_) => (vec![stage.clone()], vec![Some(s)]),
            StageKind::Keyed(_) => {
                keyed_segment(graph, s, &brokers, partitions, &mut |i| rep_topic(s, i))
            }
            StageKind::Bounded(_) | StageKind::Remote(_) => {
                return Err(StreamError::Unsupported(
                    "--group: jobs that read lake tables or files alongside topics \
                     (lookup joins against bounded inputs) run in one process only"
                        .into(),
                ))
            }
        };
        let consumers = graph.consumers(s);
        let output = match consumers.first() {
            None => SegmentOutput::Sink(sink.clone()),
            Some(_) if consumers.len() > 1 => {
                return Err(StreamError::Unsupported(
                    "--group: a stage feeding several others".into(),
                ))
            }
            Some(&(c, input)) => {
                let topic = rep_topic(c, input);
                repartition_topics.push(topic.clone());
                SegmentOutput::Repartition {
                    topic,
                    keys: graph.stages[c].inputs[input].keys.clone(),
                    schema: stage.schema.clone(),
                }
            }
        };
        segments.push(Segment {
            graph: Graph { stages },
            output,
            stat_stages,
        });
    }
    Ok(Layout {
        brokers,
        anchor,
        partitions,
        segments,
        repartition_topics,
        state_topic: format!("{prefix}-state"),
    })
}

/// Keyed stage `s` after its inputs, each read from a repartition topic.
fn keyed_segment(
    graph: &Graph,
    s: usize,
    brokers: &str,
    writers: usize,
    topic: &mut dyn FnMut(usize) -> String,
) -> (Vec<StagePlan>, Vec<Option<usize>>) {
    let stage = &graph.stages[s];
    let mut stages = Vec::new();
    let mut inputs = Vec::new();
    for (i, edge) in stage.inputs.iter().enumerate() {
        let schema = graph.stages[edge.from].schema.clone();
        stages.push(StagePlan {
            kind: StageKind::Remote(Arc::new(RemoteInput {
                brokers: brokers.to_string(),
                topic: topic(i),
                schema: schema.clone(),
                writers,
            })),
            inputs: Vec::new(),
            post: crate::ops::Chain::default(),
            schema,
        });
        inputs.push(Edge {
            from: i,
            ..edge.clone()
        });
    }
    let mut keyed = stage.clone();
    keyed.inputs = inputs;
    stages.push(keyed);
    let mut stat_stages = vec![None; stages.len() - 1];
    stat_stages.push(Some(s));
    (stages, stat_stages)
}

/// The brokers, the first source topic and the partition count every
/// source topic must share.
fn sources(graph: &Graph) -> Result<(String, String, usize)> {
    let mut first: Option<(String, String, usize)> = None;
    for stage in &graph.stages {
        let StageKind::Source(scan) = &stage.kind else {
            continue;
        };
        let n = scan.source.partitions()?.len();
        match &first {
            None => first = Some((scan.source.brokers.clone(), scan.source.topic.clone(), n)),
            Some((_, topic, m)) if *m != n => {
                return Err(StreamError::Unsupported(format!(
                    "--group: source topics must have the same number of partitions \
                     ({topic} has {m}, {} has {n})",
                    scan.source.topic
                )))
            }
            Some(_) => {}
        }
    }
    first.ok_or_else(|| StreamError::Unsupported("--group: the job reads no topic".into()))
}

/// Create the repartition topics (N partitions) and the state topic
/// (compacted, a partition per task) unless they exist.
fn ensure_topics(layout: &Layout) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &layout.brokers)
        .set("allow.auto.create.topics", "false")
        .set("log_level", "3")
        .create()?;
    let n = layout.partitions as i32;
    let mut topics: Vec<NewTopic> = layout
        .repartition_topics
        .iter()
        .map(|t| NewTopic::new(t, n, TopicReplication::Fixed(-1)))
        .collect();
    let tasks = n * layout.segments.len() as i32;
    topics.push(
        NewTopic::new(&layout.state_topic, tasks, TopicReplication::Fixed(-1))
            .set("cleanup.policy", "compact"),
    );
    let options = AdminOptions::new().request_timeout(Some(TIMEOUT));
    let created = futures::executor::block_on(admin.create_topics(&topics, &options))?;
    for outcome in created {
        match outcome {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(StreamError::Kafka(format!(
                    "create topic {topic} on {}: {code}",
                    layout.brokers
                )))
            }
        }
    }
    Ok(())
}

/// This process's membership in the job's consumer group.
struct Member {
    consumer: BaseConsumer<QuietContext>,
    anchor: String,
}

impl Member {
    fn join(layout: &Layout, group_id: &str) -> Result<Member> {
        let consumer: BaseConsumer<QuietContext> = ClientConfig::new()
            .set("bootstrap.servers", &layout.brokers)
            .set("group.id", group_id)
            .set("enable.auto.commit", "false")
            .set("partition.assignment.strategy", "range")
            .set(
                "session.timeout.ms",
                SESSION_TIMEOUT.as_millis().to_string(),
            )
            .set("heartbeat.interval.ms", "1000")
            .set("log_level", "3")
            .create_with_context(QuietContext)?;
        consumer.subscribe(&[layout.anchor.as_str()])?;
        Ok(Member {
            consumer,
            anchor: layout.anchor.clone(),
        })
    }

    /// Follow the group's assignment with `tasks` until `stop` is set.
    fn run(&self, stop: &AtomicBool, tasks: &mut Tasks<'_>) -> Result<()> {
        let mut owned = BTreeSet::new();
        while !stop.load(Ordering::Relaxed) {
            // Records are not read here (the partitions are paused); the
            // poll keeps the membership alive and runs rebalances.
            if let Some(Err(e)) = self.consumer.poll(Duration::from_millis(100)) {
                warn!(error = %e, "pipeline group");
            }
            let now = self.owned()?;
            if now != owned {
                info!(partitions = ?now, "pipeline group assignment");
                if let Ok(list) = self.consumer.assignment() {
                    let _ = self.consumer.pause(&list);
                }
                tasks.assign(&now);
                owned = now;
            }
            tasks.check(&owned)?;
        }
        Ok(())
    }

    fn owned(&self) -> Result<BTreeSet<i32>> {
        let list = self.consumer.assignment()?;
        Ok(list
            .elements_for_topic(&self.anchor)
            .iter()
            .map(|e| e.partition())
            .collect())
    }
}

/// The tasks this process runs, by partition.
struct Tasks<'a> {
    layout: &'a Layout,
    config: &'a JobConfig,
    group: &'a str,
    stats: Arc<JobStats>,
    running: BTreeMap<i32, Vec<TaskJob>>,
}

/// One segment for one partition, on its own thread.
struct TaskJob {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Result<()>>>,
    failures: u32,
    retry_at: Option<Instant>,
    started: Instant,
}

impl TaskJob {
    /// Ask the task to stop and wait for it (it keeps its checkpoints).
    fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Tasks<'_> {
    /// Stop the tasks of partitions no longer owned; start the new ones.
    fn assign(&mut self, owned: &BTreeSet<i32>) {
        let gone: Vec<i32> = self
            .running
            .keys()
            .filter(|p| !owned.contains(p))
            .copied()
            .collect();
        for p in gone {
            for task in self.running.remove(&p).unwrap_or_default() {
                task.stop();
            }
        }
        for &p in owned {
            if !self.running.contains_key(&p) {
                let jobs = (0..self.layout.segments.len())
                    .map(|k| self.start(k, p, 0))
                    .collect();
                self.running.insert(p, jobs);
            }
        }
    }

    /// Restart tasks that failed (a process that lost a task it still
    /// thought it owned is fenced, and retries until the group says
    /// otherwise); a task failing again and again fails the job.
    fn check(&mut self, owned: &BTreeSet<i32>) -> Result<()> {
        let partitions: Vec<i32> = self.running.keys().copied().collect();
        for p in partitions {
            for k in 0..self.layout.segments.len() {
                let name = self.name(k, p);
                let job = &mut self.running.get_mut(&p).expect("listed")[k];
                if let Some(at) = job.retry_at {
                    if Instant::now() >= at && owned.contains(&p) {
                        let failures = job.failures;
                        self.running.get_mut(&p).expect("listed")[k] = self.start(k, p, failures);
                    }
                    continue;
                }
                if !job.handle.as_ref().is_some_and(|h| h.is_finished()) {
                    continue;
                }
                let outcome = job.handle.take().expect("finished").join();
                let error = match outcome {
                    Ok(Ok(())) => "stopped by itself".to_string(),
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => "panicked".to_string(),
                };
                // A task that ran a while before failing starts a new count.
                if job.started.elapsed() > Duration::from_secs(60) {
                    job.failures = 0;
                }
                job.failures += 1;
                warn!(task = %name, failures = job.failures, %error, "group task failed");
                if job.failures >= MAX_FAILURES {
                    return Err(StreamError::Task(format!(
                        "task {name} failed {MAX_FAILURES} times in a row: {error}"
                    )));
                }
                job.retry_at = Some(Instant::now() + RETRY_AFTER);
            }
        }
        Ok(())
    }

    fn stop_all(&mut self) {
        for (_, jobs) in std::mem::take(&mut self.running) {
            for job in jobs {
                job.stop();
            }
        }
    }

    fn name(&self, k: usize, p: i32) -> String {
        format!("{}-{}-g{k}-p{p}", self.config.name, self.group)
    }

    /// Start segment `k` for partition `p` on its own thread.
    fn start(&self, k: usize, p: i32, failures: u32) -> TaskJob {
        let segment = &self.layout.segments[k];
        let n = self.layout.partitions as i32;
        let stop = Arc::new(AtomicBool::new(false));
        let name = self.name(k, p);
        let config = JobConfig {
            checkpoint_dir: self
                .config
                .checkpoint_dir
                .join(format!("group-{}", self.group))
                .join(format!("g{k}-p{p}")),
            name: name.clone(),
            parallelism: 1,
            checkpoint_interval: self.config.checkpoint_interval,
            bounded: false,
            fingerprint: self.config.fingerprint.clone(),
            stop: stop.clone(),
            on_checkpoint: self.config.on_checkpoint.clone(),
            group: Some(GroupTask {
                partition: p,
                state: StateTopic {
                    brokers: self.layout.brokers.clone(),
                    topic: self.layout.state_topic.clone(),
                    partition: k as i32 * n + p,
                },
                stat_stages: segment.stat_stages.clone(),
            }),
        };
        let sink = match &segment.output {
            SegmentOutput::Sink(sink) => sink.clone(),
            SegmentOutput::Repartition {
                topic,
                keys,
                schema,
            } => SinkTarget::Repartition(Arc::new(RepartitionTarget {
                brokers: self.layout.brokers.clone(),
                topic: topic.clone(),
                keys: keys.clone(),
                schema: schema.clone(),
                partitions: self.layout.partitions,
                writer: p,
            })),
        };
        let graph = segment.graph.clone();
        let stats = self.stats.clone();
        let handle = std::thread::Builder::new()
            .name(name)
            .spawn(move || run_job(graph, sink, config, stats))
            .expect("spawn a group task");
        TaskJob {
            stop,
            handle: Some(handle),
            failures,
            retry_at: None,
            started: Instant::now(),
        }
    }
}
