//! Reading: Fetch (long-polling with min bytes / max wait, whole batches as
//! stored), ListOffsets and OffsetForLeaderEpoch. `read_committed` readers
//! (isolation level 1) see only what lies below the last stable offset, and
//! Fetch names the aborted transactions of what it returns so that clients
//! drop their records; control batches are served as stored (clients skip
//! them).

use std::time::{Duration, Instant};

use basin_log::{AbortedTxn, LogError, ReadLimit};
use bytes::Bytes;
use kafka_protocol::messages::*;

use crate::errors;
use crate::state::BrokerState;

/// Fetch: answer once `min_bytes` are available or `max_wait_ms` passed.
pub async fn fetch(state: &BrokerState, req: FetchRequest) -> FetchResponse {
    let deadline = Instant::now() + Duration::from_millis(req.max_wait_ms.max(0) as u64);
    let mut appended = state.subscribe_appends();
    loop {
        appended.borrow_and_update();
        let (response, bytes, failed) = read_all(state, &req);
        let now = Instant::now();
        if bytes >= req.min_bytes.max(0) as usize || failed || now >= deadline {
            return response;
        }
        let _ = tokio::time::timeout(deadline - now, appended.changed()).await;
    }
}

/// One pass over the requested partitions: the response, the bytes it
/// carries, and whether any partition answered with an error.
fn read_all(state: &BrokerState, req: &FetchRequest) -> (FetchResponse, usize, bool) {
    let mut budget = if req.max_bytes > 0 {
        req.max_bytes as usize
    } else {
        usize::MAX
    };
    let mut total = 0;
    let mut failed = false;
    let committed = req.isolation_level == READ_COMMITTED;
    let mut topics = Vec::with_capacity(req.topics.len());
    for topic in &req.topics {
        let log = state.store.topic(topic.topic.0.as_str());
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in &topic.partitions {
            let max = (p.partition_max_bytes.max(0) as usize).min(budget);
            let data = read_partition(log.as_deref(), p, max, committed);
            let n = data.records.as_ref().map_or(0, |r| r.len());
            failed |= data.error_code != errors::NONE;
            total += n;
            budget = budget.saturating_sub(n);
            partitions.push(data);
        }
        topics.push(
            fetch_response::FetchableTopicResponse::default()
                .with_topic(topic.topic.clone())
                .with_partitions(partitions),
        );
    }
    (
        FetchResponse::default().with_responses(topics),
        total,
        failed,
    )
}

/// Kafka's isolation level of `read_committed` consumers.
const READ_COMMITTED: i8 = 1;

fn aborted_list(aborted: Vec<AbortedTxn>) -> Vec<fetch_response::AbortedTransaction> {
    aborted
        .into_iter()
        .map(|a| {
            fetch_response::AbortedTransaction::default()
                .with_producer_id(ProducerId(a.producer_id))
                .with_first_offset(a.first_offset)
        })
        .collect()
}

fn read_partition(
    topic: Option<&basin_log::Topic>,
    p: &fetch_request::FetchPartition,
    max: usize,
    committed: bool,
) -> fetch_response::PartitionData {
    let data = fetch_response::PartitionData::default()
        .with_partition_index(p.partition)
        .with_high_watermark(-1)
        .with_last_stable_offset(-1)
        .with_log_start_offset(-1);
    let Some(log) = topic.and_then(|t| t.partition(p.partition)) else {
        return data.with_error_code(errors::UNKNOWN_TOPIC_OR_PARTITION);
    };
    if max == 0 {
        return data
            .with_high_watermark(log.high_watermark())
            .with_last_stable_offset(log.last_stable_offset())
            .with_log_start_offset(log.log_start_offset())
            .with_aborted_transactions(committed.then(Vec::new))
            .with_records(Some(Bytes::new()));
    }
    let limit = if committed {
        ReadLimit::LastStable
    } else {
        ReadLimit::HighWatermark
    };
    match log.read(p.fetch_offset, max, limit) {
        Ok(read) => data
            .with_high_watermark(read.high_watermark)
            .with_last_stable_offset(read.last_stable_offset)
            .with_log_start_offset(read.log_start_offset)
            .with_aborted_transactions(committed.then(|| aborted_list(read.aborted)))
            .with_records(Some(Bytes::from(read.records))),
        Err(LogError::OffsetOutOfRange { .. }) => data
            .with_error_code(errors::OFFSET_OUT_OF_RANGE)
            .with_high_watermark(log.high_watermark())
            .with_log_start_offset(log.log_start_offset())
            .with_records(Some(Bytes::new())),
        Err(e) => data.with_error_code(errors::from_log(&e)),
    }
}

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;

