//! Linear and logistic regression, written here (the crates of the field
//! that have them pull in a linear-algebra stack for what is a small
//! Cholesky solve). Features are standardized with the training means and
//! deviations, a missing value becomes the mean, and the L2 penalty spares
//! the intercept. Linear regression solves the ridge normal equations
//! once; logistic regression takes Newton steps (IRLS) on the same system.
//! The Gram matrix is summed over row chunks in parallel.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{MlError, Result};

/// A fitted linear model over standardized features.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Linear {
    pub means: Vec<f64>,
    pub scales: Vec<f64>,
    /// Intercept first, then one weight per feature.
    pub weights: Vec<f64>,
    pub logistic: bool,
}

const CHUNK: usize = 16 * 1024;

impl Linear {
    /// Fit on `columns` (one per feature) against `label`.
    pub fn fit(columns: &[Vec<f64>], label: &[f64], l2: f64, logistic: bool) -> Result<Linear> {
        let (means, scales) = standardization(columns);
        let mut model = Linear {
            weights: vec![0.0; columns.len() + 1],
            means,
            scales,
            logistic,
        };
        let steps = if logistic { 50 } else { 1 };
        for _ in 0..steps {
            let (gram, rhs) = model.newton_system(columns, label, l2);
            let step = solve(gram, rhs)?;
            let change = step.iter().map(|s| s.abs()).fold(0.0, f64::max);
            for (w, s) in model.weights.iter_mut().zip(&step) {
                *w += s;
            }
            if change < 1e-10 {
                break;
            }
        }
        Ok(model)
    }

    /// Row `i` of the standardized design, intercept first.
    fn row(&self, columns: &[Vec<f64>], i: usize, out: &mut [f64]) {
        out[0] = 1.0;
        for (j, c) in columns.iter().enumerate() {
            out[j + 1] = self.standard(j, c[i]);
        }
    }

    fn standard(&self, j: usize, v: f64) -> f64 {
        if v.is_nan() {
            0.0
        } else {
            (v - self.means[j]) / self.scales[j]
        }
    }

    /// `H step = g` for the current weights: for squared loss H = XᵀX + λI
    /// and g = Xᵀ(y − Xw) − λw; for log loss each row is weighted by p(1−p).
    fn newton_system(&self, columns: &[Vec<f64>], y: &[f64], l2: f64) -> (Vec<f64>, Vec<f64>) {
        let d = self.weights.len();
        let rows = y.len();
        let zero = || (vec![0.0; d * d], vec![0.0; d]);
        let (mut gram, mut rhs) = (0..rows.div_ceil(CHUNK))
            .into_par_iter()
            .map(|c| {
                let (mut g, mut r) = zero();
                let mut x = vec![0.0; d];
                let end = ((c + 1) * CHUNK).min(rows);
                for (i, &target) in y.iter().enumerate().take(end).skip(c * CHUNK) {
                    self.row(columns, i, &mut x);
                    let (weight, residual) = self.row_terms(&x, target);
                    for a in 0..d {
                        r[a] += x[a] * residual;
                        for b in 0..=a {
                            g[a * d + b] += weight * x[a] * x[b];
                        }
                    }
                }
                (g, r)
            })
            .reduce(zero, |(mut g1, mut r1), (g2, r2)| {
                g1.iter_mut().zip(&g2).for_each(|(a, b)| *a += b);
                r1.iter_mut().zip(&r2).for_each(|(a, b)| *a += b);
                (g1, r1)
            });
        for a in 1..d {
            gram[a * d + a] += l2;
            rhs[a] -= l2 * self.weights[a];
        }
        (gram, rhs)
    }

    /// A row's Hessian weight and residual at the current weights.
    fn row_terms(&self, x: &[f64], y: f64) -> (f64, f64) {
        let z: f64 = x.iter().zip(&self.weights).map(|(a, w)| a * w).sum();
        if self.logistic {
            let p = sigmoid(z);
            ((p * (1.0 - p)).max(1e-12), y - p)
        } else {
            (1.0, y - z)
        }
    }

