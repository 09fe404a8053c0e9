//! The transaction coordinator (Kafka's KIP-98) for every transactional id:
//! this single node coordinates them all.
//!
//! Per transactional id it keeps a producer id and epoch (bumped by every
//! InitProducerId, which fences older producers), the transaction timeout and
//! the state of the current transaction:
//!
//! Empty / CompleteCommit / CompleteAbort → (AddPartitionsToTxn,
//! AddOffsetsToTxn) Ongoing → (EndTxn, or the timeout) PrepareCommit /
//! PrepareAbort → CompleteCommit / CompleteAbort.
//!
//! Ending a transaction persists the Prepare state, writes a COMMIT or ABORT
//! marker to every partition of the transaction, applies (commit) or drops
//! (abort) the offsets of TxnOffsetCommit, and persists the Complete state.
//! Every change is appended to `__transaction_state` (`txn_log.rs`) before
//! it is acknowledged; on start the coordinator replays it, finishes
//! transactions caught in Prepare, and aborts open transactions in partition
//! logs that no coordinator state accounts for. Ongoing transactions are
//! aborted once their timeout (counted from their first AddPartitionsToTxn /
//! AddOffsetsToTxn, in wall-clock time so it spans restarts) passes.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use basin_log::{ControlType, LogError, LogStore, OngoingTxn, PartitionLog};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::groups::{Committed, GroupCoordinator};
use crate::handlers::produce::LEADER_EPOCH;
use crate::txn_log::{self, TXN_TOPIC};

/// Kafka's `transaction.max.timeout.ms` default: 15 minutes.
pub const MAX_TXN_TIMEOUT_MS: i32 = 900_000;
/// The epoch of this node's coordinator, written in markers.
const COORDINATOR_EPOCH: i32 = 0;
/// The last epoch a producer id may reach before a new id is handed out.
const MAX_EPOCH: i16 = i16::MAX - 1;

/// Why a transactional request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxnError {
    #[error("the producer id does not belong to this transactional id")]
    ProducerIdMapping,
    #[error("the producer epoch is not current: fenced by a newer producer")]
    Fenced,
    #[error("the request is not valid in the transaction's state")]
    InvalidState,
    #[error("the transaction is being completed")]
    Concurrent,
    #[error("transaction timeout must be in 1..={MAX_TXN_TIMEOUT_MS} ms")]
    InvalidTimeout,
    #[error("cannot persist transaction state: {0}")]
    Storage(String),
}

impl From<LogError> for TxnError {
    fn from(e: LogError) -> Self {
        TxnError::Storage(e.to_string())
    }
}

impl From<std::io::Error> for TxnError {
    fn from(e: std::io::Error) -> Self {
        TxnError::Storage(e.to_string())
    }
}

/// Where a transaction is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
}

/// Offsets of one group committed in a transaction: topic → partition → offset.
type GroupOffsets = BTreeMap<String, BTreeMap<i32, Committed>>;

/// Everything the coordinator knows about one transactional id.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TxnMeta {
    /// -1 until the first InitProducerId assigns one.
    pub producer_id: i64,
    pub epoch: i16,
    /// The epoch before the last bump (-1 if none): a retried
    /// InitProducerId that lost its answer gets the current epoch back.
    pub last_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    pub partitions: BTreeSet<(String, i32)>,
    pub groups: BTreeSet<String>,
    /// TxnOffsetCommit offsets, applied to their groups on commit.
    pub pending: BTreeMap<String, GroupOffsets>,
    /// Wall-clock start of the ongoing transaction, -1 when none.
    pub started_ms: i64,
}

impl TxnMeta {
    fn new() -> TxnMeta {
        TxnMeta {
            producer_id: -1,
            epoch: -1,
            last_epoch: -1,
            timeout_ms: 0,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            groups: BTreeSet::new(),
            pending: BTreeMap::new(),
            started_ms: -1,
        }
    }

    fn is_prepared(&self) -> bool {
        matches!(self.state, TxnState::PrepareCommit | TxnState::PrepareAbort)
    }