/// ListOffsets: earliest, latest (the high watermark, or the last stable
/// offset for `read_committed`), by timestamp, or the record with the
/// largest timestamp (nothing at or past the last stable offset for
/// `read_committed`).
pub fn list_offsets(
    state: &BrokerState,
    req: ListOffsetsRequest,
    version: i16,
) -> ListOffsetsResponse {
    let committed = version >= 2 && req.isolation_level == READ_COMMITTED;
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let topic = state.store.topic(t.name.0.as_str());
            let partitions = t
                .partitions
                .iter()
                .map(|p| list_partition(topic.as_deref(), p, version, committed))
                .collect();
            list_offsets_response::ListOffsetsTopicResponse::default()
                .with_name(t.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

fn list_partition(
    topic: Option<&basin_log::Topic>,
    p: &list_offsets_request::ListOffsetsPartition,
    version: i16,
    committed: bool,
) -> list_offsets_response::ListOffsetsPartitionResponse {
    let response = list_offsets_response::ListOffsetsPartitionResponse::default()
        .with_partition_index(p.partition_index)
        .with_timestamp(-1)
        .with_offset(-1);
    let Some(log) = topic.and_then(|t| t.partition(p.partition_index)) else {
        return response.with_error_code(errors::UNKNOWN_TOPIC_OR_PARTITION);
    };
    // The leader epoch is only on the wire from v4.
    let epoch = if version >= 4 {
        log.latest_epoch().max(0)
    } else {
        -1
    };
    let (latest, bound) = if committed {
        (log.last_stable_offset(), log.last_stable_offset())
    } else {
        (log.high_watermark(), i64::MAX)
    };
    let found = match p.timestamp {
        EARLIEST => Ok(Some((log.log_start_offset(), -1))),
        LATEST => Ok(Some((latest, -1))),
        MAX_TIMESTAMP => {
            let ts = log.max_timestamp();
            log.offset_for_timestamp(ts)
                .map(|hit| hit.or(Some((-1, -1))))
        }
        ts => log
            .offset_for_timestamp(ts)
            .map(|hit| hit.filter(|&(offset, _)| offset < bound)),
    };
    match found {
        Ok(Some((offset, ts))) => response
            .with_offset(offset)
            .with_timestamp(ts)
            .with_leader_epoch(epoch),
        Ok(None) => response.with_leader_epoch(epoch),
        Err(e) => response.with_error_code(errors::from_log(&e)),
    }
}

/// OffsetForLeaderEpoch: where each requested epoch ended in this log.
pub fn offset_for_leader_epoch(
    state: &BrokerState,
    req: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let topic = state.store.topic(t.topic.0.as_str());
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let r = offset_for_leader_epoch_response::EpochEndOffset::default()
                        .with_partition(p.partition);
                    match topic.as_ref().and_then(|t| t.partition(p.partition)) {
                        None => r
                            .with_error_code(errors::UNKNOWN_TOPIC_OR_PARTITION)
                            .with_leader_epoch(-1)
                            .with_end_offset(-1),
                        Some(log) => {
                            let (epoch, end) = log.end_offset_for_epoch(p.leader_epoch);
                            r.with_leader_epoch(epoch).with_end_offset(end)
                        }
                    }
                })
                .collect();
            offset_for_leader_epoch_response::OffsetForLeaderTopicResult::default()
                .with_topic(t.topic.clone())
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