    /// Predictions (probabilities for logistic) for `columns`.
    pub fn predict(&self, columns: &[&[f64]], rows: usize) -> Vec<f64> {
        (0..rows)
            .map(|i| {
                let mut z = self.weights[0];
                for (j, c) in columns.iter().enumerate() {
                    z += self.weights[j + 1] * self.standard(j, c[i]);
                }
                if self.logistic {
                    sigmoid(z)
                } else {
                    z
                }
            })
            .collect()
    }
}

pub(crate) fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// Mean and standard deviation of each column's non-missing values (a
/// constant column gets scale 1).
fn standardization(columns: &[Vec<f64>]) -> (Vec<f64>, Vec<f64>) {
    columns
        .iter()
        .map(|c| {
            let (mut n, mut sum, mut sq) = (0.0, 0.0, 0.0);
            for v in c.iter().filter(|v| !v.is_nan()) {
                n += 1.0;
                sum += v;
                sq += v * v;
            }
            let mean = if n > 0.0 { sum / n } else { 0.0 };
            let var = if n > 0.0 { sq / n - mean * mean } else { 0.0 };
            let sd = var.max(0.0).sqrt();
            (mean, if sd > 1e-12 { sd } else { 1.0 })
        })
        .unzip()
}

/// Solve `a x = b` for symmetric positive definite `a`, of which only the
/// lower triangle is filled, by Cholesky.
fn solve(mut a: Vec<f64>, mut b: Vec<f64>) -> Result<Vec<f64>> {
    let d = b.len();
    for j in 0..d {
        let mut diag = a[j * d + j];
        for k in 0..j {
            diag -= a[j * d + k] * a[j * d + k];
        }
        if diag <= 1e-12 {
            return Err(MlError::Train(
                "the features are collinear (or a column is constant); add l2 or drop one".into(),
            ));
        }
        let diag = diag.sqrt();
        a[j * d + j] = diag;
        for i in j + 1..d {
            let mut v = a[i * d + j];
            for k in 0..j {
                v -= a[i * d + k] * a[j * d + k];
            }
            a[i * d + j] = v / diag;
        }
    }
    for i in 0..d {
        for k in 0..i {
            b[i] -= a[i * d + k] * b[k];
        }
        b[i] /= a[i * d + i];
    }
    for i in (0..d).rev() {
        for k in i + 1..d {
            b[i] -= a[k * d + i] * b[k];
        }
        b[i] /= a[i * d + i];
    }
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_an_exact_linear_relation() {
        let x1: Vec<f64> = (0..1000).map(|i| i as f64).collect();
        let x2: Vec<f64> = (0..1000).map(|i| ((i * 7) % 13) as f64).collect();
        let y: Vec<f64> = (0..1000).map(|i| 3.0 + 2.0 * x1[i] - 0.5 * x2[i]).collect();
        let m = Linear::fit(&[x1.clone(), x2.clone()], &y, 0.0, false).unwrap();
        let p = m.predict(&[&x1, &x2], 1000);
        for (a, b) in p.iter().zip(&y) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
    }

    #[test]
    fn logistic_separates_a_threshold_and_collinear_input_is_refused() {
        let x: Vec<f64> = (0..2000).map(|i| (i % 100) as f64).collect();
        let y: Vec<f64> = x.iter().map(|v| f64::from(*v >= 50.0)).collect();
        let m = Linear::fit(std::slice::from_ref(&x), &y, 1.0, true).unwrap();
        let p = m.predict(&[&[10.0, 90.0]], 2);
        assert!(p[0] < 0.05 && p[1] > 0.95, "{p:?}");
        let err = Linear::fit(&[x.clone(), x.clone()], &x, 0.0, false).unwrap_err();
        assert!(err.to_string().contains("collinear"), "{err}");
    }
}
