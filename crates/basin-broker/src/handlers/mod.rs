//! Request handlers: one function per Kafka API, grouped by area. `handle`
//! dispatches a decoded frame and encodes the response at the request's
//! version.

pub mod fetch;
pub mod group;
pub mod meta;
pub mod produce;
pub mod txn;

use bytes::Bytes;
use kafka_protocol::messages::TopicName;
use kafka_protocol::protocol::{Encodable, StrBytes};

use crate::codec::{encode_response, Frame, Request};
use crate::state::BrokerState;

/// Handle one request; `None` means no response is sent (produce, acks=0).
pub async fn handle(state: &BrokerState, frame: Frame) -> Result<Option<Bytes>, String> {
    let (api, v) = (frame.api, frame.version);
    let cid = frame.header.correlation_id;
    fn enc<T: Encodable>(
        api: kafka_protocol::messages::ApiKey,
        v: i16,
        cid: i32,
        r: &T,
    ) -> Result<Option<Bytes>, String> {
        encode_response(api, v, cid, r)
            .map(Some)
            .map_err(|e| e.to_string())
    }
    match frame.request {
        Request::ApiVersions(_) => enc(api, v, cid, &meta::api_versions_response(0)),
        Request::Metadata(r) => enc(api, v, cid, &meta::metadata(state, r, v)),
        Request::CreateTopics(r) => enc(api, v, cid, &meta::create_topics(state, r, v)),
        Request::DeleteTopics(r) => enc(api, v, cid, &meta::delete_topics(state, r)),
        Request::CreatePartitions(r) => enc(api, v, cid, &meta::create_partitions(state, r)),
        Request::DescribeConfigs(r) => enc(api, v, cid, &meta::describe_configs(state, r, v)),
        Request::Produce(r) => {
            let acks = r.acks;
            let response = produce::produce(state, r).await;
            if acks == 0 {
                return Ok(None);
            }
            enc(api, v, cid, &response)
        }
        Request::InitProducerId(r) => enc(api, v, cid, &produce::init_producer_id(state, r, v)),
        Request::AddPartitionsToTxn(r) => {
            enc(api, v, cid, &txn::add_partitions_to_txn(state, r, v))
        }
        Request::AddOffsetsToTxn(r) => enc(api, v, cid, &txn::add_offsets_to_txn(state, r, v)),
        Request::EndTxn(r) => enc(api, v, cid, &txn::end_txn(state, r, v)),
        Request::TxnOffsetCommit(r) => enc(api, v, cid, &txn::txn_offset_commit(state, r, v)),
        Request::Fetch(r) => enc(api, v, cid, &fetch::fetch(state, r).await),
        Request::ListOffsets(r) => enc(api, v, cid, &fetch::list_offsets(state, r, v)),
        Request::OffsetForLeaderEpoch(r) => {
            enc(api, v, cid, &fetch::offset_for_leader_epoch(state, r))
        }
        Request::FindCoordinator(r) => enc(api, v, cid, &group::find_coordinator(state, r, v)),
        Request::JoinGroup(r) => enc(
            api,
            v,
            cid,
            &group::join_group(state, r, &frame.header, v).await,
        ),
        Request::SyncGroup(r) => enc(api, v, cid, &group::sync_group(state, r).await),
        Request::Heartbeat(r) => enc(api, v, cid, &group::heartbeat(state, r)),
        Request::LeaveGroup(r) => enc(api, v, cid, &group::leave_group(state, r)),
        Request::OffsetCommit(r) => enc(api, v, cid, &group::offset_commit(state, r)),
        Request::OffsetFetch(r) => enc(api, v, cid, &group::offset_fetch(state, r, v)),
        Request::DescribeGroups(r) => enc(api, v, cid, &group::describe_groups(state, r)),
        Request::ListGroups(r) => enc(api, v, cid, &group::list_groups(state, r)),
    }
}

pub(crate) fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

pub(crate) fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}
