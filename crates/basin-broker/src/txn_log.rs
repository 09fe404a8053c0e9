//! Persistence of the transaction coordinator's state as records of the
//! internal compacted topic `__transaction_state` (Kafka's name): key
//! `{"transactional_id"}`, value the whole `TxnMeta` as JSON (producer id and
//! epoch, timeout, state, partitions, groups and pending offsets). Every state
//! change appends one record; replay keeps the latest per transactional id,
//! and compaction keeps the topic as small as the set of ids.

use std::collections::HashMap;

use basin_log::PartitionLog;
use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::groups::read_all;
use crate::transactions::TxnMeta;

pub const TXN_TOPIC: &str = "__transaction_state";

#[derive(Serialize, Deserialize)]
struct Key {
    transactional_id: String,
}

fn record(transactional_id: &str, meta: &TxnMeta, now: i64) -> Record {
    let key = Key {
        transactional_id: transactional_id.to_string(),
    };
    Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: 0,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: now,
        key: Some(Bytes::from(
            serde_json::to_vec(&key).expect("key serializes"),
        )),
        value: Some(Bytes::from(
            serde_json::to_vec(meta).expect("transaction state serializes"),
        )),
        headers: Default::default(),
    }
}

/// Append the current state of one transactional id.
pub fn append(
    log: &PartitionLog,
    transactional_id: &str,
    meta: &TxnMeta,
) -> Result<(), basin_log::LogError> {
    let now = crate::server::now_millis();
    let records = [record(transactional_id, meta, now)];
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options).expect("state record encodes");
    let info = log.append(&buf, 0)?;
    log.set_high_watermark(info.log_end_offset);
    Ok(())
}

/// The latest state of every transactional id in the log.
pub fn replay(log: &PartitionLog) -> Result<HashMap<String, TxnMeta>, basin_log::LogError> {
    let mut bytes = Bytes::from(read_all(log)?);
    let mut out = HashMap::new();
    while !bytes.is_empty() {
        let set = match RecordBatchDecoder::decode(&mut bytes) {
            Ok(set) => set,
            Err(e) => {
                warn!(error = %e, "undecodable batch in the transaction log; stopping replay there");
                break;
            }
        };
        for r in set.records {
            apply(&mut out, &r);
        }
    }
    Ok(out)
}

fn apply(out: &mut HashMap<String, TxnMeta>, r: &Record) {
    let Some(key) = r
        .key
        .as_ref()
        .and_then(|k| serde_json::from_slice::<Key>(k).ok())
    else {
        return;
    };
    match r
        .value
        .as_ref()
        .and_then(|v| serde_json::from_slice::<TxnMeta>(v).ok())
    {
        Some(meta) => {
            out.insert(key.transactional_id, meta);
        }
        None => {
            out.remove(&key.transactional_id);
        }
    }
}
