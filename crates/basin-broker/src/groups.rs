//! The consumer-group coordinator (Kafka's classic group protocol):
//! membership, rebalances with a generation per round, session expiry, and
//! committed offsets persisted in the internal compacted topic
//! `__consumer_offsets` so they survive restarts.
//!
//! Phases: Empty → PreparingRebalance (waiting for members to (re)join) →
//! CompletingRebalance (waiting for the leader's assignment) → Stable.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use basin_log::{LogStore, PartitionLog, ReadLimit};
use bytes::Bytes;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tracing::{info, warn};

use crate::errors;
use crate::offsets_log;

pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Empty => "Empty",
            Phase::PreparingRebalance => "PreparingRebalance",
            Phase::CompletingRebalance => "CompletingRebalance",
            Phase::Stable => "Stable",
        }
    }
}

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committed {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
}

/// What a JoinGroup asks.
#[derive(Debug, Clone)]
pub struct JoinParams {
    pub group_id: String,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
}

/// A JoinGroup answer.
#[derive(Debug, Clone, Default)]
pub struct JoinResult {
    pub error: i16,
    pub generation: i32,
    pub protocol_type: String,
    pub protocol_name: String,
    pub leader: String,
    pub member_id: String,
    /// Filled for the leader only: `(member id, instance id, metadata)`.
    pub members: Vec<(String, Option<String>, Bytes)>,
}

/// A SyncGroup answer.
#[derive(Debug, Clone, Default)]
pub struct SyncResult {
    pub error: i16,
    pub protocol_type: String,
    pub protocol_name: String,
    pub assignment: Bytes,
}

