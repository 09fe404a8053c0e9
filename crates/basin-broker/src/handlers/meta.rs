//! Cluster and topic administration: ApiVersions, Metadata, CreateTopics,
//! DeleteTopics, CreatePartitions, DescribeConfigs.

use std::collections::BTreeMap;

use kafka_protocol::messages::*;
use tracing::info;

use super::{str_bytes, topic_name};
use crate::codec::SUPPORTED;
use crate::errors;
use crate::state::BrokerState;

/// The ApiVersions response listing exactly what `codec::SUPPORTED` serves.
pub fn api_versions_response(error_code: i16) -> ApiVersionsResponse {
    let api_keys = SUPPORTED
        .iter()
        .map(|&(api, lo, hi)| {
            api_versions_response::ApiVersion::default()
                .with_api_key(api as i16)
                .with_min_version(lo)
                .with_max_version(hi)
        })
        .collect();
    ApiVersionsResponse::default()
        .with_error_code(error_code)
        .with_api_keys(api_keys)
}

fn broker_entry(state: &BrokerState) -> metadata_response::MetadataResponseBroker {
    metadata_response::MetadataResponseBroker::default()
        .with_node_id(BrokerId(state.config.node_id))
        .with_host(str_bytes(state.advertised.0.clone()))
        .with_port(state.advertised.1)
}

fn topic_entry(
    state: &BrokerState,
    topic: &basin_log::Topic,
) -> metadata_response::MetadataResponseTopic {
    let node = BrokerId(state.config.node_id);
    let partitions = topic
        .partitions
        .iter()
        .enumerate()
        .map(|(i, log)| {
            metadata_response::MetadataResponsePartition::default()
                .with_partition_index(i as i32)
                .with_leader_id(node)
                .with_leader_epoch(log.latest_epoch().max(0))
                .with_replica_nodes(vec![node])
                .with_isr_nodes(vec![node])
        })
        .collect();
    metadata_response::MetadataResponseTopic::default()
        .with_name(Some(topic_name(&topic.meta.name)))
        .with_topic_id(topic.meta.id)
        .with_is_internal(topic.meta.internal)
        .with_partitions(partitions)
}

fn missing_topic(name: &TopicName, error: i16) -> metadata_response::MetadataResponseTopic {
    metadata_response::MetadataResponseTopic::default()
        .with_name(Some(name.clone()))
        .with_error_code(error)
}

/// Metadata: brokers (this node) and the requested or all topics; creates
/// requested missing topics when auto-create is on.
pub fn metadata(state: &BrokerState, req: MetadataRequest, version: i16) -> MetadataResponse {
    let topics = match req.topics {
        None => state
            .store
            .topics()
            .iter()
            .map(|t| topic_entry(state, t))
            .collect(),
        Some(wanted) => wanted
            .iter()
            .filter_map(|t| t.name.as_ref())
            .map(|name| requested_topic(state, name, req.allow_auto_topic_creation || version < 4))
            .collect(),
    };
    MetadataResponse::default()
        .with_brokers(vec![broker_entry(state)])
        .with_cluster_id(Some(str_bytes(state.cluster_id.clone())))
        .with_controller_id(BrokerId(state.config.node_id))
        .with_topics(topics)
}

fn requested_topic(
    state: &BrokerState,
    name: &TopicName,
    allow_create: bool,
) -> metadata_response::MetadataResponseTopic {
    if let Some(topic) = state.store.topic(name.0.as_str()) {
        return topic_entry(state, &topic);
    }
    if !(allow_create && state.config.auto_create_topics) {
        return missing_topic(name, errors::UNKNOWN_TOPIC_OR_PARTITION);
    }
    match state.store.create_topic(
        name.0.as_str(),
        state.config.default_partitions,
        BTreeMap::new(),
        false,
    ) {
        Ok(topic) => {
            info!(topic = %name.0.as_str(), "auto-created topic on metadata request");
            topic_entry(state, &topic)
        }
        Err(basin_log::LogError::TopicExists(_)) => state.store.topic(name.0.as_str()).map_or_else(
            || missing_topic(name, errors::UNKNOWN_TOPIC_OR_PARTITION),
            |t| topic_entry(state, &t),
        ),
        Err(e) => missing_topic(name, errors::from_log(&e)),
    }
}

