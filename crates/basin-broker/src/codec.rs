//! Framing and decoding of Kafka requests, encoding of responses, and the
//! table of API versions this broker implements (the only ones advertised).
//!
//! Sans-IO: functions here take and return bytes; `server.rs` does the I/O.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable};

/// Why a frame could not be turned into a request.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("request frame of {0} bytes is too short for a header")]
    Short(usize),
    #[error("unknown API key {0}")]
    UnknownApi(i16),
    #[error("{api:?} v{version} is not supported (supported: v{min}-v{max})")]
    UnsupportedVersion {
        api: ApiKey,
        version: i16,
        min: i16,
        max: i16,
        correlation_id: i32,
    },
    #[error("malformed {api:?} v{version} request: {reason}")]
    Malformed {
        api: ApiKey,
        version: i16,
        reason: String,
    },
    #[error("cannot encode response: {0}")]
    Encode(String),
}

/// `(api, min, max)` for every API this broker serves.
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 9),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 8),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::CreatePartitions, 0, 3),
    // Transactions: the versions before KIP-890 (which needs the
    // TRANSACTION_ABORTABLE code and server-side epoch bumps per transaction).
    (ApiKey::AddPartitionsToTxn, 0, 3),
    (ApiKey::AddOffsetsToTxn, 0, 3),
    (ApiKey::EndTxn, 0, 3),
    (ApiKey::TxnOffsetCommit, 0, 3),
];

/// Supported version range of `api`, if served.
pub fn supported(api: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED
        .iter()
        .find(|(k, _, _)| *k == api)
        .map(|&(_, lo, hi)| (lo, hi))
}

/// A decoded request of one of the supported APIs.
#[derive(Debug, Clone)]
pub enum Request {
    Produce(ProduceRequest),
    Fetch(FetchRequest),
    ListOffsets(ListOffsetsRequest),
    Metadata(MetadataRequest),
    OffsetCommit(OffsetCommitRequest),
    OffsetFetch(OffsetFetchRequest),
    FindCoordinator(FindCoordinatorRequest),
    JoinGroup(JoinGroupRequest),
    Heartbeat(HeartbeatRequest),
    LeaveGroup(LeaveGroupRequest),
    SyncGroup(SyncGroupRequest),
    DescribeGroups(DescribeGroupsRequest),
    ListGroups(ListGroupsRequest),
    ApiVersions(ApiVersionsRequest),
    CreateTopics(CreateTopicsRequest),
    DeleteTopics(DeleteTopicsRequest),
    InitProducerId(InitProducerIdRequest),
    OffsetForLeaderEpoch(OffsetForLeaderEpochRequest),
    DescribeConfigs(DescribeConfigsRequest),
    CreatePartitions(CreatePartitionsRequest),
    AddPartitionsToTxn(AddPartitionsToTxnRequest),
    AddOffsetsToTxn(AddOffsetsToTxnRequest),
    EndTxn(EndTxnRequest),
    TxnOffsetCommit(TxnOffsetCommitRequest),
}

/// A request frame (without its 4-byte length prefix), decoded.
#[derive(Debug, Clone)]
pub struct Frame {
    pub api: ApiKey,
    pub version: i16,
    pub header: RequestHeader,
    pub request: Request,
}

fn body<T: Decodable>(buf: &mut Bytes, api: ApiKey, version: i16) -> Result<T, CodecError> {
    T::decode(buf, version).map_err(|e| CodecError::Malformed {
        api,
        version,
        reason: e.to_string(),
    })
}

/// Decode one request frame. Byte fields of the request (a produce
/// request's records) are slices of `frame`, not copies.
pub fn decode_request(frame: Bytes) -> Result<Frame, CodecError> {
    if frame.len() < 8 {
        return Err(CodecError::Short(frame.len()));
    }
    let key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let api = ApiKey::try_from(key).map_err(|_| CodecError::UnknownApi(key))?;
    let (min, max) = supported(api).ok_or(CodecError::UnknownApi(key))?;
    if version < min || version > max {
        return Err(CodecError::UnsupportedVersion {
            api,
            version,
            min,
            max,
            correlation_id,
        });
    }
    let header_version = api.request_header_version(version);
    let mut buf = frame;
    let header =
        RequestHeader::decode(&mut buf, header_version).map_err(|e| CodecError::Malformed {
            api,
            version,
            reason: format!("header: {e}"),
        })?;
    let request = decode_body(api, &mut buf, version)?;
    Ok(Frame {
        api,
        version,
        header,
        request,
    })
}

