//! Produce and InitProducerId: validate and append record batches, with
//! idempotent de-duplication done by the log and transactional batches
//! checked against the transaction coordinator.

use basin_log::batch::{self, BatchHeader};
use basin_log::AppendInfo;
use kafka_protocol::messages::*;
use tracing::warn;

use super::{str_bytes, txn};
use crate::errors;
use crate::state::BrokerState;

/// The single-node leader epoch (bumped by the cluster layer later).
pub const LEADER_EPOCH: i32 = 0;

/// Append every partition's records; the high watermark moves to the log
/// end right after the write (one replica), and waiting fetches wake up.
/// Transactional batches are accepted only for partitions of their
/// producer's ongoing transaction, at its current epoch.
pub async fn produce(state: &BrokerState, req: ProduceRequest) -> ProduceResponse {
    let transactional_id = req.transactional_id.as_ref().map(|t| t.0.to_string());
    let mut responses = Vec::with_capacity(req.topic_data.len());
    for topic in req.topic_data {
        let name = topic.name.0.as_str().to_string();
        let partitions = topic
            .partition_data
            .into_iter()
            .map(|p| produce_partition(state, &name, transactional_id.as_deref(), p))
            .collect();
        responses.push(
            produce_response::TopicProduceResponse::default()
                .with_name(topic.name)
                .with_partition_responses(partitions),
        );
    }
    state.notify_appended();
    ProduceResponse::default().with_responses(responses)
}

/// Why a produce to one partition failed: a Kafka error code and a message.
type Refusal = (i16, String);

fn produce_partition(
    state: &BrokerState,
    topic: &str,
    transactional_id: Option<&str>,
    p: produce_request::PartitionProduceData,
) -> produce_response::PartitionProduceResponse {
    let response = produce_response::PartitionProduceResponse::default()
        .with_index(p.index)
        .with_log_append_time_ms(-1);
    let Some(log) = state
        .store
        .topic(topic)
        .and_then(|t| t.partition(p.index).cloned())
    else {
        return response.with_error_code(errors::UNKNOWN_TOPIC_OR_PARTITION);
    };
    let Some(records) = p.records else {
        return response.with_error_code(errors::CORRUPT_MESSAGE);
    };
    let identity = transactional_identity(&records);
    // A write to the page cache (and an fsync under `every-batch`): short
    // enough to run on the request task. The log writes the records straight
    // from the request frame, without a copy.
    let append = || {
        log.append(&records, LEADER_EPOCH)
            .map_err(|e| (errors::from_log(&e), e.to_string()))
    };
    let outcome = match identity {
        Ok(None) => append(),
        Ok(Some((pid, epoch))) => {
            let partition = (topic.to_string(), p.index);
            append_in_txn(state, transactional_id, pid, epoch, &partition, append)
        }
        Err(reason) => Err((errors::INVALID_RECORD, reason)),
    };
    match outcome {
        Ok(info) => {
            log.set_high_watermark(info.log_end_offset);
            response
                .with_base_offset(info.base_offset)
                .with_log_start_offset(log.log_start_offset())
        }
        Err((code, message)) => {
            warn!(topic, partition = p.index, code, %message, "produce rejected");
            response
                .with_error_code(code)
                .with_error_message(Some(str_bytes(message)))
                .with_base_offset(-1)
        }
    }
}

/// Producer id and epoch of a request's transactional batches, `None` for
/// plain ones; transactional and plain batches, or several producers, may
/// not be mixed in one partition's records.
fn transactional_identity(records: &[u8]) -> Result<Option<(i64, i16)>, String> {
    let headers: Vec<BatchHeader> = batch::headers(records).map(|(_, h)| h).collect();
    let Some(first) = headers.iter().find(|h| h.is_transactional()) else {
        return Ok(None);
    };
    let same = |h: &BatchHeader| {
        h.is_transactional()
            && h.producer_id == first.producer_id
            && h.producer_epoch == first.producer_epoch
    };
    if headers.iter().all(same) {
        Ok(Some((first.producer_id, first.producer_epoch)))
    } else {
        Err("transactional batches mixed with other batches".into())
    }
}

fn append_in_txn(
    state: &BrokerState,
    transactional_id: Option<&str>,
    producer_id: i64,
    epoch: i16,
    partition: &(String, i32),
    append: impl FnOnce() -> Result<AppendInfo, Refusal>,
) -> Result<AppendInfo, Refusal> {
    let Some(id) = transactional_id else {
        return Err((
            errors::INVALID_REQUEST,
            "transactional batches need a transactional id".into(),
        ));
    };
    state
        .txns
        .produce(id, producer_id, epoch, partition, append)
        .map_err(|e| (txn::code(&e, errors::INVALID_PRODUCER_EPOCH), e.to_string()))?
}

/// InitProducerId for idempotent producers: a fresh id, or the same id with
/// a bumped epoch when the client asks to bump its own. With a (non-empty)
/// transactional id the transaction coordinator answers.
pub fn init_producer_id(
    state: &BrokerState,
    req: InitProducerIdRequest,
    version: i16,
) -> InitProducerIdResponse {
    let response = InitProducerIdResponse::default();
    if let Some(id) = req.transactional_id.as_ref().filter(|t| !t.0.is_empty()) {
        let id = id.0.to_string();
        return txn::init_producer_id(state, &req, id, version);
    }
    if req.producer_id.0 >= 0 && req.producer_epoch >= 0 && req.producer_epoch < i16::MAX - 1 {
        return response
            .with_producer_id(req.producer_id)
            .with_producer_epoch(req.producer_epoch + 1);
    }
    match state.next_producer_id() {
        Ok(id) => response
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(e) => {
            warn!(error = %e, "cannot persist producer id block");
            response
                .with_error_code(errors::UNKNOWN_SERVER_ERROR)
                .with_producer_id(ProducerId(-1))
        }
    }
}
