//! Small sampling helpers over a seeded PRNG: a categorical distribution
//! from a weight table (cumulative weights + binary search), lognormal draws
//! by median and shape, and rounding to cents.

use rand::{Rng, RngExt};
use rand_distr::StandardNormal;

/// A categorical distribution over `values` with the given weights.
#[derive(Debug, Clone)]
pub struct Categorical<T> {
    values: Vec<T>,
    cumulative: Vec<f64>,
}

impl<T: Copy> Categorical<T> {
    /// Build from `(value, weight)` pairs; non-positive weights are dropped.
    /// An empty table samples nothing useful, so callers pass constants.
    pub fn new(pairs: impl IntoIterator<Item = (T, f64)>) -> Categorical<T> {
        let mut values = Vec::new();
        let mut cumulative = Vec::new();
        let mut total = 0.0;
        for (value, weight) in pairs {
            if weight > 0.0 && weight.is_finite() {
                total += weight;
                values.push(value);
                cumulative.push(total);
            }
        }
        Categorical { values, cumulative }
    }

    /// Draw one value.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> T {
        let total = self.cumulative.last().copied().unwrap_or(0.0);
        let u = rng.random::<f64>() * total;
        let i = self.cumulative.partition_point(|&c| c <= u);
        self.values[i.min(self.values.len() - 1)]
    }

    /// The share of `value` in the table (0 when absent).
    pub fn share(&self, value: T) -> f64
    where
        T: PartialEq,
    {
        let total = self.cumulative.last().copied().unwrap_or(0.0);
        let mut previous = 0.0;
        let mut found = 0.0;
        for (v, &c) in self.values.iter().zip(&self.cumulative) {
            if *v == value {
                found += c - previous;
            }
            previous = c;
        }
        if total > 0.0 {
            found / total
        } else {
            0.0
        }
    }
}

/// A standard normal draw.
pub fn normal<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    rng.sample(StandardNormal)
}

/// A lognormal draw with the given median and shape `sigma` (the standard
/// deviation of its logarithm); its mean is `median * exp(sigma^2 / 2)`.
pub fn lognormal<R: Rng + ?Sized>(rng: &mut R, median: f64, sigma: f64) -> f64 {
    median * (sigma * normal(rng)).exp()
}

/// True with probability `p`.
pub fn chance<R: Rng + ?Sized>(rng: &mut R, p: f64) -> bool {
    rng.random::<f64>() < p
}

/// Round to whole cents.
pub fn cents(amount: f64) -> f64 {
    (amount * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::ChaCha8Rng as Rng8;
    use rand::SeedableRng;

    #[test]
    fn categorical_follows_weights() {
        let table = Categorical::new([(1, 1.0), (2, 3.0), (3, 0.0)]);
        assert!((table.share(2) - 0.75).abs() < 1e-12);
        assert_eq!(table.share(3), 0.0);
        let mut rng = Rng8::seed_from_u64(7);
        let twos = (0..40_000).filter(|_| table.sample(&mut rng) == 2).count();
        assert!((twos as f64 / 40_000.0 - 0.75).abs() < 0.01, "{twos}");
    }

    #[test]
    fn lognormal_median() {
        let mut rng = Rng8::seed_from_u64(1);
        let mut v: Vec<f64> = (0..20_001).map(|_| lognormal(&mut rng, 2.0, 0.5)).collect();
        v.sort_by(f64::total_cmp);
        assert!((v[10_000] - 2.0).abs() < 0.05, "{}", v[10_000]);
    }

    #[test]
    fn cents_round() {
        assert_eq!(cents(12.345_6), 12.35);
        assert_eq!(cents(-3.004), -3.0);
    }
}
