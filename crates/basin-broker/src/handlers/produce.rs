//! Produce and InitProducerId: validate and append record batches, with
//! idempotent de-duplication done by the log.

use kafka_protocol::messages::*;
use tracing::warn;

use super::str_bytes;
use crate::errors;
use crate::state::BrokerState;

/// The single-node leader epoch (bumped by the cluster layer later).
pub const LEADER_EPOCH: i32 = 0;

/// Append every partition's records; the high watermark moves to the log
/// end right after the write (one replica), and waiting fetches wake up.
pub async fn produce(state: &BrokerState, req: ProduceRequest) -> ProduceResponse {
    if req.transactional_id.is_some() {
        return reject_all(
            req,
            errors::INVALID_REQUEST,
            "transactions are not supported",
        );
    }
    let mut responses = Vec::with_capacity(req.topic_data.len());
    for topic in req.topic_data {
        let name = topic.name.0.as_str().to_string();
        let partitions = topic
            .partition_data
            .into_iter()
            .map(|p| produce_partition(state, &name, p))
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

fn produce_partition(
    state: &BrokerState,
    topic: &str,
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
    let mut records = records.to_vec();
    // A write to the page cache (and an fsync under `every-batch`): short
    // enough to run on the request task.
    let outcome = log.append(&mut records, LEADER_EPOCH);
    match outcome {
        Ok(info) => {
            log.set_high_watermark(info.log_end_offset);
            response
                .with_base_offset(info.base_offset)
                .with_log_start_offset(log.log_start_offset())
        }
        Err(e) => {
            warn!(topic, partition = p.index, error = %e, "produce rejected");
            response
                .with_error_code(errors::from_log(&e))
                .with_error_message(Some(str_bytes(e.to_string())))
                .with_base_offset(-1)
        }
    }
}

fn reject_all(req: ProduceRequest, code: i16, message: &str) -> ProduceResponse {
    let responses = req
        .topic_data
        .into_iter()
        .map(|t| {
            let partitions = t
                .partition_data
                .iter()
                .map(|p| {
                    produce_response::PartitionProduceResponse::default()
                        .with_index(p.index)
                        .with_error_code(code)
                        .with_error_message(Some(str_bytes(message)))
                })
                .collect();
            produce_response::TopicProduceResponse::default()
                .with_name(t.name)
                .with_partition_responses(partitions)
        })
        .collect();
    ProduceResponse::default().with_responses(responses)
}

/// InitProducerId for idempotent producers: a fresh id, or the same id with
/// a bumped epoch when the client asks to bump its own.
pub fn init_producer_id(state: &BrokerState, req: InitProducerIdRequest) -> InitProducerIdResponse {
    let response = InitProducerIdResponse::default();
    if req.transactional_id.is_some() {
        return response
            .with_error_code(errors::INVALID_REQUEST)
            .with_producer_id(ProducerId(-1));
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
