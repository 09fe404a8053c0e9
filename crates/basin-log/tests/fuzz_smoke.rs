//! Stable-Rust stand-in for the `record_batch` cargo-fuzz target: runs the
//! same body (`fuzz/src/record_batch.rs`) over a few thousand inputs from a
//! seeded generator — random bytes, and real batches (every codec, with and
//! without producer ids) with flipped bytes, overwritten header fields, cuts
//! and concatenations, half of them with their CRCs fixed up — so the
//! no-panic property is exercised on every `cargo test`.

mod common;

#[path = "../../../fuzz/src/record_batch.rs"]
mod record_batch;

use common::{batch_with, Producer, CODECS};

/// SplitMix64: small, fast and deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// Interesting values for header fields.
const EDGES: [i64; 10] = [
    0,
    1,
    -1,
    2,
    0x7f,
    0xff,
    i32::MAX as i64,
    i32::MIN as i64,
    1 << 31,
    -2,
];

fn seeds(rng: &mut Rng) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (i, codec) in CODECS.into_iter().cycle().take(15).enumerate() {
        let producer = (i % 3 == 0).then_some(Producer {
            id: 7,
            epoch: (i % 2) as i16,
            base_sequence: (i * 3) as i32,
        });
        out.push(batch_with(
            1 + rng.below(6),
            1_700_000_000_000 + rng.below(1_000_000) as i64,
            rng.below(80),
            codec,
            producer,
        ));
    }
    out
}

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut data = seeds[rng.below(seeds.len())].clone();
    for _ in 0..rng.below(3) {
        data.extend_from_slice(&seeds[rng.below(seeds.len())]);
    }
    for _ in 0..1 + rng.below(3) {
        match rng.below(6) {
            // Flip a byte anywhere.
            0 | 1 => {
                let at = rng.below(data.len());
                data[at] ^= 1 << rng.below(8);
            }
            // Overwrite a header field of the first batch with an edge value.
            2 | 3 => {
                // (offset, width) of length, epoch, attributes, lastOffsetDelta,
                // timestamps, producer id/epoch, base sequence, record count.
                let fields = [
                    (8, 4),
                    (12, 4),
                    (21, 2),
                    (23, 4),
                    (27, 8),
                    (35, 8),
                    (43, 8),
                    (51, 2),
                    (53, 4),
                    (57, 4),
                ];
                let (at, width) = fields[rng.below(fields.len())];
                if at + width > data.len() {
                    continue;
                }
                let value = EDGES[rng.below(EDGES.len())].to_be_bytes();
                data[at..at + width].copy_from_slice(&value[8 - width..]);
            }
            // Cut the tail.
            4 => {
                let keep = rng.below(data.len() + 1);
                data.truncate(keep);
            }
            // Append junk.
            _ => {
                let n = rng.below(40);
                data.extend(rng.bytes(n));
            }
        }
        if data.is_empty() {
            break;
        }
    }
    data
}

#[test]
fn the_record_batch_fuzz_body_never_panics() {
    // tmpfs where there is one: the body fsyncs (rolls, epochs, close).
    let root = tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap();
    let mut rng = Rng(0x5eed_ba51_0000_0001);
    let seeds = seeds(&mut rng);
    let mut accepted = 0;
    for i in 0..3000 {
        // Mode byte first (see `record_batch::run`); mostly no leader epoch
        // (-1), which keeps the epoch file and its fsync out of most runs.
        let mut mode = rng.next() as u8;
        if rng.below(4) != 0 {
            mode &= 0x0f;
        }
        let mut data = vec![mode];
        if rng.below(5) == 0 {
            let len = rng.below(200);
            data.extend(rng.bytes(len));
        } else {
            data.extend(mutate(&mut rng, &seeds));
        }
        if record_batch::run(&data, &root.path().join(i.to_string())) {
            accepted += 1;
        }
    }
    println!("{accepted} of 3000 inputs were appended");
    // The generator must get past validation often enough to matter.
    assert!(accepted > 600, "only {accepted} inputs were appended");
}