fn decode_body(api: ApiKey, buf: &mut Bytes, v: i16) -> Result<Request, CodecError> {
    use Request as R;
    Ok(match api {
        ApiKey::Produce => R::Produce(body(buf, api, v)?),
        ApiKey::Fetch => R::Fetch(body(buf, api, v)?),
        ApiKey::ListOffsets => R::ListOffsets(body(buf, api, v)?),
        ApiKey::Metadata => R::Metadata(body(buf, api, v)?),
        ApiKey::OffsetCommit => R::OffsetCommit(body(buf, api, v)?),
        ApiKey::OffsetFetch => R::OffsetFetch(body(buf, api, v)?),
        ApiKey::FindCoordinator => R::FindCoordinator(body(buf, api, v)?),
        ApiKey::JoinGroup => R::JoinGroup(body(buf, api, v)?),
        ApiKey::Heartbeat => R::Heartbeat(body(buf, api, v)?),
        ApiKey::LeaveGroup => R::LeaveGroup(body(buf, api, v)?),
        ApiKey::SyncGroup => R::SyncGroup(body(buf, api, v)?),
        ApiKey::DescribeGroups => R::DescribeGroups(body(buf, api, v)?),
        ApiKey::ListGroups => R::ListGroups(body(buf, api, v)?),
        ApiKey::ApiVersions => R::ApiVersions(body(buf, api, v)?),
        ApiKey::CreateTopics => R::CreateTopics(body(buf, api, v)?),
        ApiKey::DeleteTopics => R::DeleteTopics(body(buf, api, v)?),
        ApiKey::InitProducerId => R::InitProducerId(body(buf, api, v)?),
        ApiKey::OffsetForLeaderEpoch => R::OffsetForLeaderEpoch(body(buf, api, v)?),
        ApiKey::DescribeConfigs => R::DescribeConfigs(body(buf, api, v)?),
        ApiKey::CreatePartitions => R::CreatePartitions(body(buf, api, v)?),
        ApiKey::AddPartitionsToTxn => R::AddPartitionsToTxn(body(buf, api, v)?),
        ApiKey::AddOffsetsToTxn => R::AddOffsetsToTxn(body(buf, api, v)?),
        ApiKey::EndTxn => R::EndTxn(body(buf, api, v)?),
        ApiKey::TxnOffsetCommit => R::TxnOffsetCommit(body(buf, api, v)?),
        _ => return Err(CodecError::UnknownApi(api as i16)),
    })
}

/// Encode a response with its header, length-prefixed, ready to write.
pub fn encode_response<T: Encodable>(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    response: &T,
) -> Result<Bytes, CodecError> {
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    header
        .encode(&mut buf, api.response_header_version(version))
        .map_err(|e| CodecError::Encode(e.to_string()))?;
    response
        .encode(&mut buf, version)
        .map_err(|e| CodecError::Encode(format!("{api:?} v{version}: {e}")))?;
    let len = (buf.len() - 4) as i32;
    buf[0..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf.freeze())
}

/// The ApiVersions answer to a request of an unsupported version: v0 body
/// with UNSUPPORTED_VERSION, so the client can pick a version it shares.
pub fn api_versions_fallback(correlation_id: i32) -> Bytes {
    let response = crate::handlers::meta::api_versions_response(crate::errors::UNSUPPORTED_VERSION);
    encode_response(ApiKey::ApiVersions, 0, correlation_id, &response)
        .expect("ApiVersions v0 always encodes")
}

/// Peek the length prefix of a frame in `buf`, if 4 bytes are there.
pub fn frame_len(buf: &[u8]) -> Option<i32> {
    (buf.len() >= 4).then(|| (&buf[..4]).get_i32())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_of<T: Encodable>(api: ApiKey, version: i16, req: &T) -> Bytes {
        let mut buf = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(7)
            .encode(&mut buf, api.request_header_version(version))
            .unwrap();
        req.encode(&mut buf, version).unwrap();
        buf.freeze()
    }

    #[test]
    fn decodes_a_metadata_request_at_every_supported_version() {
        let (lo, hi) = supported(ApiKey::Metadata).unwrap();
        for v in lo..=hi {
            let frame = frame_of(ApiKey::Metadata, v, &MetadataRequest::default());
            let decoded = decode_request(frame).unwrap();
            assert_eq!(decoded.header.correlation_id, 7);
            assert!(matches!(decoded.request, Request::Metadata(_)));
        }
    }

    #[test]
    fn produce_records_are_slices_of_the_frame() {
        let records = Bytes::from(vec![7u8; 4096]);
        let partition = produce_request::PartitionProduceData::default()
            .with_index(0)
            .with_records(Some(records.clone()));
        let topic = produce_request::TopicProduceData::default()
            .with_name(TopicName(
                kafka_protocol::protocol::StrBytes::from_static_str("t"),
            ))
            .with_partition_data(vec![partition]);
        let request = ProduceRequest::default()
            .with_acks(1)
            .with_topic_data(vec![topic]);
        for v in [3, 9] {
            let frame = frame_of(ApiKey::Produce, v, &request);
            let span = frame.as_ptr_range();
            let Request::Produce(decoded) = decode_request(frame).unwrap().request else {
                panic!("not a produce request");
            };
            let got = decoded.topic_data[0].partition_data[0].records.clone();
            let got = got.expect("records");
            assert_eq!(got, records);
            assert!(span.contains(&got.as_ptr()), "v{v}: records were copied");
        }
    }

    #[test]
    fn rejects_unknown_api_short_frames_and_bad_versions() {
        let short = Bytes::from_static(&[0; 3]);
        assert!(matches!(decode_request(short), Err(CodecError::Short(3))));
        assert!(matches!(
            decode_request(Bytes::from_static(&[0x7f, 0, 0, 0, 0, 0, 0, 1])),
            Err(CodecError::UnknownApi(_))
        ));
        let frame = frame_of(ApiKey::Metadata, 0, &MetadataRequest::default());
        let mut bad = BytesMut::from(&frame[..]);
        bad[3] = 99;
        assert!(matches!(
            decode_request(bad.freeze()),
            Err(CodecError::UnsupportedVersion { .. })
        ));
        assert!(matches!(
            decode_request(frame.slice(..9)),
            Err(CodecError::Malformed { .. })
        ));
    }
}