/// One member as DescribeGroups shows it.
#[derive(Debug, Clone)]
pub struct MemberView {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

/// One group as DescribeGroups shows it.
#[derive(Debug, Clone)]
pub struct GroupView {
    pub phase: Option<Phase>,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<MemberView>,
}

struct Member {
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    last_seen: Instant,
    join_tx: Option<oneshot::Sender<JoinResult>>,
    sync_tx: Option<oneshot::Sender<SyncResult>>,
}

struct Group {
    phase: Phase,
    generation: i32,
    protocol_type: String,
    protocol: String,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    rebalance_deadline: Option<Instant>,
}

impl Group {
    fn new() -> Group {
        Group {
            phase: Phase::Empty,
            generation: 0,
            protocol_type: String::new(),
            protocol: String::new(),
            leader: None,
            members: BTreeMap::new(),
            rebalance_deadline: None,
        }
    }
}

#[derive(Default)]
struct Inner {
    groups: HashMap<String, Group>,
    offsets: HashMap<String, BTreeMap<(String, i32), Committed>>,
}

/// Coordinator for every group of this node.
pub struct GroupCoordinator {
    log: Arc<PartitionLog>,
    inner: Mutex<Inner>,
}

/// An early answer (an error) or a wait for the rebalance to finish.
pub enum Pending<T> {
    Now(T),
    Wait(oneshot::Receiver<T>),
}

impl GroupCoordinator {
    /// Open the offsets topic (creating it) and replay committed offsets.
    pub fn open(store: Arc<LogStore>) -> Result<GroupCoordinator, basin_log::LogError> {
        let topic = match store.topic(OFFSETS_TOPIC) {
            Some(t) => t,
            None => {
                let configs =
                    BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]);
                store.create_topic(OFFSETS_TOPIC, 1, configs, true)?
            }
        };
        let log = topic
            .partition(0)
            .expect("offsets topic has a partition")
            .clone();
        log.set_high_watermark(log.log_end_offset());
        let offsets = offsets_log::replay(&log)?;
        let count: usize = offsets.values().map(|m| m.len()).sum();
        info!(
            groups = offsets.len(),
            offsets = count,
            "loaded committed offsets"
        );
        Ok(GroupCoordinator {
            log,
            inner: Mutex::new(Inner {
                offsets,
                ..Inner::default()
            }),
        })
    }

    /// JoinGroup.
    pub fn join(&self, p: JoinParams) -> Pending<JoinResult> {
        let fail = |error| {
            Pending::Now(JoinResult {
                error,
                member_id: p.member_id.clone(),
                generation: -1,
                ..Default::default()
            })
        };
        if p.group_id.is_empty() {
            return fail(errors::INVALID_GROUP_ID);
        }
        if p.session_timeout < Duration::from_millis(1000)
            || p.session_timeout > Duration::from_secs(3600)
        {
            return fail(errors::INVALID_SESSION_TIMEOUT);
        }
        let mut inner = self.inner.lock();
        let group = inner
            .groups
            .entry(p.group_id.clone())
            .or_insert_with(Group::new);
        if !compatible(group, &p) {
            return fail(errors::INCONSISTENT_GROUP_PROTOCOL);
        }
        if !p.member_id.is_empty() && !group.members.contains_key(&p.member_id) {
            return fail(errors::UNKNOWN_MEMBER_ID);
        }
        let member_id = if p.member_id.is_empty() {
            format!(
                "{}-{}",
                if p.client_id.is_empty() {
                    "member"
                } else {
                    &p.client_id
                },
                uuid::Uuid::new_v4()
            )
        } else {
            p.member_id.clone()
        };
        let (tx, rx) = oneshot::channel();
        let member = Member {
            instance_id: p.instance_id,
            client_id: p.client_id,
            client_host: p.client_host,
            session_timeout: p.session_timeout,
            rebalance_timeout: p.rebalance_timeout.max(p.session_timeout),
            protocols: p.protocols,
            assignment: Bytes::new(),
            last_seen: Instant::now(),
            join_tx: Some(tx),
            sync_tx: None,
        };
        group.protocol_type = p.protocol_type;
        group.members.insert(member_id, member);
        if group.phase != Phase::PreparingRebalance {
            prepare_rebalance(group, &p.group_id);
        }
        try_complete_join(group, &p.group_id, false);
        Pending::Wait(rx)
    }

    /// SyncGroup: the leader hands out assignments; others wait for theirs.
    pub fn sync(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        assignments: Vec<(String, Bytes)>,
    ) -> Pending<SyncResult> {
        let fail = |error| {
            Pending::Now(SyncResult {
                error,
                ..Default::default()
            })
        };
        let mut inner = self.inner.lock();
        let Some(group) = inner.groups.get_mut(group_id) else {
            return fail(errors::UNKNOWN_MEMBER_ID);
        };
        if !group.members.contains_key(member_id) {
            return fail(errors::UNKNOWN_MEMBER_ID);
        }
        if generation != group.generation {
            return fail(errors::ILLEGAL_GENERATION);
        }
        match group.phase {
            Phase::Empty => return fail(errors::UNKNOWN_MEMBER_ID),
            Phase::PreparingRebalance => return fail(errors::REBALANCE_IN_PROGRESS),
            Phase::Stable => return Pending::Now(sync_result(group, member_id)),
            Phase::CompletingRebalance => {}
        }
        let member = group.members.get_mut(member_id).expect("checked");
        member.last_seen = Instant::now();
        let (tx, rx) = oneshot::channel();
        member.sync_tx = Some(tx);
        if group.leader.as_deref() == Some(member_id) {
            complete_sync(group, group_id, assignments);
        }
        Pending::Wait(rx)
    }

    /// Heartbeat: keeps the member alive and tells it of rebalances.
    pub fn heartbeat(&self, group_id: &str, generation: i32, member_id: &str) -> i16 {
        let mut inner = self.inner.lock();
        let Some(group) = inner.groups.get_mut(group_id) else {
            return errors::UNKNOWN_MEMBER_ID;
        };
        let Some(member) = group.members.get_mut(member_id) else {
            return errors::UNKNOWN_MEMBER_ID;
        };
        member.last_seen = Instant::now();
        if group.phase == Phase::PreparingRebalance {
            return errors::REBALANCE_IN_PROGRESS;
        }
        if generation != group.generation {
            return errors::ILLEGAL_GENERATION;
        }
        errors::NONE
    }

    /// LeaveGroup for each `(member id, instance id)`; an error code each.
    pub fn leave(&self, group_id: &str, members: &[(String, Option<String>)]) -> Vec<i16> {
        let mut inner = self.inner.lock();
        let Some(group) = inner.groups.get_mut(group_id) else {
            return vec![errors::UNKNOWN_MEMBER_ID; members.len()];
        };
        let codes = members
            .iter()
            .map(|(id, instance)| {
                let id = resolve_member(group, id, instance.as_deref());
                match id.and_then(|id| group.members.remove(&id)) {
                    Some(_) => errors::NONE,
                    None => errors::UNKNOWN_MEMBER_ID,
                }
            })
            .collect();
        info!(
            group = group_id,
            remaining = group.members.len(),
            "member left"
        );
        membership_changed(group, group_id);
        codes
    }

    /// Expire members whose session ran out and finish overdue rebalances.
    pub fn tick(&self, now: Instant) {
        let mut inner = self.inner.lock();
        for (id, group) in inner.groups.iter_mut() {
            let expired: Vec<String> = group
                .members
                .iter()
                .filter(|(_, m)| {
                    m.join_tx.is_none() && now.duration_since(m.last_seen) > m.session_timeout
                })
                .map(|(k, _)| k.clone())
                .collect();
            for member in &expired {
                warn!(group = %id, member = %member, "session timed out; removing member");
                group.members.remove(member);
            }
            if !expired.is_empty() {
                membership_changed(group, id);
            }
            if group.phase == Phase::PreparingRebalance
                && group.rebalance_deadline.is_some_and(|d| now >= d)
            {
                try_complete_join(group, id, true);
            }
        }
    }

    /// OffsetCommit; one error code per partition, in order.
    pub fn commit(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        offsets: Vec<(String, i32, Committed)>,
    ) -> Vec<i16> {
        let check = self.check_commit(group_id, generation, member_id);
        if check != errors::NONE {
            return vec![check; offsets.len()];
        }
        let n = offsets.len();
        match self.store_offsets(group_id, offsets) {
            Ok(()) => vec![errors::NONE; n],
            Err(e) => {
                warn!(group = group_id, error = %e, "could not persist committed offsets");
                vec![errors::UNKNOWN_SERVER_ERROR; n]
            }
        }
    }

    /// Persist and apply committed offsets without membership checks (a
    /// committed transaction's offsets).
    pub fn store_offsets(
        &self,
        group_id: &str,
        offsets: Vec<(String, i32, Committed)>,
    ) -> Result<(), basin_log::LogError> {
        if offsets.is_empty() {
            return Ok(());
        }
        let entries: Vec<_> = offsets
            .iter()
            .map(|(t, p, c)| (group_id, t.as_str(), *p, Some(c)))
            .collect();
        offsets_log::append(&self.log, &entries)?;
        drop(entries);
        let mut inner = self.inner.lock();
        let stored = inner.offsets.entry(group_id.to_string()).or_default();
        for (t, p, c) in offsets {
            stored.insert((t, p), c);
        }
        Ok(())
    }

    /// Whether `member_id` of `generation` may commit for the group (a
    /// generation below 0 with no member id is a standalone commit).
    pub fn check_commit(&self, group_id: &str, generation: i32, member_id: &str) -> i16 {
        if group_id.is_empty() {
            return errors::INVALID_GROUP_ID;
        }
        if generation < 0 && member_id.is_empty() {
            return errors::NONE;
        }
        let inner = self.inner.lock();
        let Some(group) = inner.groups.get(group_id) else {
            return errors::UNKNOWN_MEMBER_ID;
        };
        if !group.members.contains_key(member_id) {
            return errors::UNKNOWN_MEMBER_ID;
        }
        if generation != group.generation {
            return errors::ILLEGAL_GENERATION;
        }
        if group.phase == Phase::CompletingRebalance {
            return errors::REBALANCE_IN_PROGRESS;
        }
        errors::NONE
    }

    /// Committed offsets of a group: the asked partitions, or all.
    pub fn committed(
        &self,
        group_id: &str,
        wanted: Option<&[(String, Vec<i32>)]>,
    ) -> Vec<(String, i32, Option<Committed>)> {
        let inner = self.inner.lock();
        let stored = inner.offsets.get(group_id);
        match wanted {
            Some(topics) => topics
                .iter()
                .flat_map(|(t, ps)| ps.iter().map(move |p| (t.clone(), *p)))
                .map(|(t, p)| {
                    let c = stored.and_then(|s| s.get(&(t.clone(), p))).cloned();
                    (t, p, c)
                })
                .collect(),
            None => stored
                .into_iter()
                .flatten()
                .map(|((t, p), c)| (t.clone(), *p, Some(c.clone())))
                .collect(),
        }
    }

    /// DescribeGroups view of one group (`phase` None: unknown group).
    pub fn describe(&self, group_id: &str) -> GroupView {
        let inner = self.inner.lock();
        let Some(group) = inner.groups.get(group_id) else {
            return GroupView {
                phase: None,
                protocol_type: String::new(),
                protocol: String::new(),
                members: Vec::new(),
            };
        };
        let members = group
            .members
            .iter()
            .map(|(id, m)| MemberView {
                member_id: id.clone(),
                instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                metadata: m
                    .protocols
                    .iter()
                    .find(|(n, _)| *n == group.protocol)
                    .map(|(_, b)| b.clone())
                    .unwrap_or_default(),
                assignment: m.assignment.clone(),
            })
            .collect();
        GroupView {
            phase: Some(group.phase),
            protocol_type: group.protocol_type.clone(),
            protocol: group.protocol.clone(),
            members,
        }
    }

    /// ListGroups: `(group id, protocol type, phase)`, including groups
    /// known only by their committed offsets.
    pub fn list(&self) -> Vec<(String, String, Phase)> {
        let inner = self.inner.lock();
        let mut out: BTreeMap<String, (String, Phase)> = inner
            .offsets
            .keys()
            .map(|g| (g.clone(), ("consumer".to_string(), Phase::Empty)))
            .collect();
        for (id, g) in &inner.groups {
            out.insert(id.clone(), (g.protocol_type.clone(), g.phase));
        }
        out.into_iter().map(|(g, (t, p))| (g, t, p)).collect()
    }
}

