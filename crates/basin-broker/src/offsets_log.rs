//! Encoding of committed offsets as records of `__consumer_offsets`: key
//! `{"group","topic","partition"}`, value `{"offset","leader_epoch","metadata"}`
//! as JSON, a null value deleting the entry (compaction keeps the latest).

use std::collections::{BTreeMap, HashMap};

use basin_log::PartitionLog;
use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::groups::{read_all, Committed};

#[derive(Serialize, Deserialize)]
struct Key {
    group: String,
    topic: String,
    partition: i32,
}

type Offsets = HashMap<String, BTreeMap<(String, i32), Committed>>;

fn record(
    i: usize,
    group: &str,
    topic: &str,
    partition: i32,
    value: Option<&Committed>,
    now: i64,
) -> Record {
    let key = Key {
        group: group.to_string(),
        topic: topic.to_string(),
        partition,
    };
    Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: 0,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: i as i64,
        sequence: -1,
        timestamp: now,
        key: Some(Bytes::from(
            serde_json::to_vec(&key).expect("key serializes"),
        )),
        value: value.map(|c| Bytes::from(serde_json::to_vec(c).expect("value serializes"))),
        headers: Default::default(),
    }
}

/// Append commits (or deletions, with `None`) as one batch.
pub fn append(
    log: &PartitionLog,
    entries: &[(&str, &str, i32, Option<&Committed>)],
) -> Result<(), basin_log::LogError> {
    let now = crate::server::now_millis();
    let records: Vec<Record> = entries
        .iter()
        .enumerate()
        .map(|(i, (g, t, p, c))| record(i, g, t, *p, *c, now))
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options).expect("offset records encode");
    let info = log.append(&buf, 0)?;
    log.set_high_watermark(info.log_end_offset);
    Ok(())
}

/// Rebuild the latest committed offset of every group from the log.
pub fn replay(log: &PartitionLog) -> Result<Offsets, basin_log::LogError> {
    let mut bytes = Bytes::from(read_all(log)?);
    let mut offsets = Offsets::new();
    while !bytes.is_empty() {
        let set = match RecordBatchDecoder::decode(&mut bytes) {
            Ok(set) => set,
            Err(e) => {
                warn!(error = %e, "undecodable batch in the offsets log; stopping replay there");
                break;
            }
        };
        for r in set.records {
            apply(&mut offsets, &r);
        }
    }
    Ok(offsets)
}

fn apply(offsets: &mut Offsets, r: &Record) {
    let Some(key) = r
        .key
        .as_ref()
        .and_then(|k| serde_json::from_slice::<Key>(k).ok())
    else {
        return;
    };
    let group = offsets.entry(key.group).or_default();
    match r
        .value
        .as_ref()
        .and_then(|v| serde_json::from_slice::<Committed>(v).ok())
    {
        Some(c) => {
            group.insert((key.topic, key.partition), c);
        }
        None => {
            group.remove(&(key.topic, key.partition));
        }
    }
}
