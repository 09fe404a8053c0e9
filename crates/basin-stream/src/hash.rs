//! Hash maps of the keyed operators' state. Their keys are row bytes
//! (`arrow::row`), hashed once per input row: aHash does that several
//! times faster than the standard SipHash. The seeds are fixed, so state
//! behaves the same from run to run.

use std::collections::{HashMap, HashSet};

pub type FastMap<K, V> = HashMap<K, V, ahash::RandomState>;
pub type FastSet<K> = HashSet<K, ahash::RandomState>;

fn state() -> ahash::RandomState {
    ahash::RandomState::with_seeds(
        0x243f_6a88_85a3_08d3,
        0x1319_8a2e_0370_7344,
        0xa409_3822_299f_31d0,
        0x082e_fa98_ec4e_6c89,
    )
}

pub fn fast_map<K, V>() -> FastMap<K, V> {
    HashMap::with_hasher(state())
}

pub fn fast_set<K>() -> FastSet<K> {
    HashSet::with_hasher(state())
}
