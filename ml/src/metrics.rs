//! How well probabilities separate and calibrate: ROC AUC, Brier score, KS,
//! log loss, and a calibration table of equal-count bins.
//!
//! All are computed exactly (no sampling) and deterministically, so a bundle's
//! recorded metrics are reproducible from its data and seed.

use serde::Serialize;

/// Separation and accuracy of one set of probabilities against labels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Metrics {
    /// Probability that a random defaulter scores above a random non-defaulter
    /// (ties count half).
    pub roc_auc: f64,
    /// Mean squared error of the probability against the 0/1 outcome.
    pub brier: f64,
    /// Kolmogorov-Smirnov: the largest gap between the score distributions of
    /// defaulters and non-defaulters.
    pub ks: f64,
    pub log_loss: f64,
    /// Mean predicted probability minus the observed default rate.
    pub mean_bias: f64,
}

/// Metrics of `probabilities` against `labels` (same length, at least one row).
pub fn metrics(probabilities: &[f64], labels: &[bool]) -> Metrics {
    assert_eq!(probabilities.len(), labels.len());
    let n = labels.len() as f64;
    let positives = labels.iter().filter(|&&l| l).count() as f64;
    let negatives = n - positives;

    let mut order: Vec<usize> = (0..labels.len()).collect();
    order.sort_by(|&a, &b| probabilities[a].total_cmp(&probabilities[b]));

    // One pass over groups of tied scores, from the lowest: the rank sum of the
    // positives (Mann-Whitney) and the largest CDF gap (KS).
    let mut rank_sum = 0.0;
    let mut ks: f64 = 0.0;
    let (mut seen_positive, mut seen_negative) = (0.0, 0.0);
    let mut start = 0;
    while start < order.len() {
        let score = probabilities[order[start]];
        let mut end = start;
        while end < order.len() && probabilities[order[end]] == score {
            end += 1;
        }
        let group_positives = order[start..end].iter().filter(|&&i| labels[i]).count() as f64;
        let mean_rank = (start + 1 + end) as f64 / 2.0;
        rank_sum += group_positives * mean_rank;
        seen_positive += group_positives;
        seen_negative += (end - start) as f64 - group_positives;
        if positives > 0.0 && negatives > 0.0 {
            ks = ks.max((seen_negative / negatives - seen_positive / positives).abs());
        }
        start = end;
    }
    let roc_auc = if positives > 0.0 && negatives > 0.0 {
        (rank_sum - positives * (positives + 1.0) / 2.0) / (positives * negatives)
    } else {
        f64::NAN
    };

    let (mut brier, mut log_loss, mut predicted) = (0.0, 0.0, 0.0);
    for (&p, &label) in probabilities.iter().zip(labels) {
        let y = f64::from(u8::from(label));
        brier += (p - y).powi(2);
        let clipped = p.clamp(1e-15, 1.0 - 1e-15);
        log_loss -= if label {
            clipped.ln()
        } else {
            (1.0 - clipped).ln()
        };
        predicted += p;
    }
    Metrics {
        roc_auc,
        brier: brier / n,
        ks,
        log_loss: log_loss / n,
        mean_bias: (predicted - positives) / n,
    }
}

/// One row of a calibration table: rows whose predictions fall in one
/// equal-count slice, what was predicted, what happened and, for
/// semi-synthetic data, what was true.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CalibrationBin {
    pub rows: usize,
    pub min_predicted: f64,
    pub max_predicted: f64,
    pub mean_predicted: f64,
    pub observed_default_rate: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean_true_probability: Option<f64>,
}

/// `bins` equal-count slices of the rows ordered by predicted probability.
pub fn calibration(
    probabilities: &[f64],
    labels: &[bool],
    true_probabilities: Option<&[f64]>,
    bins: usize,
) -> Vec<CalibrationBin> {
    let mut order: Vec<usize> = (0..labels.len()).collect();
    order.sort_by(|&a, &b| probabilities[a].total_cmp(&probabilities[b]));
    let bins = bins.clamp(1, order.len().max(1));
    (0..bins)
        .map(|bin| {
            let slice = &order[bin * order.len() / bins..(bin + 1) * order.len() / bins];
            let count = slice.len().max(1) as f64;
            let mean = |values: &[f64]| slice.iter().map(|&i| values[i]).sum::<f64>() / count;
            CalibrationBin {
                rows: slice.len(),
                min_predicted: slice.first().map_or(f64::NAN, |&i| probabilities[i]),
                max_predicted: slice.last().map_or(f64::NAN, |&i| probabilities[i]),
                mean_predicted: mean(probabilities),
                observed_default_rate: slice.iter().filter(|&&i| labels[i]).count() as f64 / count,
                mean_true_probability: true_probabilities.map(mean),
            }
        })
        .collect()
}

/// How close predictions are to the known true probabilities (semi-synthetic
/// data only): mean absolute error and the AUC the truth itself reaches, the
/// ceiling for any model on these labels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct AgainstTruth {
    pub mean_absolute_error: f64,
    pub max_absolute_error: f64,
    pub true_probability_roc_auc: f64,
}

