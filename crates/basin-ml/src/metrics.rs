//! Evaluation metrics of a trained model on its validation rows:
//! RMSE, MAE and R² for regression; AUC, log-loss and accuracy for
//! classification.

use serde::{Deserialize, Serialize};

/// Metrics on one set of rows (in the registry as JSON).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub rows: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rmse: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mae: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub r2: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auc: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_loss: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
}

impl Metrics {
    /// Regression metrics of `pred` against `truth`.
    pub fn regression(truth: &[f64], pred: &[f64]) -> Metrics {
        let n = truth.len() as f64;
        let mean = truth.iter().sum::<f64>() / n;
        let (mut se, mut ae, mut tot) = (0.0, 0.0, 0.0);
        for (t, p) in truth.iter().zip(pred) {
            se += (t - p) * (t - p);
            ae += (t - p).abs();
            tot += (t - mean) * (t - mean);
        }
        Metrics {
            rows: truth.len(),
            rmse: Some((se / n).sqrt()),
            mae: Some(ae / n),
            r2: Some(if tot > 0.0 { 1.0 - se / tot } else { 0.0 }),
            ..Metrics::default()
        }
    }

    /// Classification metrics of probabilities `prob` against 0/1 `truth`.
    pub fn classification(truth: &[f64], prob: &[f64]) -> Metrics {
        let n = truth.len() as f64;
        let eps = 1e-15;
        let mut ll = 0.0;
        let mut right = 0usize;
        for (t, p) in truth.iter().zip(prob) {
            let p = p.clamp(eps, 1.0 - eps);
            ll -= t * p.ln() + (1.0 - t) * (1.0 - p).ln();
            right += usize::from((p >= 0.5) == (*t >= 0.5));
        }
        Metrics {
            rows: truth.len(),
            auc: auc(truth, prob),
            log_loss: Some(ll / n),
            accuracy: Some(right as f64 / n),
            ..Metrics::default()
        }
    }

    /// `name=value` pairs of the metrics present, for one line of output.
    pub fn summary(&self) -> String {
        let pairs = [
            ("rmse", self.rmse),
            ("mae", self.mae),
            ("r2", self.r2),
            ("auc", self.auc),
            ("log_loss", self.log_loss),
            ("accuracy", self.accuracy),
        ];
        let mut out: Vec<String> = pairs
            .iter()
            .filter_map(|(k, v)| v.map(|v| format!("{k}={v:.4}")))
            .collect();
        out.push(format!("rows={}", self.rows));
        out.join(" ")
    }
}

/// Area under the ROC curve by ranks (ties share their mean rank); `None`
/// when only one class is present.
pub fn auc(truth: &[f64], prob: &[f64]) -> Option<f64> {
    let mut order: Vec<usize> = (0..truth.len()).collect();
    order.sort_by(|&a, &b| prob[a].total_cmp(&prob[b]));
    let mut ranks = vec![0.0; truth.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && prob[order[j + 1]] == prob[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            ranks[k] = rank;
        }
        i = j + 1;
    }
    let pos = truth.iter().filter(|t| **t >= 0.5).count() as f64;
    let neg = truth.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return None;
    }
    let sum: f64 = (0..truth.len())
        .filter(|&k| truth[k] >= 0.5)
        .map(|k| ranks[k])
        .sum();
    Some((sum - pos * (pos + 1.0) / 2.0) / (pos * neg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_and_constant_regressions() {
        let truth = [1.0, 2.0, 3.0, 4.0];
        let m = Metrics::regression(&truth, &truth);
        assert_eq!((m.rmse, m.mae, m.r2), (Some(0.0), Some(0.0), Some(1.0)));
        let m = Metrics::regression(&truth, &[2.5; 4]);
        assert_eq!(m.r2, Some(0.0));
        assert_eq!(m.mae, Some(1.0));
        assert!((m.rmse.unwrap() - 1.25f64.sqrt()).abs() < 1e-12);
    }

    #[test]
    fn auc_counts_ordered_pairs_and_ties_as_half() {
        assert_eq!(auc(&[0.0, 0.0, 1.0, 1.0], &[0.1, 0.2, 0.8, 0.9]), Some(1.0));
        assert_eq!(auc(&[1.0, 1.0, 0.0, 0.0], &[0.1, 0.2, 0.8, 0.9]), Some(0.0));
        assert_eq!(auc(&[0.0, 1.0], &[0.5, 0.5]), Some(0.5));
        // One positive above one of two negatives: 1 of 2 pairs.
        assert_eq!(auc(&[0.0, 1.0, 0.0], &[0.1, 0.5, 0.9]), Some(0.5));
        assert_eq!(auc(&[1.0, 1.0], &[0.1, 0.5]), None);
    }

    #[test]
    fn log_loss_and_accuracy() {
        let m = Metrics::classification(&[1.0, 0.0], &[0.5, 0.5]);
        assert!((m.log_loss.unwrap() - std::f64::consts::LN_2).abs() < 1e-12);
        let m = Metrics::classification(&[1.0, 0.0, 1.0], &[0.9, 0.2, 0.3]);
        assert!((m.accuracy.unwrap() - 2.0 / 3.0).abs() < 1e-12);
    }
}