fn compatible(group: &Group, p: &JoinParams) -> bool {
    if group.members.is_empty() {
        return !p.protocols.is_empty();
    }
    group.protocol_type == p.protocol_type
        && p.protocols.iter().any(|(name, _)| {
            group
                .members
                .values()
                .all(|m| m.protocols.iter().any(|(n, _)| n == name))
        })
}

fn resolve_member(group: &Group, id: &str, instance: Option<&str>) -> Option<String> {
    if group.members.contains_key(id) {
        return Some(id.to_string());
    }
    let instance = instance?;
    group
        .members
        .iter()
        .find(|(_, m)| m.instance_id.as_deref() == Some(instance))
        .map(|(k, _)| k.clone())
}

fn prepare_rebalance(group: &mut Group, id: &str) {
    let longest = group
        .members
        .values()
        .map(|m| m.rebalance_timeout)
        .max()
        .unwrap_or_default();
    group.phase = Phase::PreparingRebalance;
    group.rebalance_deadline = Some(Instant::now() + longest);
    for m in group.members.values_mut() {
        if let Some(tx) = m.sync_tx.take() {
            let _ = tx.send(SyncResult {
                error: errors::REBALANCE_IN_PROGRESS,
                ..Default::default()
            });
        }
    }
    info!(
        group = id,
        members = group.members.len(),
        "rebalance started"
    );
}

