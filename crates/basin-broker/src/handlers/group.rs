//! Consumer-group APIs mapped onto the `groups` coordinator:
//! FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
//! OffsetCommit, OffsetFetch, DescribeGroups, ListGroups.

use std::time::Duration;

use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::str_bytes;
use crate::errors;
use crate::groups::{Committed, JoinParams, JoinResult, Pending, SyncResult};
use crate::state::BrokerState;

/// Every group (key type 0) and transaction (key type 1) is coordinated by
/// this node.
pub fn find_coordinator(
    state: &BrokerState,
    req: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let (host, port) = (str_bytes(state.advertised.0.clone()), state.advertised.1);
    let node = BrokerId(state.config.node_id);
    if !matches!(req.key_type, 0 | 1) {
        return invalid_key_type(req, version);
    }
    if version >= 4 {
        let coordinators = req
            .coordinator_keys
            .into_iter()
            .map(|key| {
                find_coordinator_response::Coordinator::default()
                    .with_key(key)
                    .with_node_id(node)
                    .with_host(host.clone())
                    .with_port(port)
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    FindCoordinatorResponse::default()
        .with_node_id(node)
        .with_host(host)
        .with_port(port)
}

fn invalid_key_type(req: FindCoordinatorRequest, version: i16) -> FindCoordinatorResponse {
    let message = Some(str_bytes(format!("unknown key type {}", req.key_type)));
    if version >= 4 {
        let coordinators = req
            .coordinator_keys
            .into_iter()
            .map(|key| {
                find_coordinator_response::Coordinator::default()
                    .with_key(key)
                    .with_node_id(BrokerId(-1))
                    .with_port(-1)
                    .with_error_code(errors::INVALID_REQUEST)
                    .with_error_message(message.clone())
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    // The error message is on the wire from v1.
    FindCoordinatorResponse::default()
        .with_error_code(errors::INVALID_REQUEST)
        .with_error_message(message.filter(|_| version >= 1))
        .with_node_id(BrokerId(-1))
        .with_port(-1)
}

async fn settle<T: Default>(
    pending: Pending<T>,
    patience: Duration,
    on_timeout: impl FnOnce() -> T,
) -> T {
    match pending {
        Pending::Now(t) => t,
        Pending::Wait(rx) => match tokio::time::timeout(patience, rx).await {
            Ok(Ok(t)) => t,
            _ => on_timeout(),
        },
    }
}

/// JoinGroup: waits until the rebalance's join phase completes.
pub async fn join_group(
    state: &BrokerState,
    req: JoinGroupRequest,
    header: &RequestHeader,
    version: i16,
) -> JoinGroupResponse {
    let rebalance_ms = if version >= 1 {
        req.rebalance_timeout_ms
    } else {
        req.session_timeout_ms
    };
    let params = JoinParams {
        group_id: req.group_id.0.to_string(),
        member_id: req.member_id.to_string(),
        instance_id: req.group_instance_id.map(|s| s.to_string()),
        client_id: header
            .client_id
            .as_ref()
            .map(|s| s.to_string())
            .unwrap_or_default(),
        client_host: "/127.0.0.1".to_string(),
        session_timeout: Duration::from_millis(req.session_timeout_ms.max(0) as u64),
        rebalance_timeout: Duration::from_millis(rebalance_ms.max(0) as u64),
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .into_iter()
            .map(|p| (p.name.to_string(), p.metadata))
            .collect(),
    };
    let patience = params.rebalance_timeout + Duration::from_secs(5);
    let member_id = params.member_id.clone();
    let pending = state.groups.join(params);
    let result = settle(pending, patience, || JoinResult {
        error: errors::REBALANCE_IN_PROGRESS,
        member_id,
        generation: -1,
        ..Default::default()
    })
    .await;
    join_response(result)
}

fn join_response(r: JoinResult) -> JoinGroupResponse {
    let members = r
        .members
        .into_iter()
        .map(|(id, instance, metadata)| {
            join_group_response::JoinGroupResponseMember::default()
                .with_member_id(str_bytes(id))
                .with_group_instance_id(instance.map(str_bytes))
                .with_metadata(metadata)
        })
        .collect();
    let named = |s: String| (!s.is_empty()).then(|| str_bytes(s));
    JoinGroupResponse::default()
        .with_error_code(r.error)
        .with_generation_id(r.generation)
        .with_protocol_type(named(r.protocol_type))
        .with_protocol_name(Some(str_bytes(r.protocol_name)))
        .with_leader(str_bytes(r.leader))
        .with_member_id(str_bytes(r.member_id))
        .with_members(members)
}

/// SyncGroup: the leader's assignment is handed to every member.
pub async fn sync_group(state: &BrokerState, req: SyncGroupRequest) -> SyncGroupResponse {
    let assignments = req
        .assignments
        .into_iter()
        .map(|a| (a.member_id.to_string(), a.assignment))
        .collect();
    let pending = state.groups.sync(
        req.group_id.0.as_str(),
        req.generation_id,
        req.member_id.as_str(),
        assignments,
    );
    let r = settle(pending, Duration::from_secs(300), || SyncResult {
        error: errors::REBALANCE_IN_PROGRESS,
        ..Default::default()
    })
    .await;
    let named = |s: String| (!s.is_empty()).then(|| str_bytes(s));
    SyncGroupResponse::default()
        .with_error_code(r.error)
        .with_protocol_type(named(r.protocol_type))
        .with_protocol_name(named(r.protocol_name))
        .with_assignment(r.assignment)
}

pub fn heartbeat(state: &BrokerState, req: HeartbeatRequest) -> HeartbeatResponse {
    let code = state.groups.heartbeat(
        req.group_id.0.as_str(),
        req.generation_id,
        req.member_id.as_str(),
    );
    HeartbeatResponse::default().with_error_code(code)
}

pub fn leave_group(state: &BrokerState, req: LeaveGroupRequest) -> LeaveGroupResponse {
    let members: Vec<(String, Option<String>)> = if req.members.is_empty() {
        vec![(req.member_id.to_string(), None)]
    } else {
        req.members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|s| s.to_string()),
                )
            })
            .collect()
    };
    let codes = state.groups.leave(req.group_id.0.as_str(), &members);
    let top = if req.members.is_empty() {
        codes[0]
    } else {
        errors::NONE
    };
    let responses = req
        .members
        .iter()
        .zip(&codes)
        .map(|(m, code)| {
            leave_group_response::MemberResponse::default()
                .with_member_id(m.member_id.clone())
                .with_group_instance_id(m.group_instance_id.clone())
                .with_error_code(*code)
        })
        .collect();
    LeaveGroupResponse::default()
        .with_error_code(top)
        .with_members(responses)
}

pub fn offset_commit(state: &BrokerState, req: OffsetCommitRequest) -> OffsetCommitResponse {
    let offsets: Vec<(String, i32, Committed)> = req
        .topics
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
        .collect();
    let mut codes = state
        .groups
        .commit(
            req.group_id.0.as_str(),
            req.generation_id_or_member_epoch,
            req.member_id.as_str(),
            offsets,
        )
        .into_iter();
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    offset_commit_response::OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(codes.next().unwrap_or(errors::UNKNOWN_SERVER_ERROR))
                })
                .collect();
            offset_commit_response::OffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

type Wanted = Option<Vec<(String, Vec<i32>)>>;
/// Committed offsets of one topic: `(partition, offset if any, error code)`.
type TopicOffsets = (String, Vec<(i32, Option<Committed>, i16)>);

/// OffsetFetch: one group before v8, several from v8 on.
pub fn offset_fetch(
    state: &BrokerState,
    req: OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    if version < 8 {
        let wanted: Wanted = req.topics.as_ref().map(|ts| {
            ts.iter()
                .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
                .collect()
        });
        let stable = version >= 7 && req.require_stable;
        let topics = fetched(state, req.group_id.0.as_str(), wanted, stable)
            .into_iter()
            .map(|(name, parts)| {
                let partitions = parts
                    .into_iter()
                    .map(|(p, c, code)| {
                        offset_fetch_response::OffsetFetchResponsePartition::default()
                            .with_partition_index(p)
                            .with_error_code(code)
                            .with_committed_offset(c.as_ref().map_or(-1, |c| c.offset))
                            .with_committed_leader_epoch(c.as_ref().map_or(-1, |c| c.leader_epoch))
                            .with_metadata(Some(str_bytes(
                                c.map(|c| c.metadata).unwrap_or_default(),
                            )))
                    })
                    .collect();
                offset_fetch_response::OffsetFetchResponseTopic::default()
                    .with_name(super::topic_name(&name))
                    .with_partitions(partitions)
            })
            .collect();
        return OffsetFetchResponse::default().with_topics(topics);
    }
    let groups = req
        .groups
        .iter()
        .map(|g| fetched_group(state, g, req.require_stable))
        .collect();
    OffsetFetchResponse::default().with_groups(groups)
}

fn fetched_group(
    state: &BrokerState,
    g: &offset_fetch_request::OffsetFetchRequestGroup,
    stable: bool,
) -> offset_fetch_response::OffsetFetchResponseGroup {
    let wanted: Wanted = g.topics.as_ref().map(|ts| {
        ts.iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
            .collect()
    });
    let topics = fetched(state, g.group_id.0.as_str(), wanted, stable)
        .into_iter()
        .map(|(name, parts)| {
            let partitions = parts
                .into_iter()
                .map(|(p, c, code)| {
                    offset_fetch_response::OffsetFetchResponsePartitions::default()
                        .with_partition_index(p)
                        .with_error_code(code)
                        .with_committed_offset(c.as_ref().map_or(-1, |c| c.offset))
                        .with_committed_leader_epoch(c.as_ref().map_or(-1, |c| c.leader_epoch))
                        .with_metadata(Some(str_bytes(c.map(|c| c.metadata).unwrap_or_default())))
                })
                .collect();
            offset_fetch_response::OffsetFetchResponseTopics::default()
                .with_name(super::topic_name(&name))
                .with_partitions(partitions)
        })
        .collect();
    offset_fetch_response::OffsetFetchResponseGroup::default()
        .with_group_id(g.group_id.clone())
        .with_topics(topics)
}

/// Committed offsets grouped by topic, in request order (or by name).
/// With `stable` (`require_stable`, KIP-447), a partition with offsets
/// pending in an open transaction answers UNSTABLE_OFFSET_COMMIT (the
/// client retries).
fn fetched(state: &BrokerState, group: &str, wanted: Wanted, stable: bool) -> Vec<TopicOffsets> {
    let pending = if stable {
        state.txns.pending_offsets(group)
    } else {
        Default::default()
    };
    let rows = state.groups.committed(group, wanted.as_deref());
    let mut out: Vec<TopicOffsets> = Vec::new();
    for (topic, p, c) in rows {
        let code = if pending.contains(&(topic.clone(), p)) {
            errors::UNSTABLE_OFFSET_COMMIT
        } else {
            errors::NONE
        };
        match out.iter_mut().find(|(t, _)| *t == topic) {
            Some((_, parts)) => parts.push((p, c, code)),
            None => out.push((topic, vec![(p, c, code)])),
        }
    }
    out
}

pub fn describe_groups(state: &BrokerState, req: DescribeGroupsRequest) -> DescribeGroupsResponse {
    let groups = req
        .groups
        .iter()
        .map(|gid| {
            let view = state.groups.describe(gid.0.as_str());
            let members = view
                .members
                .into_iter()
                .map(|m| {
                    describe_groups_response::DescribedGroupMember::default()
                        .with_member_id(str_bytes(m.member_id))
                        .with_group_instance_id(m.instance_id.map(str_bytes))
                        .with_client_id(str_bytes(m.client_id))
                        .with_client_host(str_bytes(m.client_host))
                        .with_member_metadata(m.metadata)
                        .with_member_assignment(m.assignment)
                })
                .collect();
            let state_name = view.phase.map_or("Dead", |p| p.name());
            describe_groups_response::DescribedGroup::default()
                .with_group_id(gid.clone())
                .with_group_state(StrBytes::from_static_str(state_name))
                .with_protocol_type(str_bytes(view.protocol_type))
                .with_protocol_data(str_bytes(view.protocol))
                .with_members(members)
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}

pub fn list_groups(state: &BrokerState, req: ListGroupsRequest) -> ListGroupsResponse {
    let groups = state
        .groups
        .list()
        .into_iter()
        .filter(|(_, _, phase)| {
            req.states_filter.is_empty()
                || req.states_filter.iter().any(|s| s.as_str() == phase.name())
        })
        .map(|(id, protocol_type, phase)| {
            list_groups_response::ListedGroup::default()
                .with_group_id(GroupId(str_bytes(id)))
                .with_protocol_type(str_bytes(protocol_type))
                .with_group_state(StrBytes::from_static_str(phase.name()))
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}
