//! Every API the broker advertises answers at every advertised version with
//! a response that decodes at that version: a guard against advertising a
//! version whose response we cannot encode.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;

use basin_broker::codec::SUPPORTED;
use basin_broker::{Broker, BrokerConfig};
use bytes::BytesMut;
use common::{roundtrip, topic, txn_id};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};

/// INVALID_PRODUCER_ID_MAPPING: a transactional id nobody initialised.
const UNKNOWN_TXN: i16 = 49;

fn exercise(conn: &mut TcpStream, api: ApiKey, v: i16) {
    match api {
        ApiKey::Produce => {
            let r: ProduceResponse =
                roundtrip(conn, api, v, &ProduceRequest::default().with_acks(1));
            assert!(r.responses.is_empty());
        }
        ApiKey::Fetch => {
            let req = FetchRequest::default()
                .with_max_wait_ms(0)
                .with_topics(vec![fetch_request::FetchTopic::default()
                    .with_topic(topic("versions"))
                    .with_partitions(vec![
                        fetch_request::FetchPartition::default().with_partition_max_bytes(1024)
                    ])]);
            let r: FetchResponse = roundtrip(conn, api, v, &req);
            assert_eq!(r.responses.len(), 1);
        }
        ApiKey::ListOffsets => {
            let req = ListOffsetsRequest::default().with_topics(vec![
                list_offsets_request::ListOffsetsTopic::default()
                    .with_name(topic("versions"))
                    .with_partitions(vec![
                        list_offsets_request::ListOffsetsPartition::default().with_timestamp(-1)
                    ]),
            ]);
            let r: ListOffsetsResponse = roundtrip(conn, api, v, &req);
            assert_eq!(r.topics[0].partitions[0].error_code, 0, "v{v}");
        }
        ApiKey::Metadata => {
            let r: MetadataResponse =
                roundtrip(conn, api, v, &MetadataRequest::default().with_topics(None));
            assert_eq!(r.brokers.len(), 1);
        }
        ApiKey::OffsetCommit => {
            let _: OffsetCommitResponse = roundtrip(
                conn,
                api,
                v,
                &OffsetCommitRequest::default()
                    .with_group_id(GroupId(StrBytes::from_static_str("g"))),
            );
        }
        ApiKey::OffsetFetch => {
            let _: OffsetFetchResponse = roundtrip(conn, api, v, &OffsetFetchRequest::default());
        }
        ApiKey::FindCoordinator => {
            let req = FindCoordinatorRequest::default();
            let req = if v >= 4 {
                req.with_coordinator_keys(vec![StrBytes::from_static_str("g")])
            } else {
                req.with_key(StrBytes::from_static_str("g"))
            };
            let r: FindCoordinatorResponse = roundtrip(conn, api, v, &req.clone());
            assert!(r.port > 0 || r.coordinators.first().is_some_and(|c| c.port > 0));
            if v >= 1 {
                // Key types exist from v1: 1 is a transactional id, 2 is unknown.
                let r: FindCoordinatorResponse =
                    roundtrip(conn, api, v, &req.clone().with_key_type(1));
                assert!(r.port > 0 || r.coordinators.first().is_some_and(|c| c.port > 0));
                let r: FindCoordinatorResponse = roundtrip(conn, api, v, &req.with_key_type(2));
                let code = r
                    .coordinators
                    .first()
                    .map_or(r.error_code, |c| c.error_code);
                assert_eq!(code, 42, "v{v}: {r:?}");
            }
        }
        ApiKey::JoinGroup => {
            let r: JoinGroupResponse = roundtrip(conn, api, v, &JoinGroupRequest::default());
            assert_ne!(r.error_code, 0, "empty group id must be refused");
        }
        ApiKey::Heartbeat => {
            let _: HeartbeatResponse = roundtrip(conn, api, v, &HeartbeatRequest::default());
        }
        ApiKey::LeaveGroup => {
            let _: LeaveGroupResponse = roundtrip(conn, api, v, &LeaveGroupRequest::default());
        }
        ApiKey::SyncGroup => {
            let _: SyncGroupResponse = roundtrip(conn, api, v, &SyncGroupRequest::default());
        }
        ApiKey::DescribeGroups => {
            let _: DescribeGroupsResponse =
                roundtrip(conn, api, v, &DescribeGroupsRequest::default());
        }
        ApiKey::ListGroups => {
            let _: ListGroupsResponse = roundtrip(conn, api, v, &ListGroupsRequest::default());
        }
        ApiKey::ApiVersions => {
            let r: ApiVersionsResponse = roundtrip(conn, api, v, &ApiVersionsRequest::default());
            assert_eq!(r.api_keys.len(), SUPPORTED.len());
        }
        ApiKey::CreateTopics => {
            let req = CreateTopicsRequest::default().with_topics(vec![
                create_topics_request::CreatableTopic::default()
                    .with_name(topic(&format!("created-v{v}")))
                    .with_num_partitions(2)
                    .with_replication_factor(1),
            ]);
            let r: CreateTopicsResponse = roundtrip(conn, api, v, &req);
            assert_eq!(r.topics[0].error_code, 0, "v{v}");
        }
        ApiKey::DeleteTopics => {
            let req = if v >= 6 {
                DeleteTopicsRequest::default()
                    .with_topics(vec![delete_topics_request::DeleteTopicState::default()
                        .with_name(Some(topic("nope")))])
            } else {
                DeleteTopicsRequest::default().with_topic_names(vec![topic("nope")])
            };
            let r: DeleteTopicsResponse = roundtrip(conn, api, v, &req);
            assert_eq!(r.responses[0].error_code, 3, "unknown topic");
        }
        ApiKey::InitProducerId => {
            let r: InitProducerIdResponse = roundtrip(
                conn,
                api,
                v,
                &InitProducerIdRequest::default()
                    .with_transactional_id(None)
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1),
            );
            assert!(r.producer_id.0 >= 0, "v{v}: {r:?}");
            let txn: InitProducerIdResponse = roundtrip(
                conn,
                api,
                v,
                &InitProducerIdRequest::default()
                    .with_transactional_id(Some(txn_id("versions")))
                    .with_transaction_timeout_ms(60_000)
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1),
            );
            assert_eq!(txn.error_code, 0, "v{v}: {txn:?}");
            assert_eq!(txn.producer_epoch, v, "one bump per call: v{v}: {txn:?}");
        }
        ApiKey::AddPartitionsToTxn => {
            let req = AddPartitionsToTxnRequest::default()
                .with_v3_and_below_transactional_id(txn_id("nobody"))
                .with_v3_and_below_producer_id(ProducerId(1))
                .with_v3_and_below_topics(vec![
                    add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                        .with_name(topic("versions"))
                        .with_partitions(vec![0]),
                ]);
            let r: AddPartitionsToTxnResponse = roundtrip(conn, api, v, &req);
            let p = &r.results_by_topic_v3_and_below[0].results_by_partition[0];
            assert_eq!(p.partition_error_code, UNKNOWN_TXN, "v{v}");
        }
        ApiKey::AddOffsetsToTxn => {
            let req = AddOffsetsToTxnRequest::default()
                .with_transactional_id(txn_id("nobody"))
                .with_group_id(GroupId(StrBytes::from_static_str("g")));
            let r: AddOffsetsToTxnResponse = roundtrip(conn, api, v, &req);
            assert_eq!(r.error_code, UNKNOWN_TXN, "v{v}");
        }
        ApiKey::EndTxn => {
            let req = EndTxnRequest::default().with_transactional_id(txn_id("nobody"));
            let r: EndTxnResponse = roundtrip(conn, api, v, &req);
            assert_eq!(r.error_code, UNKNOWN_TXN, "v{v}");
        }
        ApiKey::TxnOffsetCommit => {
            let req = TxnOffsetCommitRequest::default()
                .with_transactional_id(txn_id("nobody"))
                .with_group_id(GroupId(StrBytes::from_static_str("g")))
                .with_topics(vec![
                    txn_offset_commit_request::TxnOffsetCommitRequestTopic::default()
                        .with_name(topic("versions"))
                        .with_partitions(vec![
                            txn_offset_commit_request::TxnOffsetCommitRequestPartition::default()
                                .with_committed_offset(1),
                        ]),
                ]);
            let r: TxnOffsetCommitResponse = roundtrip(conn, api, v, &req);
            assert_eq!(r.topics[0].partitions[0].error_code, UNKNOWN_TXN, "v{v}");
        }
        ApiKey::OffsetForLeaderEpoch => {
            let _: OffsetForLeaderEpochResponse =
                roundtrip(conn, api, v, &OffsetForLeaderEpochRequest::default());
        }
        ApiKey::DescribeConfigs => {
            let req = DescribeConfigsRequest::default().with_resources(vec![
                describe_configs_request::DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(StrBytes::from_static_str("versions")),
            ]);
            let r: DescribeConfigsResponse = roundtrip(conn, api, v, &req);
            assert!(r.results[0]
                .configs
                .iter()
                .any(|c| c.name.as_str() == "retention.ms"));
        }
        ApiKey::CreatePartitions => {
            let _: CreatePartitionsResponse =
                roundtrip(conn, api, v, &CreatePartitionsRequest::default());
        }
        other => panic!("advertised but not exercised: {other:?}"),
    }
}