pub fn against_truth(probabilities: &[f64], truths: &[f64], labels: &[bool]) -> AgainstTruth {
    let errors = probabilities.iter().zip(truths).map(|(p, t)| (p - t).abs());
    let (sum, max) = errors.fold((0.0, 0.0_f64), |(sum, max), e| (sum + e, max.max(e)));
    AgainstTruth {
        mean_absolute_error: sum / probabilities.len().max(1) as f64,
        max_absolute_error: max,
        true_probability_roc_auc: metrics(truths, labels).roc_auc,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_perfect_ranking_has_auc_and_ks_one() {
        let m = metrics(&[0.1, 0.2, 0.8, 0.9], &[false, false, true, true]);
        assert_eq!(m.roc_auc, 1.0);
        assert_eq!(m.ks, 1.0);
        assert!((m.brier - (0.01 + 0.04 + 0.04 + 0.01) / 4.0).abs() < 1e-15);
        assert!((m.mean_bias - 0.0).abs() < 1e-15);
    }

    #[test]
    fn ties_count_half_and_a_constant_score_has_auc_one_half() {
        let m = metrics(&[0.3; 4], &[true, false, true, false]);
        assert_eq!(m.roc_auc, 0.5);
        assert_eq!(m.ks, 0.0);
    }

    #[test]
    fn auc_matches_the_pair_count() {
        // Pairs (positive, negative): (0.4 vs 0.1) win, (0.4 vs 0.5) lose,
        // (0.7 vs 0.1) win, (0.7 vs 0.5) win, so 3 of 4.
        let m = metrics(&[0.1, 0.4, 0.5, 0.7], &[false, true, false, true]);
        assert_eq!(m.roc_auc, 0.75);
        assert_eq!(m.ks, 0.5);
    }

    #[test]
    fn calibration_slices_are_equal_count_and_ordered() {
        // Rows given out of order; the truth is not the prediction, so each
        // bin must average the truth of its own rows.
        let probabilities = [0.9, 0.1, 0.5, 0.3, 0.7, 0.0, 0.2, 0.8, 0.4, 0.6];
        let truths = [0.5, 0.05, 0.3, 0.1, 0.6, 0.01, 0.02, 0.4, 0.2, 0.15];
        let labels = [
            true, false, true, false, true, false, false, true, false, false,
        ];
        let table = calibration(&probabilities, &labels, Some(&truths), 2);
        assert_eq!(table.len(), 2);
        assert_eq!(table[0].rows, 5);
        assert_eq!(table[1].rows, 5);
        // Lower bin: predictions 0.0 0.1 0.2 0.3 0.4; upper: 0.5 … 0.9.
        assert_eq!((table[0].min_predicted, table[0].max_predicted), (0.0, 0.4));
        assert_eq!((table[1].min_predicted, table[1].max_predicted), (0.5, 0.9));
        assert!((table[0].mean_predicted - 0.2).abs() < 1e-12);
        assert!((table[1].mean_predicted - 0.7).abs() < 1e-12);
        assert_eq!(table[0].observed_default_rate, 0.0);
        assert!((table[1].observed_default_rate - 0.8).abs() < 1e-12);
        // (0.01 + 0.05 + 0.02 + 0.1 + 0.2) / 5 and (0.3 + 0.15 + 0.6 + 0.4 + 0.5) / 5.
        assert!((table[0].mean_true_probability.unwrap() - 0.076).abs() < 1e-12);
        assert!((table[1].mean_true_probability.unwrap() - 0.39).abs() < 1e-12);
        assert_eq!(
            calibration(&probabilities, &labels, None, 2)[0].mean_true_probability,
            None
        );
    }

    #[test]
    fn error_against_the_truth_is_the_mean_and_largest_distance() {
        let probabilities = [0.1, 0.5, 0.9, 0.2];
        let truths = [0.2, 0.5, 0.6, 0.3];
        let labels = [false, true, true, false];
        let result = against_truth(&probabilities, &truths, &labels);
        // |0.1-0.2| + 0 + |0.9-0.6| + |0.2-0.3| = 0.5 over 4 rows.
        assert!((result.mean_absolute_error - 0.125).abs() < 1e-12);
        assert!((result.max_absolute_error - 0.3).abs() < 1e-12);
        // The truths rank both defaulters (0.5, 0.6) above both others (0.2, 0.3).
        assert_eq!(result.true_probability_roc_auc, 1.0);
        let mixed = against_truth(&probabilities, &[0.4, 0.1, 0.6, 0.3], &labels);
        // Pairs (defaulter, other): (0.1 vs 0.4) lose, (0.1 vs 0.3) lose,
        // (0.6 vs 0.4) win, (0.6 vs 0.3) win: 2 of 4.
        assert_eq!(mixed.true_probability_roc_auc, 0.5);
    }
}
