//! Kafka protocol error codes used by this broker, and the mapping from
//! storage errors to them.

use basin_log::LogError;

pub const NONE: i16 = 0;
pub const OFFSET_OUT_OF_RANGE: i16 = 1;
pub const CORRUPT_MESSAGE: i16 = 2;
pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
pub const MESSAGE_TOO_LARGE: i16 = 10;
pub const INVALID_TOPIC_EXCEPTION: i16 = 17;
pub const ILLEGAL_GENERATION: i16 = 22;
pub const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
pub const INVALID_GROUP_ID: i16 = 24;
pub const UNKNOWN_MEMBER_ID: i16 = 25;
pub const INVALID_SESSION_TIMEOUT: i16 = 26;
pub const REBALANCE_IN_PROGRESS: i16 = 27;
pub const UNSUPPORTED_VERSION: i16 = 35;
pub const TOPIC_ALREADY_EXISTS: i16 = 36;
pub const INVALID_PARTITIONS: i16 = 37;
pub const INVALID_REPLICATION_FACTOR: i16 = 38;
pub const INVALID_REQUEST: i16 = 42;
pub const UNSUPPORTED_FOR_MESSAGE_FORMAT: i16 = 43;
pub const INVALID_CONFIG: i16 = 40;
pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
pub const INVALID_PRODUCER_EPOCH: i16 = 47;
pub const INVALID_TXN_STATE: i16 = 48;
pub const INVALID_PRODUCER_ID_MAPPING: i16 = 49;
pub const INVALID_TRANSACTION_TIMEOUT: i16 = 50;
pub const CONCURRENT_TRANSACTIONS: i16 = 51;
pub const OPERATION_NOT_ATTEMPTED: i16 = 55;
pub const INVALID_RECORD: i16 = 87;
pub const UNSTABLE_OFFSET_COMMIT: i16 = 88;
pub const PRODUCER_FENCED: i16 = 90;
pub const UNKNOWN_SERVER_ERROR: i16 = -1;

/// The Kafka error code for a storage error.
pub fn from_log(e: &LogError) -> i16 {
    match e {
        LogError::CorruptBatch { .. } => CORRUPT_MESSAGE,
        LogError::UnsupportedMagic(_) => UNSUPPORTED_FOR_MESSAGE_FORMAT,
        LogError::OffsetOutOfRange { .. } => OFFSET_OUT_OF_RANGE,
        LogError::ProducerFenced { .. } => INVALID_PRODUCER_EPOCH,
        LogError::OutOfOrderSequence { .. } => OUT_OF_ORDER_SEQUENCE_NUMBER,
        LogError::TopicExists(_) => TOPIC_ALREADY_EXISTS,
        LogError::UnknownTopic(_) => UNKNOWN_TOPIC_OR_PARTITION,
        LogError::InvalidTopicName { .. } => INVALID_TOPIC_EXCEPTION,
        LogError::InvalidConfig { key, .. } if key == "partitions" => INVALID_PARTITIONS,
        LogError::InvalidConfig { .. } => INVALID_CONFIG,
        LogError::BatchTooLarge { .. } => MESSAGE_TOO_LARGE,
        LogError::InvalidRecord(_) => INVALID_RECORD,
        LogError::Io { .. } | LogError::CorruptMetadata { .. } => UNKNOWN_SERVER_ERROR,
    }
}