fn creatable_result(
    name: &TopicName,
    error: i16,
    message: Option<String>,
) -> create_topics_response::CreatableTopicResult {
    create_topics_response::CreatableTopicResult::default()
        .with_name(name.clone())
        .with_error_code(error)
        .with_error_message(message.map(str_bytes))
}

/// CreateTopics: single-node, so replication factor must be 1 (or -1).
pub fn create_topics(
    state: &BrokerState,
    req: CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    let results = req
        .topics
        .iter()
        .map(|t| create_one(state, t, req.validate_only, version))
        .collect();
    CreateTopicsResponse::default().with_topics(results)
}

fn create_one(
    state: &BrokerState,
    t: &create_topics_request::CreatableTopic,
    validate_only: bool,
    version: i16,
) -> create_topics_response::CreatableTopicResult {
    if t.replication_factor > 1 {
        let msg = format!(
            "replication factor {} exceeds the 1 available broker",
            t.replication_factor
        );
        return creatable_result(&t.name, errors::INVALID_REPLICATION_FACTOR, Some(msg));
    }
    let partitions = if t.num_partitions < 0 {
        state.config.default_partitions
    } else {
        t.num_partitions
    };
    let configs: BTreeMap<String, String> = t
        .configs
        .iter()
        .filter_map(|c| Some((c.name.to_string(), c.value.as_ref()?.to_string())))
        .collect();
    let name = t.name.0.as_str();
    if validate_only {
        let check = basin_log::store::validate_topic_name(name).and_then(|_| {
            basin_log::LogConfig::from_entries(
                configs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            )
        });
        return match check {
            Ok(_) if state.store.topic(name).is_some() => creatable_result(
                &t.name,
                errors::TOPIC_ALREADY_EXISTS,
                Some(format!("topic {name} already exists")),
            ),
            Ok(_) => creatable_result(&t.name, errors::NONE, None),
            Err(e) => creatable_result(&t.name, errors::from_log(&e), Some(e.to_string())),
        };
    }
    match state.store.create_topic(name, partitions, configs, false) {
        Ok(topic) => {
            let mut r = creatable_result(&t.name, errors::NONE, None).with_topic_id(topic.meta.id);
            if version >= 5 {
                r = r
                    .with_num_partitions(partitions)
                    .with_replication_factor(1)
                    .with_configs(Some(Vec::new()));
            }
            r
        }
        Err(e) => creatable_result(&t.name, errors::from_log(&e), Some(e.to_string())),
    }
}

/// DeleteTopics by name (topic ids are not used by this broker's clients).
pub fn delete_topics(state: &BrokerState, req: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let names: Vec<TopicName> = req
        .topic_names
        .into_iter()
        .chain(req.topics.into_iter().filter_map(|t| t.name))
        .collect();
    let responses = names
        .into_iter()
        .map(|name| {
            let error = match state.store.delete_topic(name.0.as_str()) {
                Ok(()) => errors::NONE,
                Err(e) => errors::from_log(&e),
            };
            delete_topics_response::DeletableTopicResult::default()
                .with_name(Some(name))
                .with_error_code(error)
        })
        .collect();
    DeleteTopicsResponse::default().with_responses(responses)
}