    fn expired(&self, now_ms: i64) -> bool {
        self.state == TxnState::Ongoing && now_ms >= self.started_ms + i64::from(self.timeout_ms)
    }

    /// Start a transaction if none is ongoing.
    fn begin(&mut self, now_ms: i64) -> Result<(), TxnError> {
        match self.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => Err(TxnError::Concurrent),
            TxnState::Ongoing => Ok(()),
            _ => {
                self.state = TxnState::Ongoing;
                self.started_ms = now_ms;
                Ok(())
            }
        }
    }

    /// Bump the epoch to fence older producers; false when exhausted.
    fn fence(&mut self) -> bool {
        if self.epoch >= MAX_EPOCH {
            return false;
        }
        self.last_epoch = self.epoch;
        self.epoch += 1;
        true
    }
}

/// Where new producer ids come from.
pub trait ProducerIds {
    fn next_producer_id(&self) -> std::io::Result<i64>;
}

/// What the coordinator needs from the rest of the broker.
pub struct TxnContext<'a> {
    pub groups: &'a GroupCoordinator,
    pub ids: &'a dyn ProducerIds,
}

/// An InitProducerId with a transactional id.
#[derive(Debug, Clone)]
pub struct InitTxn {
    pub transactional_id: String,
    pub timeout_ms: i32,
    /// The caller's current producer id and epoch (v3+), if it has one.
    pub current: Option<(i64, i16)>,
}

type Entry = Arc<Mutex<TxnMeta>>;

/// The coordinator of every transactional id of this node.
pub struct TxnCoordinator {
    store: Arc<LogStore>,
    /// `__transaction_state`, created with the first transactional id.
    log: Mutex<Option<Arc<PartitionLog>>>,
    txns: Mutex<HashMap<String, Entry>>,
}

impl TxnCoordinator {
    /// Replay `__transaction_state`, if it exists.
    pub fn open(store: Arc<LogStore>) -> Result<TxnCoordinator, LogError> {
        let log = store.topic(TXN_TOPIC).and_then(|t| t.partition(0).cloned());
        let metas = match &log {
            Some(log) => txn_log::replay(log)?,
            None => HashMap::new(),
        };
        if !metas.is_empty() {
            info!(transactional_ids = metas.len(), "loaded transaction state");
        }
        let txns = metas
            .into_iter()
            .map(|(id, meta)| (id, Arc::new(Mutex::new(meta))))
            .collect();
        Ok(TxnCoordinator {
            store,
            log: Mutex::new(log),
            txns: Mutex::new(txns),
        })
    }

    /// After a restart: finish transactions caught in Prepare and abort
    /// open transactions in partition logs that no ongoing transaction owns.
    pub fn recover(&self, ctx: &TxnContext<'_>) {
        for (id, entry) in self.entries() {
            let mut meta = entry.lock();
            if meta.is_prepared() {
                let commit = meta.state == TxnState::PrepareCommit;
                info!(transactional_id = %id, commit, "finishing a transaction prepared before the restart");
                if let Err(e) = self.complete(ctx, &id, &mut meta, commit) {
                    warn!(transactional_id = %id, error = %e, "could not finish a prepared transaction");
                }
            }
        }
        self.abort_dangling();
    }

