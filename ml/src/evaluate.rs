//! `accunode model evaluate`: how a bundle does on labelled data: the metrics
//! `model train` records (ROC AUC, Brier, KS, log loss, bias) for the bundle and
//! each component, a calibration table and, on semi-synthetic data, the error
//! against the known true probabilities.

use std::fmt::Write as _;
use std::path::Path;

use accunode_core::scoring::{BatchOutput, Bundle};
use anyhow::Context;
use serde::Serialize;

use crate::labelled::LabelledData;
use crate::metrics::{AgainstTruth, CalibrationBin, Metrics, against_truth, calibration, metrics};

/// Rows per calibration bin are equal; this many bins.
pub const CALIBRATION_BINS: usize = 10;

#[derive(Debug, Serialize)]
pub struct ComponentEvaluation {
    pub name: String,
    pub metrics: Metrics,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub against_true_probability: Option<AgainstTruth>,
}

#[derive(Debug, Serialize)]
pub struct Evaluation {
    pub bundle_id: String,
    pub bundle_version: String,
    pub data_sha256: String,
    pub rows: usize,
    pub defaults: usize,
    pub metrics: Metrics,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub against_true_probability: Option<AgainstTruth>,
    pub components: Vec<ComponentEvaluation>,
    pub calibration: Vec<CalibrationBin>,
}

pub fn evaluate(bundle: &Bundle, data_path: &Path) -> anyhow::Result<Evaluation> {
    let data = LabelledData::read(data_path, &bundle.manifest().features, "--data")?;
    let mut scored = BatchOutput::default();
    bundle
        .score_batch(&data.rows, &mut scored)
        .with_context(|| format!("cannot score --data {}", data_path.display()))?;
    let probabilities: Vec<f64> = scored.scores.iter().map(|s| s.probability).collect();
    let truths = data.true_probabilities.as_deref();
    let components = bundle
        .component_names()
        .enumerate()
        .map(|(index, name)| {
            let own = scored.component(index);
            ComponentEvaluation {
                name: name.to_owned(),
                metrics: metrics(&own, &data.labels),
                against_true_probability: truths.map(|t| against_truth(&own, t, &data.labels)),
            }
        })
        .collect();
    Ok(Evaluation {
        bundle_id: bundle.id().to_owned(),
        bundle_version: bundle.version().to_owned(),
        data_sha256: data.sha256.clone(),
        rows: data.len(),
        defaults: data.defaults(),
        metrics: metrics(&probabilities, &data.labels),
        against_true_probability: truths.map(|t| against_truth(&probabilities, t, &data.labels)),
        components,
        calibration: calibration(&probabilities, &data.labels, truths, CALIBRATION_BINS),
    })
}

impl Evaluation {
    /// The report as people read it.
    pub fn to_text(&self) -> String {
        let mut text = String::new();
        let _ = writeln!(
            text,
            "bundle {} {} on {} rows ({} defaults, {:.2} %), data sha256 {}",
            self.bundle_id,
            self.bundle_version,
            self.rows,
            self.defaults,
            100.0 * self.defaults as f64 / self.rows as f64,
            self.data_sha256
        );
        let _ = writeln!(
            text,
            "\n{:<20} {:>8} {:>8} {:>8} {:>9} {:>10} {:>12}",
            "", "ROC AUC", "KS", "Brier", "log loss", "mean bias", "MAE vs true"
        );
        let mut row = |name: &str, m: &Metrics, truth: Option<&AgainstTruth>| {
            let _ = writeln!(
                text,
                "{name:<20} {:>8.4} {:>8.4} {:>8.5} {:>9.5} {:>+10.5} {:>12}",
                m.roc_auc,
                m.ks,
                m.brier,
                m.log_loss,
                m.mean_bias,
                truth.map_or("-".to_owned(), |t| format!("{:.5}", t.mean_absolute_error))
            );
        };
        row(
            "bundle",
            &self.metrics,
            self.against_true_probability.as_ref(),
        );
        for component in &self.components {
            row(
                &component.name,
                &component.metrics,
                component.against_true_probability.as_ref(),
            );
        }
        if let Some(truth) = &self.against_true_probability {
            let _ = writeln!(
                text,
                "{:<20} {:>8.4}   (the ceiling: the known true probabilities ranked)",
                "true probability", truth.true_probability_roc_auc
            );
        }
        let _ = writeln!(
            text,
            "\ncalibration ({} equal-count bins by predicted probability)",
            self.calibration.len()
        );
        let _ = writeln!(
            text,
            "{:>7} {:>21} {:>14} {:>9} {:>10}",
            "rows", "predicted range", "mean predicted", "observed", "mean true"
        );
        for bin in &self.calibration {
            let _ = writeln!(
                text,
                "{:>7} {:>10.5}-{:<10.5} {:>14.5} {:>9.5} {:>10}",
                bin.rows,
                bin.min_predicted,
                bin.max_predicted,
                bin.mean_predicted,
                bin.observed_default_rate,
                bin.mean_true_probability
                    .map_or("-".to_owned(), |t| format!("{t:.5}"))
            );
        }
        text
    }
}
