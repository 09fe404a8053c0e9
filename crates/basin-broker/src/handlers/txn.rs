//! Transaction APIs mapped onto the `transactions` coordinator:
//! InitProducerId with a transactional id, AddPartitionsToTxn (v0-3, the
//! client versions), AddOffsetsToTxn, TxnOffsetCommit and EndTxn.
//!
//! Fencing is answered as Kafka does for the request's version: the
//! PRODUCER_FENCED code from the version that introduced it (InitProducerId
//! v4, AddPartitionsToTxn / AddOffsetsToTxn / EndTxn v2), INVALID_PRODUCER_EPOCH
//! before; TxnOffsetCommit and Produce always say INVALID_PRODUCER_EPOCH.

use kafka_protocol::messages::*;
use tracing::{debug, warn};

use crate::errors;
use crate::groups::Committed;
use crate::state::BrokerState;
use crate::transactions::{InitTxn, TxnError};

/// The Kafka error code for a coordinator error; `fenced` is the code this
/// API version uses for a stale epoch.
pub fn code(e: &TxnError, fenced: i16) -> i16 {
    match e {
        TxnError::ProducerIdMapping => errors::INVALID_PRODUCER_ID_MAPPING,
        TxnError::Fenced => fenced,
        TxnError::InvalidState => errors::INVALID_TXN_STATE,
        TxnError::Concurrent => errors::CONCURRENT_TRANSACTIONS,
        TxnError::InvalidTimeout => errors::INVALID_TRANSACTION_TIMEOUT,
        TxnError::Storage(_) => errors::UNKNOWN_SERVER_ERROR,
    }
}

/// PRODUCER_FENCED from `since` on, INVALID_PRODUCER_EPOCH before.
fn fenced_code(version: i16, since: i16) -> i16 {
    if version >= since {
        errors::PRODUCER_FENCED
    } else {
        errors::INVALID_PRODUCER_EPOCH
    }
}

fn result_code<T>(result: &Result<T, TxnError>, fenced: i16, what: &str) -> i16 {
    match result {
        Ok(_) => errors::NONE,
        Err(e) => {
            if matches!(e, TxnError::Storage(_)) {
                warn!(error = %e, "{what} failed");
            }
            code(e, fenced)
        }
    }
}

/// InitProducerId with a transactional id.
pub fn init_producer_id(
    state: &BrokerState,
    req: &InitProducerIdRequest,
    transactional_id: String,
    version: i16,
) -> InitProducerIdResponse {
    let init = InitTxn {
        transactional_id,
        timeout_ms: req.transaction_timeout_ms,
        current: (version >= 3).then_some((req.producer_id.0, req.producer_epoch)),
    };
    let result = state.txns.init_producer_id(&state.txn_context(), &init);
    state.notify_appended();
    let code = result_code(&result, fenced_code(version, 4), "InitProducerId");
    let (pid, epoch) = result.unwrap_or((-1, -1));
    if code == errors::NONE {
        debug!(transactional_id = %init.transactional_id, producer_id = pid, epoch, "InitProducerId");
    }
    InitProducerIdResponse::default()
        .with_error_code(code)
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
}

/// AddPartitionsToTxn: every partition must exist; if one does not, none
/// is added (the others answer OPERATION_NOT_ATTEMPTED).
pub fn add_partitions_to_txn(
    state: &BrokerState,
    req: AddPartitionsToTxnRequest,
    version: i16,
) -> AddPartitionsToTxnResponse {
    let wanted: Vec<(String, i32)> = req
        .v3_and_below_topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (t.name.0.to_string(), *p)))
        .collect();
    let exists = |(t, p): &(String, i32)| {
        state
            .store
            .topic(t)
            .is_some_and(|topic| topic.partition(*p).is_some())
    };
    let shared = if wanted.iter().all(exists) {
        let result = state.txns.add_partitions(
            req.v3_and_below_transactional_id.0.as_str(),
            req.v3_and_below_producer_id.0,
            req.v3_and_below_producer_epoch,
            &wanted,
        );
        result_code(&result, fenced_code(version, 2), "AddPartitionsToTxn")
    } else {
        errors::OPERATION_NOT_ATTEMPTED
    };
    let code_of = |key: &(String, i32)| {
        if exists(key) {
            shared
        } else {
            errors::UNKNOWN_TOPIC_OR_PARTITION
        }
    };
    AddPartitionsToTxnResponse::default()
        .with_results_by_topic_v3_and_below(partition_results(&req.v3_and_below_topics, code_of))
}