    fn entries(&self) -> Vec<(String, Entry)> {
        let txns = self.txns.lock();
        txns.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    fn entry(&self, transactional_id: &str) -> Option<Entry> {
        self.txns.lock().get(transactional_id).cloned()
    }

    /// Producer id → the partitions of its ongoing (or prepared) transaction.
    fn owned_partitions(&self) -> HashMap<i64, BTreeSet<(String, i32)>> {
        self.entries()
            .into_iter()
            .map(|(_, e)| e.lock().clone())
            .filter(|m| m.state == TxnState::Ongoing || m.is_prepared())
            .map(|m| (m.producer_id, m.partitions))
            .collect()
    }

    /// Abort open transactions in partition logs that the coordinator does
    /// not know (its state was lost): they would hold the last stable
    /// offset back forever.
    fn abort_dangling(&self) {
        let owned = self.owned_partitions();
        for topic in self.store.topics() {
            for (p, log) in topic.partitions.iter().enumerate() {
                let key = (topic.meta.name.clone(), p as i32);
                let is_owned = |pid: i64| owned.get(&pid).is_some_and(|parts| parts.contains(&key));
                for txn in log.ongoing_transactions() {
                    if !is_owned(txn.producer_id) {
                        abort_unowned(log, &key, &txn);
                    }
                }
            }
        }
    }

    /// `__transaction_state`, created on first use.
    fn state_log(&self) -> Result<Arc<PartitionLog>, LogError> {
        let mut slot = self.log.lock();
        if let Some(log) = slot.as_ref() {
            return Ok(log.clone());
        }
        let topic = match self.store.topic(TXN_TOPIC) {
            Some(t) => t,
            None => {
                let configs = BTreeMap::from([("cleanup.policy".into(), "compact".into())]);
                match self.store.create_topic(TXN_TOPIC, 1, configs, true) {
                    Ok(t) => t,
                    Err(LogError::TopicExists(_)) => self
                        .store
                        .topic(TXN_TOPIC)
                        .ok_or_else(|| LogError::UnknownTopic(TXN_TOPIC.into()))?,
                    Err(e) => return Err(e),
                }
            }
        };
        let log = topic.partition(0).expect("one partition").clone();
        *slot = Some(log.clone());
        Ok(log)
    }

    fn persist(&self, transactional_id: &str, meta: &TxnMeta) -> Result<(), TxnError> {
        let log = self.state_log()?;
        txn_log::append(&log, transactional_id, meta)?;
        Ok(())
    }

    /// Apply `change` to a copy of `meta`, persist it, then keep it; on any
    /// error `meta` is left as it was.
    fn update(
        &self,
        transactional_id: &str,
        meta: &mut TxnMeta,
        change: impl FnOnce(&mut TxnMeta) -> Result<(), TxnError>,
    ) -> Result<(), TxnError> {
        let mut next = meta.clone();
        change(&mut next)?;
        self.persist(transactional_id, &next)?;
        *meta = next;
        Ok(())
    }

    /// InitProducerId for a transactional id: the (stable) producer id with
    /// a bumped epoch; an ongoing transaction of an older epoch is aborted.
    pub fn init_producer_id(
        &self,
        ctx: &TxnContext<'_>,
        req: &InitTxn,
    ) -> Result<(i64, i16), TxnError> {
        if !(1..=MAX_TXN_TIMEOUT_MS).contains(&req.timeout_ms) {
            return Err(TxnError::InvalidTimeout);
        }
        let id = &req.transactional_id;
        let entry = self
            .txns
            .lock()
            .entry(id.clone())
            .or_insert_with(|| Arc::new(Mutex::new(TxnMeta::new())))
            .clone();
        let mut meta = entry.lock();
        if meta.producer_id < 0 {
            return self.first_init(ctx, id, &mut meta, req.timeout_ms);
        }
        if let Some((pid, epoch)) = req.current.filter(|&(pid, _)| pid >= 0) {
            if pid != meta.producer_id || (epoch != meta.epoch && epoch != meta.last_epoch) {
                return Err(TxnError::Fenced);
            }
            if epoch == meta.last_epoch && !meta.is_prepared() && meta.state != TxnState::Ongoing {
                // A retry of a bump whose answer was lost.
                return Ok((meta.producer_id, meta.epoch));
            }
        }
        self.reinit(ctx, id, &mut meta, req.timeout_ms)
    }

    fn first_init(
        &self,
        ctx: &TxnContext<'_>,
        id: &str,
        meta: &mut TxnMeta,
        timeout_ms: i32,
    ) -> Result<(i64, i16), TxnError> {
        let producer_id = ctx.ids.next_producer_id()?;
        self.update(id, meta, |m| {
            m.producer_id = producer_id;
            m.epoch = 0;
            m.timeout_ms = timeout_ms;
            Ok(())
        })?;
        info!(
            transactional_id = id,
            producer_id, "new transactional producer"
        );
        Ok((meta.producer_id, meta.epoch))
    }

    /// A returning transactional id: finish or abort what is in flight, then
    /// bump the epoch (or hand out a new producer id once it is exhausted).
    fn reinit(
        &self,
        ctx: &TxnContext<'_>,
        id: &str,
        meta: &mut TxnMeta,
        timeout_ms: i32,
    ) -> Result<(i64, i16), TxnError> {
        if meta.is_prepared() {
            let commit = meta.state == TxnState::PrepareCommit;
            self.complete(ctx, id, meta, commit)?;
        }
        if meta.state == TxnState::Ongoing {
            // Fence first (the markers carry the new epoch), then bump once
            // more below, as Kafka does: the zombie's epoch is then neither
            // the current nor the last one, so it cannot pass for a retry.
            let mut fenced = meta.clone();
            fenced.fence();
            info!(
                transactional_id = id,
                producer_id = meta.producer_id,
                epoch = fenced.epoch,
                "aborting the transaction of an older producer epoch"
            );
            self.complete(ctx, id, &mut fenced, false)?;
            *meta = fenced;
        }
        let new_id = if meta.epoch < MAX_EPOCH {
            None
        } else {
            Some(ctx.ids.next_producer_id()?)
        };
        self.update(id, meta, |m| {
            match new_id {
                Some(pid) => (m.producer_id, m.epoch, m.last_epoch) = (pid, 0, -1),
                None => {
                    m.fence();
                }
            }
            m.timeout_ms = timeout_ms;
            m.state = TxnState::Empty;
            Ok(())
        })?;
        Ok((meta.producer_id, meta.epoch))
    }

    /// Run `f` on the state of `transactional_id` after checking that the
    /// caller is its current producer.
    fn with_current<T>(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        f: impl FnOnce(&mut TxnMeta) -> Result<T, TxnError>,
    ) -> Result<T, TxnError> {
        let entry = self
            .entry(transactional_id)
            .ok_or(TxnError::ProducerIdMapping)?;
        let mut meta = entry.lock();
        if meta.producer_id != producer_id || meta.producer_id < 0 {
            return Err(TxnError::ProducerIdMapping);
        }
        if meta.epoch != epoch {
            return Err(TxnError::Fenced);
        }
        f(&mut meta)
    }

    /// AddPartitionsToTxn (partitions already checked to exist).
    pub fn add_partitions(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[(String, i32)],
    ) -> Result<(), TxnError> {
        let now = crate::server::now_millis();
        self.with_current(transactional_id, producer_id, epoch, |meta| {
            let known = meta.state == TxnState::Ongoing
                && partitions.iter().all(|p| meta.partitions.contains(p));
            if known {
                return Ok(());
            }
            self.update(transactional_id, meta, |m| {
                m.begin(now)?;
                m.partitions.extend(partitions.iter().cloned());
                Ok(())
            })
        })
    }

    /// AddOffsetsToTxn: the group's offsets will be part of the transaction.
    pub fn add_offsets(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        group_id: &str,
    ) -> Result<(), TxnError> {
        let now = crate::server::now_millis();
        self.with_current(transactional_id, producer_id, epoch, |meta| {
            if meta.state == TxnState::Ongoing && meta.groups.contains(group_id) {
                return Ok(());
            }
            self.update(transactional_id, meta, |m| {
                m.begin(now)?;
                m.groups.insert(group_id.to_string());
                Ok(())
            })
        })
    }

    /// TxnOffsetCommit: offsets kept pending until the transaction commits.
    pub fn txn_offset_commit(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        group_id: &str,
        offsets: Vec<(String, i32, Committed)>,
    ) -> Result<(), TxnError> {
        self.with_current(transactional_id, producer_id, epoch, |meta| {
            if meta.state != TxnState::Ongoing {
                return Err(TxnError::InvalidState);
            }
            self.update(transactional_id, meta, |m| {
                m.groups.insert(group_id.to_string());
                let group = m.pending.entry(group_id.to_string()).or_default();
                for (topic, partition, c) in offsets {
                    group.entry(topic).or_default().insert(partition, c);
                }
                Ok(())
            })
        })
    }

    /// EndTxn: commit or abort the ongoing transaction. A retry of the same
    /// decision after it completed succeeds again.
    pub fn end_txn(
        &self,
        ctx: &TxnContext<'_>,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        commit: bool,
    ) -> Result<(), TxnError> {
        self.with_current(transactional_id, producer_id, epoch, |meta| {
            match (meta.state, commit) {
                (TxnState::Ongoing, _) => self.complete(ctx, transactional_id, meta, commit),
                (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
                    self.complete(ctx, transactional_id, meta, commit)
                }
                (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => Ok(()),
                (TxnState::PrepareCommit | TxnState::PrepareAbort, _) => Err(TxnError::Concurrent),
                _ => Err(TxnError::InvalidState),
            }
        })
    }

    /// Prepare, write the markers, apply or drop the offsets, complete.
    fn complete(
        &self,
        ctx: &TxnContext<'_>,
        transactional_id: &str,
        meta: &mut TxnMeta,
        commit: bool,
    ) -> Result<(), TxnError> {
        meta.state = if commit {
            TxnState::PrepareCommit
        } else {
            TxnState::PrepareAbort
        };
        self.persist(transactional_id, meta)?;
        self.write_markers(meta, commit)?;
        if commit {
            for (group, offsets) in &meta.pending {
                ctx.groups.store_offsets(group, flatten(offsets))?;
            }
        }
        self.update(transactional_id, meta, |m| {
            m.state = if commit {
                TxnState::CompleteCommit
            } else {
                TxnState::CompleteAbort
            };
            m.partitions.clear();
            m.groups.clear();
            m.pending.clear();
            m.started_ms = -1;
            Ok(())
        })?;
        info!(
            transactional_id,
            producer_id = meta.producer_id,
            epoch = meta.epoch,
            commit,
            "transaction completed"
        );
        Ok(())
    }

    fn write_markers(&self, meta: &TxnMeta, commit: bool) -> Result<(), TxnError> {
        let marker = if commit {
            ControlType::Commit
        } else {
            ControlType::Abort
        };
        for (topic, p) in &meta.partitions {
            let Some(log) = self
                .store
                .topic(topic)
                .and_then(|t| t.partition(*p).cloned())
            else {
                warn!(
                    topic,
                    partition = p,
                    "partition of a transaction is gone; no marker written"
                );
                continue;
            };
            let info = log.append_marker(
                meta.producer_id,
                meta.epoch,
                marker,
                COORDINATOR_EPOCH,
                LEADER_EPOCH,
            )?;
            log.set_high_watermark(info.log_end_offset);
        }
        Ok(())
    }

    /// Produce of a transactional batch: run `append` only if the partition
    /// is in the producer's ongoing transaction at its current epoch (under
    /// the transaction's lock, so no marker can slip in between).
    pub fn produce<T>(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        partition: &(String, i32),
        append: impl FnOnce() -> T,
    ) -> Result<T, TxnError> {
        self.with_current(transactional_id, producer_id, epoch, |meta| {
            if meta.state != TxnState::Ongoing || !meta.partitions.contains(partition) {
                return Err(TxnError::InvalidState);
            }
            Ok(append())
        })
    }

    /// Abort transactions past their timeout (fencing their producer with a
    /// bumped epoch) and retry prepared ones. Returns how many ended.
    pub fn expire(&self, ctx: &TxnContext<'_>, now_ms: i64) -> usize {
        let mut ended = 0;
        for (id, entry) in self.entries() {
            let mut meta = entry.lock();
            let result = if meta.expired(now_ms) {
                info!(transactional_id = %id, producer_id = meta.producer_id, timeout_ms = meta.timeout_ms,
                      "aborting a transaction past its timeout");
                let mut fenced = meta.clone();
                fenced.fence();
                self.complete(ctx, &id, &mut fenced, false)
                    .map(|()| *meta = fenced)
            } else if meta.is_prepared() {
                let commit = meta.state == TxnState::PrepareCommit;
                self.complete(ctx, &id, &mut meta, commit)
            } else {
                continue;
            };
            match result {
                Ok(()) => ended += 1,
                Err(e) => warn!(transactional_id = %id, error = %e, "could not end a transaction"),
            }
        }
        ended
    }

    /// Partitions of `group_id` with offsets pending in a transaction.
    pub fn pending_offsets(&self, group_id: &str) -> HashSet<(String, i32)> {
        let mut out = HashSet::new();
        for (_, entry) in self.entries() {
            let meta = entry.lock();
            for (topic, parts) in meta.pending.get(group_id).into_iter().flatten() {
                out.extend(parts.keys().map(|p| (topic.clone(), *p)));
            }
        }
        out
    }
}

/// Write an ABORT marker for a transaction found open in `log` at start.
fn abort_unowned(log: &PartitionLog, (topic, partition): &(String, i32), txn: &OngoingTxn) {
    warn!(
        topic,
        partition,
        producer_id = txn.producer_id,
        first_offset = txn.first_offset,
        "aborting a transaction no coordinator state owns"
    );
    let marker = log.append_marker(
        txn.producer_id,
        txn.producer_epoch,
        ControlType::Abort,
        COORDINATOR_EPOCH,
        LEADER_EPOCH,
    );
    match marker {
        Ok(info) => log.set_high_watermark(info.log_end_offset),
        Err(e) => warn!(topic, partition, error = %e, "could not abort the transaction"),
    }
}

fn flatten(offsets: &GroupOffsets) -> Vec<(String, i32, Committed)> {
    offsets
        .iter()
        .flat_map(|(t, parts)| parts.iter().map(move |(p, c)| (t.clone(), *p, c.clone())))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicI64, Ordering};

    use basin_log::{LogStore, ReadLimit};
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    use super::*;

    struct Ids(AtomicI64);

    impl ProducerIds for Ids {
        fn next_producer_id(&self) -> std::io::Result<i64> {
            Ok(self.0.fetch_add(1, Ordering::SeqCst))
        }
    }

    /// A node's stores and coordinators on `dir`, as after a (re)start.
    struct Node {
        store: Arc<LogStore>,
        groups: GroupCoordinator,
        txns: TxnCoordinator,
        ids: Ids,
    }

    impl Node {
        fn open(dir: &std::path::Path) -> Node {
            let store = Arc::new(LogStore::open(dir, BTreeMap::new()).unwrap());
            for t in store.topics() {
                for p in &t.partitions {
                    p.set_high_watermark(p.log_end_offset());
                }
            }
            let groups = GroupCoordinator::open(store.clone()).unwrap();
            let txns = TxnCoordinator::open(store.clone()).unwrap();
            let node = Node {
                store,
                groups,
                txns,
                ids: Ids(AtomicI64::new(1000)),
            };
            node.txns.recover(&node.ctx());
            node
        }

        fn ctx(&self) -> TxnContext<'_> {
            TxnContext {
                groups: &self.groups,
                ids: &self.ids,
            }
        }

        fn log(&self) -> Arc<PartitionLog> {
            self.store.topic("t").unwrap().partitions[0].clone()
        }

        fn init(&self, id: &str) -> (i64, i16) {
            let req = InitTxn {
                transactional_id: id.into(),
                timeout_ms: 60_000,
                current: None,
            };
            self.txns.init_producer_id(&self.ctx(), &req).unwrap()
        }
    }

