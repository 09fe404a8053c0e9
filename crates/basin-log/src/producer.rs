//! Idempotent-producer state of a partition: per producer id, its epoch and
//! the sequence ranges of its last five batches, so that a retried batch is
//! acknowledged with its first offset instead of being written twice.
//!
//! It also tracks the partition's open transactions (producer id → offset of
//! the transaction's first batch), which bound the last stable offset.
//!
//! The state is rebuilt from batch headers on open, starting from a snapshot
//! written on clean close, so de-duplication survives a restart.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::batch::BatchHeader;
use crate::error::{IoContext, LogError, Result};

/// How many recent batches per producer are remembered (Kafka's limit on
/// in-flight requests of an idempotent producer).
const RECENT_BATCHES: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct BatchSeq {
    first_seq: i32,
    last_seq: i32,
    base_offset: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct ProducerEntry {
    epoch: i16,
    recent: VecDeque<BatchSeq>,
}

/// What an append of a batch from an idempotent producer should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Append it.
    Append,
    /// Already in the log at this base offset: acknowledge, don't write.
    Duplicate(i64),
}

/// What an append request of one or more batches should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestCheck {
    /// Append every batch.
    Append,
    /// Every batch is already in the log: acknowledge with these offsets.
    Duplicate { base_offset: i64, last_offset: i64 },
}

/// A transaction still open in this partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OngoingTxn {
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// Offset of the transaction's first batch in this partition.
    pub first_offset: i64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct ProducerState {
    producers: HashMap<i64, ProducerEntry>,
    /// Open transactions: producer id → offset of their first batch.
    #[serde(default)]
    ongoing_txns: BTreeMap<i64, i64>,
    /// Offset after the last batch reflected in this state.
    pub next_offset: i64,
}

fn next_seq(seq: i32) -> i32 {
    if seq == i32::MAX {
        0
    } else {
        seq + 1
    }
}

impl ProducerState {
    /// Decide whether `h` is new, a duplicate, or out of order.
    pub fn check(&self, h: &BatchHeader) -> Result<SequenceCheck> {
        if !h.has_producer_id() || h.base_sequence < 0 {
            return Ok(SequenceCheck::Append);
        }
        let Some(entry) = self.producers.get(&h.producer_id) else {
            return Ok(SequenceCheck::Append);
        };
        if h.producer_epoch < entry.epoch {
            return Err(LogError::ProducerFenced {
                producer_id: h.producer_id,
                epoch: h.producer_epoch,
                current: entry.epoch,
            });
        }
        if h.producer_epoch > entry.epoch {
            return match h.base_sequence {
                0 => Ok(SequenceCheck::Append),
                got => Err(LogError::OutOfOrderSequence {
                    producer_id: h.producer_id,
                    expected: 0,
                    got,
                }),
            };
        }
        let dup = entry
            .recent
            .iter()
            .find(|b| b.first_seq == h.base_sequence && b.last_seq == h.last_sequence());
        if let Some(b) = dup {
            return Ok(SequenceCheck::Duplicate(b.base_offset));
        }
        let expected = entry
            .recent
            .back()
            .map_or(h.base_sequence, |b| next_seq(b.last_seq));
        if h.base_sequence != expected {
            return Err(LogError::OutOfOrderSequence {
                producer_id: h.producer_id,
                expected,
                got: h.base_sequence,
            });
        }
        Ok(SequenceCheck::Append)
    }