fn membership_changed(group: &mut Group, id: &str) {
    if group.members.is_empty() {
        group.phase = Phase::Empty;
        group.leader = None;
        group.generation += 1;
        return;
    }
    if group.phase != Phase::PreparingRebalance {
        prepare_rebalance(group, id);
    }
    try_complete_join(group, id, false);
}

/// Finish the join phase when every member has rejoined, or (on deadline)
/// with those that did, dropping the others.
fn try_complete_join(group: &mut Group, id: &str, deadline_passed: bool) {
    let all_joined = group.members.values().all(|m| m.join_tx.is_some());
    if !all_joined && !deadline_passed {
        return;
    }
    group.members.retain(|_, m| m.join_tx.is_some());
    if group.members.is_empty() {
        group.phase = Phase::Empty;
        group.generation += 1;
        group.leader = None;
        return;
    }
    group.generation += 1;
    group.protocol = choose_protocol(group);
    if !group
        .leader
        .as_ref()
        .is_some_and(|l| group.members.contains_key(l))
    {
        group.leader = group.members.keys().next().cloned();
    }
    group.phase = Phase::CompletingRebalance;
    group.rebalance_deadline = None;
    let leader = group.leader.clone().unwrap_or_default();
    let roster: Vec<(String, Option<String>, Bytes)> = group
        .members
        .iter()
        .map(|(mid, m)| {
            let meta = m
                .protocols
                .iter()
                .find(|(n, _)| *n == group.protocol)
                .map(|(_, b)| b.clone())
                .unwrap_or_default();
            (mid.clone(), m.instance_id.clone(), meta)
        })
        .collect();
    for (mid, m) in group.members.iter_mut() {
        m.assignment = Bytes::new();
        m.last_seen = Instant::now();
        let result = JoinResult {
            error: errors::NONE,
            generation: group.generation,
            protocol_type: group.protocol_type.clone(),
            protocol_name: group.protocol.clone(),
            leader: leader.clone(),
            member_id: mid.clone(),
            members: if *mid == leader {
                roster.clone()
            } else {
                Vec::new()
            },
        };
        if let Some(tx) = m.join_tx.take() {
            let _ = tx.send(result);
        }
    }
    info!(group = id, generation = group.generation, members = group.members.len(), leader = %leader, "rebalance joined");
}