fn partition_results(
    topics: &[add_partitions_to_txn_request::AddPartitionsToTxnTopic],
    code_of: impl Fn(&(String, i32)) -> i16,
) -> Vec<add_partitions_to_txn_response::AddPartitionsToTxnTopicResult> {
    topics
        .iter()
        .map(|t| {
            let results = t
                .partitions
                .iter()
                .map(|&p| {
                    add_partitions_to_txn_response::AddPartitionsToTxnPartitionResult::default()
                        .with_partition_index(p)
                        .with_partition_error_code(code_of(&(t.name.0.to_string(), p)))
                })
                .collect();
            add_partitions_to_txn_response::AddPartitionsToTxnTopicResult::default()
                .with_name(t.name.clone())
                .with_results_by_partition(results)
        })
        .collect()
}

/// AddOffsetsToTxn: the group's offsets join the transaction.
pub fn add_offsets_to_txn(
    state: &BrokerState,
    req: AddOffsetsToTxnRequest,
    version: i16,
) -> AddOffsetsToTxnResponse {
    let group = req.group_id.0.as_str();
    let code = if group.is_empty() {
        errors::INVALID_GROUP_ID
    } else {
        let result = state.txns.add_offsets(
            req.transactional_id.0.as_str(),
            req.producer_id.0,
            req.producer_epoch,
            group,
        );
        result_code(&result, fenced_code(version, 2), "AddOffsetsToTxn")
    };
    AddOffsetsToTxnResponse::default().with_error_code(code)
}

/// TxnOffsetCommit: offsets pending until the transaction commits. From v3
/// the member and generation are checked as OffsetCommit checks them.
pub fn txn_offset_commit(
    state: &BrokerState,
    req: TxnOffsetCommitRequest,
    version: i16,
) -> TxnOffsetCommitResponse {
    let group = req.group_id.0.as_str();
    let member_check = if version >= 3 {
        state
            .groups
            .check_commit(group, req.generation_id, req.member_id.as_str())
    } else if group.is_empty() {
        errors::INVALID_GROUP_ID
    } else {
        errors::NONE
    };
    let code = if member_check != errors::NONE {
        member_check
    } else {
        let result = state.txns.txn_offset_commit(
            req.transactional_id.0.as_str(),
            req.producer_id.0,
            req.producer_epoch,
            group,
            offsets_of(&req.topics),
        );
        result_code(&result, errors::INVALID_PRODUCER_EPOCH, "TxnOffsetCommit")
    };
    TxnOffsetCommitResponse::default().with_topics(commit_results(&req.topics, code))
}

fn offsets_of(
    topics: &[txn_offset_commit_request::TxnOffsetCommitRequestTopic],
) -> Vec<(String, i32, Committed)> {
    topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| {
                let c = Committed {
                    offset: p.committed_offset,
                    leader_epoch: p.committed_leader_epoch,
                    metadata: p
                        .committed_metadata
                        .as_ref()
                        .map(|m| m.to_string())
                        .unwrap_or_default(),
                };
                (t.name.0.to_string(), p.partition_index, c)
            })
        })
        .collect()
}

fn commit_results(
    topics: &[txn_offset_commit_request::TxnOffsetCommitRequestTopic],
    code: i16,
) -> Vec<txn_offset_commit_response::TxnOffsetCommitResponseTopic> {
    topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    txn_offset_commit_response::TxnOffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                })
                .collect();
            txn_offset_commit_response::TxnOffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(partitions)
        })
        .collect()
}

/// EndTxn: commit or abort; markers are written before the answer.
pub fn end_txn(state: &BrokerState, req: EndTxnRequest, version: i16) -> EndTxnResponse {
    let result = state.txns.end_txn(
        &state.txn_context(),
        req.transactional_id.0.as_str(),
        req.producer_id.0,
        req.producer_epoch,
        req.committed,
    );
    state.notify_appended();
    EndTxnResponse::default().with_error_code(result_code(
        &result,
        fenced_code(version, 2),
        "EndTxn",
    ))
}
