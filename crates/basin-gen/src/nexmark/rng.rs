//! The per-event random stream: SplitMix64 seeded from (seed, event number),
//! so any event can be drawn without drawing the ones before it, and the
//! output never changes with a `rand` upgrade.

/// SplitMix64's increment (the golden ratio in 64 bits).
const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// SplitMix64's output function: a strong 64-bit mix.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A small, fast, deterministic generator for one event's fields.
#[derive(Debug, Clone)]
pub struct EventRng {
    state: u64,
}

impl EventRng {
    /// The stream of event `number` under `seed`.
    pub fn for_event(seed: u64, number: u64) -> EventRng {
        EventRng {
            state: mix(seed ^ mix(number.wrapping_add(GAMMA))),
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GAMMA);
        mix(self.state)
    }

    /// Uniform in `0..n` (multiply-shift; the bias is below 2^-32 for the
    /// small `n` used here). `n` must be positive.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// True with probability `1 - 1/ratio`: the "hot" choice of the model.
    pub fn hot(&mut self, ratio: u64) -> bool {
        self.below(ratio) > 0
    }

    /// One of `items`, uniformly.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    /// Append `len` random lowercase letters to `out`.
    pub fn letters(&mut self, len: usize, out: &mut String) {
        for _ in 0..len {
            out.push((b'a' + self.below(26) as u8) as char);
        }
    }

    /// Append `len` random decimal digits to `out`.
    pub fn digits(&mut self, len: usize, out: &mut String) {
        for _ in 0..len {
            out.push((b'0' + self.below(10) as u8) as char);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let a: Vec<u64> = (0..4)
            .map(|_| EventRng::for_event(1, 5).next_u64())
            .collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        assert_ne!(
            EventRng::for_event(1, 5).next_u64(),
            EventRng::for_event(1, 6).next_u64()
        );
        assert_ne!(
            EventRng::for_event(1, 5).next_u64(),
            EventRng::for_event(2, 5).next_u64()
        );
    }

    #[test]
    fn below_and_unit_stay_in_range() {
        let mut rng = EventRng::for_event(9, 9);
        let mut seen = [0u32; 5];
        for _ in 0..10_000 {
            seen[rng.below(5) as usize] += 1;
            let u = rng.unit();
            assert!((0.0..1.0).contains(&u));
        }
        assert!(
            seen.iter().all(|&n| (1_800..2_200).contains(&n)),
            "{seen:?}"
        );
    }
}