/// The first protocol of the leader-to-be that every member supports.
fn choose_protocol(group: &Group) -> String {
    let first = group.members.values().next().expect("non-empty group");
    first
        .protocols
        .iter()
        .map(|(n, _)| n)
        .find(|name| {
            group
                .members
                .values()
                .all(|m| m.protocols.iter().any(|(n, _)| n == *name))
        })
        .cloned()
        .unwrap_or_default()
}

fn complete_sync(group: &mut Group, id: &str, assignments: Vec<(String, Bytes)>) {
    let mut assignments: HashMap<String, Bytes> = assignments.into_iter().collect();
    for (mid, m) in group.members.iter_mut() {
        m.assignment = assignments.remove(mid).unwrap_or_default();
    }
    group.phase = Phase::Stable;
    let member_ids: Vec<String> = group.members.keys().cloned().collect();
    for mid in member_ids {
        let result = sync_result(group, &mid);
        if let Some(tx) = group.members.get_mut(&mid).and_then(|m| m.sync_tx.take()) {
            let _ = tx.send(result);
        }
    }
    info!(group = id, generation = group.generation, "group stable");
}

fn sync_result(group: &Group, member_id: &str) -> SyncResult {
    SyncResult {
        error: errors::NONE,
        protocol_type: group.protocol_type.clone(),
        protocol_name: group.protocol.clone(),
        assignment: group
            .members
            .get(member_id)
            .map(|m| m.assignment.clone())
            .unwrap_or_default(),
    }
}

/// Read every committed offset back from the offsets log.
pub(crate) fn read_all(log: &PartitionLog) -> Result<Vec<u8>, basin_log::LogError> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    let end = log.log_end_offset();
    while offset < end {
        let chunk = log.read(offset, 1 << 20, ReadLimit::LogEnd)?;
        let Some(next) = basin_log::batch::headers(&chunk.records)
            .last()
            .map(|(_, h)| h.next_offset())
        else {
            break;
        };
        out.extend_from_slice(&chunk.records);
        offset = next;
    }
    Ok(out)
}