    /// Check the batches of one request in order, each against the state
    /// left by those before it. A request is either all new batches or all
    /// retries; a mix is refused as out of order.
    pub fn check_request<'a>(
        &self,
        headers: impl IntoIterator<Item = &'a BatchHeader>,
    ) -> Result<RequestCheck> {
        // Only the producers this request touches, as they would evolve.
        let mut scratch = ProducerState::default();
        let mut appends = 0;
        let mut dups: Vec<(&BatchHeader, i64)> = Vec::new();
        for h in headers {
            if let Some(entry) = self.producers.get(&h.producer_id) {
                scratch
                    .producers
                    .entry(h.producer_id)
                    .or_insert_with(|| entry.clone());
            }
            match scratch.check(h)? {
                SequenceCheck::Append => {
                    scratch.update(h);
                    appends += 1;
                }
                SequenceCheck::Duplicate(base) => dups.push((h, base)),
            }
        }
        let (Some(&(first, base_offset)), Some(&(last, last_base))) = (dups.first(), dups.last())
        else {
            return Ok(RequestCheck::Append);
        };
        if appends > 0 {
            let expected = scratch
                .producers
                .get(&first.producer_id)
                .and_then(|e| e.recent.back())
                .map_or(0, |b| next_seq(b.last_seq));
            return Err(LogError::OutOfOrderSequence {
                producer_id: first.producer_id,
                expected,
                got: first.base_sequence,
            });
        }
        Ok(RequestCheck::Duplicate {
            base_offset,
            last_offset: last_base + i64::from(last.last_offset_delta),
        })
    }

    /// Record a batch that is now in the log (control batches go through
    /// `end_txn`).
    pub fn update(&mut self, h: &BatchHeader) {
        self.next_offset = self.next_offset.max(h.next_offset());
        if h.is_transactional() && !h.is_control() && h.has_producer_id() {
            self.ongoing_txns
                .entry(h.producer_id)
                .or_insert(h.base_offset);
        }
        if !h.has_producer_id() || h.base_sequence < 0 {
            return;
        }
        let entry = self.producers.entry(h.producer_id).or_default();
        if h.producer_epoch != entry.epoch {
            entry.epoch = h.producer_epoch;
            entry.recent.clear();
        }
        entry.recent.push_back(BatchSeq {
            first_seq: h.base_sequence,
            last_seq: h.last_sequence(),
            base_offset: h.base_offset,
        });
        while entry.recent.len() > RECENT_BATCHES {
            entry.recent.pop_front();
        }
    }

    /// Refuse a marker from an epoch older than the producer's.
    pub fn check_marker(&self, producer_id: i64, epoch: i16) -> Result<()> {
        match self.producers.get(&producer_id) {
            Some(entry) if epoch < entry.epoch => Err(LogError::ProducerFenced {
                producer_id,
                epoch,
                current: entry.epoch,
            }),
            _ => Ok(()),
        }
    }

    /// Record the control batch `h` that ends its producer's transaction;
    /// returns the offset of the transaction's first batch, if it had any
    /// here. A marker's epoch becomes the producer's epoch, fencing older
    /// ones (the coordinator bumps it when it aborts a zombie's transaction).
    pub fn end_txn(&mut self, h: &BatchHeader) -> Option<i64> {
        self.next_offset = self.next_offset.max(h.next_offset());
        let entry = self.producers.entry(h.producer_id).or_default();
        if h.producer_epoch > entry.epoch {
            entry.epoch = h.producer_epoch;
            entry.recent.clear();
        }
        self.ongoing_txns.remove(&h.producer_id)
    }

    /// Offset of the first batch of the oldest open transaction.
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.ongoing_txns.values().min().copied()
    }

    /// The open transactions with their producers' epochs.
    pub fn ongoing(&self) -> Vec<OngoingTxn> {
        self.ongoing_txns
            .iter()
            .map(|(&producer_id, &first_offset)| OngoingTxn {
                producer_id,
                producer_epoch: self.producers.get(&producer_id).map_or(0, |e| e.epoch),
                first_offset,
            })
            .collect()
    }

    /// Load the snapshot in `dir`, if one exists and is readable.
    pub fn load_snapshot(dir: &Path) -> Option<ProducerState> {
        let text = fs::read_to_string(dir.join("producer-state.json")).ok()?;
        serde_json::from_str(&text).ok()
    }

    pub fn write_snapshot(&self, dir: &Path) -> Result<()> {
        let path = dir.join("producer-state.json");
        let tmp = dir.join("producer-state.json.tmp");
        let text = serde_json::to_string(self).expect("producer state serializes");
        fs::write(&tmp, text).at(&tmp)?;
        fs::rename(&tmp, &path).at(&path)
    }

    pub fn remove_snapshot(dir: &Path) {
        let _ = fs::remove_file(dir.join("producer-state.json"));
    }
}
