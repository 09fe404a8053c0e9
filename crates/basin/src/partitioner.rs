//! Key-to-partition mapping for `basin produce`.
//!
//! The hash partitioner matches the Java client's default partitioner
//! (`toPositive(murmur2(key)) % partitions`), so keyed records land where any
//! Kafka client would put them. The range partitioner assigns contiguous,
//! byte-ordered key ranges to partitions.

use anyhow::{bail, Result};

/// How a record key picks its partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Partitioner {
    /// `murmur2(key) & 0x7fffffff % partitions`, as Kafka's Java client does.
    Hash,
    /// Partition `i` holds keys in `[splits[i-1], splits[i])`, byte order.
    Range(Vec<Vec<u8>>),
}

impl Partitioner {
    /// Build a range partitioner; the split points must strictly ascend.
    pub fn range(splits: Vec<Vec<u8>>) -> Result<Partitioner> {
        if splits.is_empty() {
            bail!("the range partitioner needs at least one split point (--splits)");
        }
        if let Some(pair) = splits.windows(2).find(|w| w[0] >= w[1]) {
            bail!(
                "range splits must be strictly ascending, but {:?} is not below {:?}",
                String::from_utf8_lossy(&pair[0]),
                String::from_utf8_lossy(&pair[1])
            );
        }
        Ok(Partitioner::Range(splits))
    }

    /// The number of partitions this partitioner requires, if it fixes one.
    pub fn required_partitions(&self) -> Option<i32> {
        match self {
            Partitioner::Hash => None,
            Partitioner::Range(splits) => Some(splits.len() as i32 + 1),
        }
    }

    /// Check that a topic with `partitions` partitions fits this partitioner.
    pub fn check_partitions(&self, topic: &str, partitions: i32) -> Result<()> {
        if partitions <= 0 {
            bail!("topic {topic:?} has no partitions");
        }
        match self.required_partitions() {
            Some(need) if need != partitions => bail!(
                "topic {topic:?} has {partitions} partitions but {} range splits need {need}",
                need - 1
            ),
            _ => Ok(()),
        }
    }

    /// The partition for `key` in a topic of `partitions` partitions.
    pub fn partition(&self, key: &[u8], partitions: i32) -> i32 {
        match self {
            Partitioner::Hash => hash_partition(key, partitions),
            Partitioner::Range(splits) => splits.partition_point(|s| s.as_slice() <= key) as i32,
        }
    }
}

/// The Java client's default choice: `toPositive(murmur2(key)) % partitions`.
pub fn hash_partition(key: &[u8], partitions: i32) -> i32 {
    assert!(partitions > 0, "a topic has at least one partition");
    (murmur2(key) & 0x7fff_ffff) % partitions
}

/// Kafka's `Utils.murmur2`: 32-bit MurmurHash2 with seed `0x9747b28c`.
pub fn murmur2(data: &[u8]) -> i32 {
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h: u32 = 0x9747_b28c ^ data.len() as u32;
    let chunks = data.chunks_exact(4);
    let tail = chunks.remainder();
    for chunk in chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M) ^ k;
    }
    h = mix_tail(h, tail);
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The switch-with-fallthrough over the last 1-3 bytes.
fn mix_tail(mut h: u32, tail: &[u8]) -> u32 {
    if tail.is_empty() {
        return h;
    }
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    h ^= u32::from(tail[0]);
    h.wrapping_mul(0x5bd1_e995)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafka_utils_test() {
        let cases: [(&str, i32); 6] = [
            ("21", -973_932_308),
            ("foobar", -790_332_482),
            ("a-little-bit-long-string", -985_981_536),
            ("a-little-bit-longer-string", -1_486_304_829),
            (
                "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            ("abc", 479_470_107),
        ];
        for (input, expected) in cases {
            assert_eq!(murmur2(input.as_bytes()), expected, "murmur2({input:?})");
        }
    }

    #[test]
    fn hash_partition_is_positive_modulo() {
        // murmur2("21") is negative; toPositive masks the sign bit.
        let expected = ((-973_932_308_i32) & 0x7fff_ffff) % 7;
        assert_eq!(hash_partition(b"21", 7), expected);
        for n in 1..20 {
            let p = hash_partition(b"foobar", n);
            assert!((0..n).contains(&p));
        }
    }

    #[test]
    fn range_partitions_by_byte_order() {
        let p = Partitioner::range(vec![b"a".to_vec(), b"m".to_vec(), b"t".to_vec()]).unwrap();
        assert_eq!(p.partition(b"", 4), 0);
        assert_eq!(p.partition(b"A", 4), 0);
        assert_eq!(p.partition(b"a", 4), 1);
        assert_eq!(p.partition(b"lzzz", 4), 1);
        assert_eq!(p.partition(b"m", 4), 2);
        assert_eq!(p.partition(b"s", 4), 2);
        assert_eq!(p.partition(b"t", 4), 3);
        assert_eq!(p.partition(b"zebra", 4), 3);
    }

    #[test]
    fn range_checks_splits_and_partition_count() {
        assert!(Partitioner::range(vec![]).is_err());
        assert!(Partitioner::range(vec![b"m".to_vec(), b"a".to_vec()]).is_err());
        assert!(Partitioner::range(vec![b"a".to_vec(), b"a".to_vec()]).is_err());
        let p = Partitioner::range(vec![b"a".to_vec(), b"m".to_vec(), b"t".to_vec()]).unwrap();
        assert!(p.check_partitions("t", 4).is_ok());
        let err = p.check_partitions("t", 3).unwrap_err().to_string();
        assert!(err.contains("has 3 partitions"), "{err}");
        assert!(Partitioner::Hash.check_partitions("t", 5).is_ok());
    }
}