    fn txn_batch(pid: i64, epoch: i16, seq: i32) -> Vec<u8> {
        let record = Record {
            transactional: true,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: pid,
            producer_epoch: epoch,
            timestamp_type: TimestampType::Creation,
            offset: 0,
            sequence: seq,
            timestamp: 1,
            key: None,
            value: Some(Bytes::from_static(b"v")),
            headers: Default::default(),
        };
        let mut buf = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        };
        RecordBatchEncoder::encode(&mut buf, [&record], &options).unwrap();
        buf.to_vec()
    }

    fn started(dir: &std::path::Path) -> Node {
        let node = Node::open(dir);
        node.store
            .create_topic("t", 1, BTreeMap::new(), false)
            .unwrap();
        node
    }

    fn produce(node: &Node, id: &str, pid: i64, epoch: i16, seq: i32) {
        let log = node.log();
        let part = ("t".to_string(), 0);
        node.txns
            .produce(id, pid, epoch, &part, || {
                log.append(&txn_batch(pid, epoch, seq), 0).unwrap()
            })
            .unwrap();
        log.set_high_watermark(log.log_end_offset());
    }

    #[test]
    fn producer_ids_and_epochs_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let node = started(dir.path());
        let (pid, epoch) = node.init("x");
        assert_eq!(epoch, 0);
        assert_eq!(node.init("x"), (pid, 1));
        assert_ne!(node.init("other").0, pid);
        drop(node);
        let node = Node::open(dir.path());
        assert_eq!(node.init("x"), (pid, 2));
    }

    #[test]
    fn a_transaction_prepared_before_a_crash_is_finished_on_start() {
        let dir = tempfile::tempdir().unwrap();
        let node = started(dir.path());
        let (pid, epoch) = node.init("x");
        let part = [("t".to_string(), 0)];
        node.txns.add_partitions("x", pid, epoch, &part).unwrap();
        produce(&node, "x", pid, epoch, 0);
        let offset = Committed {
            offset: 5,
            leader_epoch: -1,
            metadata: String::new(),
        };
        node.txns
            .txn_offset_commit("x", pid, epoch, "g", vec![("in".into(), 0, offset.clone())])
            .unwrap();
        assert_eq!(node.log().last_stable_offset(), 0);
        // Crash right after the PrepareCommit record: no marker, no offsets.
        let entry = node.txns.entry("x").unwrap();
        let mut meta = entry.lock().clone();
        meta.state = TxnState::PrepareCommit;
        node.txns.persist("x", &meta).unwrap();
        drop(entry);
        drop(node);

        let node = Node::open(dir.path());
        let log = node.log();
        assert_eq!(log.last_stable_offset(), 2, "the COMMIT marker was written");
        assert!(log.ongoing_transactions().is_empty());
        let read = log.read(0, 1 << 20, ReadLimit::LastStable).unwrap();
        assert!(read.aborted.is_empty());
        let committed = node.groups.committed("g", None);
        assert_eq!(committed, vec![("in".to_string(), 0, Some(offset))]);
        let state = node.txns.entry("x").unwrap().lock().state;
        assert_eq!(state, TxnState::CompleteCommit);
    }

    #[test]
    fn open_transactions_no_coordinator_owns_are_aborted_on_start() {
        let dir = tempfile::tempdir().unwrap();
        let node = started(dir.path());
        let log = node.log();
        log.append(&txn_batch(77, 3, 0), 0).unwrap();
        drop(log);
        drop(node);
        let node = Node::open(dir.path());
        let log = node.log();
        assert!(log.ongoing_transactions().is_empty());
        let read = log.read(0, 1 << 20, ReadLimit::LastStable).unwrap();
        assert_eq!(read.aborted.len(), 1);
        assert_eq!(
            (read.aborted[0].producer_id, read.aborted[0].first_offset),
            (77, 0)
        );
    }

    #[test]
    fn an_expired_transaction_is_aborted_and_its_producer_fenced() {
        let dir = tempfile::tempdir().unwrap();
        let node = started(dir.path());
        let (pid, epoch) = node.init("x");
        let part = [("t".to_string(), 0)];
        node.txns.add_partitions("x", pid, epoch, &part).unwrap();
        produce(&node, "x", pid, epoch, 0);
        let now = crate::server::now_millis();
        assert_eq!(node.txns.expire(&node.ctx(), now), 0, "not yet");
        assert_eq!(node.txns.expire(&node.ctx(), now + 60_001), 1);
        assert_eq!(node.log().last_stable_offset(), 2);
        let end = node.txns.end_txn(&node.ctx(), "x", pid, epoch, true);
        assert_eq!(end, Err(TxnError::Fenced));
        // The next instance gets a newer epoch still.
        assert_eq!(node.init("x"), (pid, epoch + 2));
    }
}