type Server = tokio::task::JoinHandle<Result<(), basin_broker::BrokerError>>;

/// A broker on an ephemeral port in a temp dir, and the means to stop it.
async fn start_broker() -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    Server,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let config = BrokerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    let broker = Broker::bind(config).await.unwrap();
    let addr = broker.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(broker.serve(async {
        let _ = stopped.await;
    }));
    (addr, stop, server, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_advertised_version_answers() {
    let (addr, stop, server, _dir) = start_broker().await;
    tokio::task::spawn_blocking(move || {
        let mut conn = TcpStream::connect(addr).unwrap();
        let _: MetadataResponse = roundtrip(
            &mut conn,
            ApiKey::Metadata,
            4,
            &MetadataRequest::default()
                .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
                )
                .with_name(Some(topic("versions")))]))
                .with_allow_auto_topic_creation(true),
        );
        for &(api, lo, hi) in SUPPORTED {
            for v in lo..=hi {
                exercise(&mut conn, api, v);
            }
        }
    })
    .await
    .unwrap();
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

/// A request whose array length claims billions of entries is refused (the
/// connection closes) without the broker reserving that memory, and the
/// broker keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_array_lengths_do_not_take_the_broker_down() {
    let (addr, stop, server, _dir) = start_broker().await;
    tokio::task::spawn_blocking(move || {
        let mut buf = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(ApiKey::Fetch as i16)
            .with_request_api_version(9)
            .with_correlation_id(1)
            .encode(&mut buf, ApiKey::Fetch.request_header_version(9))
            .unwrap();
        // replica id, max wait, min bytes, max bytes, isolation, session id, epoch
        buf.extend_from_slice(&[
            0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0,
        ]);
        buf.extend_from_slice(&i32::MAX.to_be_bytes()); // topics array length
        let mut conn = TcpStream::connect(addr).unwrap();
        conn.write_all(&(buf.len() as i32).to_be_bytes()).unwrap();
        conn.write_all(&buf).unwrap();
        let mut byte = [0u8; 1];
        assert_eq!(
            conn.read(&mut byte).unwrap_or(0),
            0,
            "the bad connection is closed"
        );
        let mut fresh = TcpStream::connect(addr).unwrap();
        let r: MetadataResponse =
            roundtrip(&mut fresh, ApiKey::Metadata, 9, &MetadataRequest::default());
        assert_eq!(r.brokers.len(), 1);
    })
    .await
    .unwrap();
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