/// CreatePartitions: grow topics.
pub fn create_partitions(
    state: &BrokerState,
    req: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let results = req
        .topics
        .iter()
        .map(|t| {
            let outcome = if req.validate_only {
                Ok(())
            } else {
                state
                    .store
                    .add_partitions(t.name.0.as_str(), t.count)
                    .map(|_| ())
            };
            let (code, msg) = match outcome {
                Ok(()) => (errors::NONE, None),
                Err(e) => (errors::from_log(&e), Some(str_bytes(e.to_string()))),
            };
            create_partitions_response::CreatePartitionsTopicResult::default()
                .with_name(t.name.clone())
                .with_error_code(code)
                .with_error_message(msg)
        })
        .collect();
    CreatePartitionsResponse::default().with_results(results)
}

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
/// `config_source` values.
const SOURCE_TOPIC: i8 = 1;
const SOURCE_DEFAULT: i8 = 5;

/// DescribeConfigs for topics (their log configs) and the broker.
pub fn describe_configs(
    state: &BrokerState,
    req: DescribeConfigsRequest,
    version: i16,
) -> DescribeConfigsResponse {
    let results = req
        .resources
        .iter()
        .map(|r| describe_resource(state, r, version))
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

fn describe_resource(
    state: &BrokerState,
    r: &describe_configs_request::DescribeConfigsResource,
    version: i16,
) -> describe_configs_response::DescribeConfigsResult {
    let base = describe_configs_response::DescribeConfigsResult::default()
        .with_resource_type(r.resource_type)
        .with_resource_name(r.resource_name.clone());
    let (entries, overrides): (BTreeMap<&str, String>, Vec<String>) = match r.resource_type {
        RESOURCE_TOPIC => match state.store.topic(r.resource_name.as_str()) {
            Some(t) => (t.config.entries(), t.meta.configs.keys().cloned().collect()),
            None => {
                return base
                    .with_error_code(errors::UNKNOWN_TOPIC_OR_PARTITION)
                    .with_error_message(Some(str_bytes(format!(
                        "unknown topic {}",
                        r.resource_name.as_str()
                    ))))
            }
        },
        RESOURCE_BROKER => (broker_configs(state), Vec::new()),
        other => {
            return base
                .with_error_code(errors::INVALID_REQUEST)
                .with_error_message(Some(str_bytes(format!(
                    "resource type {other} is not supported"
                ))))
        }
    };
    // Null or empty key lists both mean every config, as in Kafka.
    let wanted = r.configuration_keys.as_ref().filter(|w| !w.is_empty());
    let configs = entries
        .into_iter()
        .filter(|(k, _)| wanted.is_none_or(|w| w.iter().any(|x| x.as_str() == *k)))
        .map(|(k, v)| {
            let is_override = overrides.iter().any(|o| o == k);
            let entry = describe_configs_response::DescribeConfigsResourceResult::default()
                .with_name(str_bytes(k))
                .with_value(Some(str_bytes(v)))
                .with_config_source(if is_override {
                    SOURCE_TOPIC
                } else {
                    SOURCE_DEFAULT
                });
            if version >= 3 {
                entry.with_config_type(config_type(k))
            } else {
                entry
            }
        })
        .collect();
    base.with_configs(configs)
}

fn broker_configs(state: &BrokerState) -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        ("broker.id", state.config.node_id.to_string()),
        (
            "auto.create.topics.enable",
            state.config.auto_create_topics.to_string(),
        ),
        (
            "num.partitions",
            state.config.default_partitions.to_string(),
        ),
        (
            "socket.request.max.bytes",
            state.config.max_request_bytes.to_string(),
        ),
        ("default.replication.factor", "1".to_string()),
        ("min.insync.replicas", "1".to_string()),
    ])
}

/// Kafka's `ConfigType` ids: 1 BOOLEAN, 2 STRING, 3 INT, 5 LONG.
fn config_type(key: &str) -> i8 {
    match key {
        "segment.bytes" | "index.interval.bytes" | "max.message.bytes" => 3,
        "retention.bytes" | "retention.ms" | "flush.messages" | "flush.ms" => 5,
        _ => 2,
    }
}
