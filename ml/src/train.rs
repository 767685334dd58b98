//! `accunode model train`: fits a two-component bundle from labelled data.
//!
//! 1. **Split.** Each row goes to the holdout with probability `holdout`,
//!    drawn from a [`SplitMix64`] seeded with `--seed`; the rest is training data.
//! 2. **Binned logistic** (the original's kind of model, written in the
//!    original's JSON layout so the same component scores it): per feature,
//!    bins at the quantiles of the training values (`low < x <= high`, open
//!    ends), a Missing bin, each bin's default rate shrunk towards the overall
//!    rate by [`PRIOR_ROWS`] pseudo-rows (a small bin cannot claim 0 % or
//!    100 %), then an L2 logistic regression (linfa-logistic, L-BFGS, the same
//!    penalty as scikit-learn's default `C = 1`) on the binned rates,
//!    standardised while fitting and written back in raw units.
//! 3. **LightGBM** on the raw ratios, with LightGBM's own Missing handling and
//!    monotone constraints in each ratio's risk direction
//!    ([`risk_direction`]), deterministic, one thread.
//! 4. **Bundle.** Both components, equal weights, and a manifest recording the
//!    data's SHA-256, row counts, default rates, every parameter, and holdout
//!    metrics of each component and of the ensemble, computed by scoring the
//!    holdout through the written bundle (the serving path). The folder is
//!    written beside `--out` and renamed into place when complete.
//!
//! Nothing depends on the clock, the machine or the data's path (only its file
//! name is recorded): the same data, seed and options give byte-identical files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::random::SplitMix64;
use accunode_core::scoring::features::{risk_direction, standard_features};
use accunode_core::scoring::manifest::ComponentSpec;
use accunode_core::scoring::{
    BatchOutput, Bundle, ComponentKind, FeatureSpec, Manifest, ModelKind, RiskThresholds,
};
use anyhow::{Context, bail};
use linfa::prelude::*;
use linfa_logistic::LogisticRegression;
use ndarray::{Array1, Array2};
use serde_json::{Value, json};

use crate::labelled::LabelledData;
use crate::metrics::{Metrics, against_truth, metrics};

/// Pseudo-rows at the overall default rate added to every bin's count.
pub const PRIOR_ROWS: f64 = 20.0;
/// The L2 penalty of the logistic regression (scikit-learn's `C = 1`).
const LOGISTIC_ALPHA: f64 = 1.0;
const BINNED_FILE: &str = "binned_logistic.json";
const LIGHTGBM_FILE: &str = "lightgbm.txt";

/// What to train and where to write it.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub kind: ModelKind,
    pub data: PathBuf,
    pub out: PathBuf,
    pub seed: u64,
    /// Share of rows held out for the metrics, in (0, 1).
    pub holdout: f64,
    /// Quantile bins per feature (fewer where values repeat).
    pub bins: usize,
    pub lightgbm_rounds: u32,
    pub id: String,
    pub version: String,
}

/// What was trained, for the command's summary.
#[derive(Debug)]
pub struct TrainReport {
    pub train_rows: usize,
    pub holdout_rows: usize,
    pub ensemble: Metrics,
    pub components: BTreeMap<String, Metrics>,
}

pub fn train(options: &TrainOptions) -> anyhow::Result<TrainReport> {
    if !(options.holdout > 0.0 && options.holdout < 1.0) {
        bail!(
            "--holdout must be between 0 and 1 (exclusive), got {}",
            options.holdout
        );
    }
    if !(2..=100).contains(&options.bins) {
        bail!("--bins must be between 2 and 100, got {}", options.bins);
    }
    if !(1..=10_000).contains(&options.lightgbm_rounds) {
        bail!(
            "--lightgbm-rounds must be between 1 and 10000, got {}",
            options.lightgbm_rounds
        );
    }
    if options.out.exists() {
        bail!(
            "--out {} already exists; a bundle is never overwritten, choose a new folder",
            options.out.display()
        );
    }
    let features = standard_features(options.kind);
    let data = LabelledData::read(&options.data, &features, "--data")?;

    let mut rng = SplitMix64::new(options.seed);
    let (mut train_indices, mut holdout_indices) = (Vec::new(), Vec::new());
    for index in 0..data.len() {
        if rng.uniform() < options.holdout {
            holdout_indices.push(index);
        } else {
            train_indices.push(index);
        }
    }
    let train = data.subset(&train_indices);
    let holdout = data.subset(&holdout_indices);
    for (part, name) in [(&train, "training"), (&holdout, "holdout")] {
        if part.defaults() == 0 || part.defaults() == part.len() {
            bail!(
                "--data {}: the {name} part ({} rows, {} defaults) needs both defaults and non-defaults; \
                 use more rows or another --holdout",
                options.data.display(),
                part.len(),
                part.defaults()
            );
        }
    }

    let binned = fit_binned_logistic(&train, &features, options.bins)?;
    let lightgbm_params = lightgbm_params(&features, options);
    let lightgbm = fit_lightgbm(&train, &features, &lightgbm_params)?;

    let partial = partial_dir(&options.out);
    if partial.exists() {
        std::fs::remove_dir_all(&partial)
            .with_context(|| format!("cannot remove the stale {}", partial.display()))?;
    }
    std::fs::create_dir_all(&partial)
        .with_context(|| format!("cannot create {}", partial.display()))?;
    write(&partial.join(BINNED_FILE), &pretty(&binned)?)?;
    write(&partial.join(LIGHTGBM_FILE), &lightgbm)?;

    let mut manifest = manifest(options, &features, &data, &train, &holdout, lightgbm_params);
    write(&partial.join("manifest.json"), &pretty(&manifest)?)?;

    // Holdout metrics through the bundle as written: what serving will compute.
    let bundle = Bundle::load(&partial).context("the trained bundle does not load")?;
    let mut scored = BatchOutput::default();
    bundle
        .score_batch(&holdout.rows, &mut scored)
        .context("the trained bundle cannot score its holdout")?;
    let ensemble_probabilities: Vec<f64> = scored.scores.iter().map(|s| s.probability).collect();
    let ensemble = metrics(&ensemble_probabilities, &holdout.labels);
    let mut components = BTreeMap::new();
    let mut component_truth = BTreeMap::new();
    for (index, spec) in manifest.components.iter().enumerate() {
        let probabilities = scored.component(index);
        components.insert(spec.name.clone(), metrics(&probabilities, &holdout.labels));
        if let Some(truths) = &holdout.true_probabilities {
            component_truth.insert(
                spec.name.clone(),
                against_truth(&probabilities, truths, &holdout.labels),
            );
        }
    }
    let mut holdout_metrics = json!({
        "rows": holdout.len(),
        "defaults": holdout.defaults(),
        "ensemble": ensemble,
        "components": components,
    });
    if let Some(truths) = &holdout.true_probabilities {
        holdout_metrics["against_true_probability"] = json!({
            "ensemble": against_truth(&ensemble_probabilities, truths, &holdout.labels),
            "components": component_truth,
        });
    }
    manifest.metrics = Some(json!({ "holdout": holdout_metrics }));
    write(&partial.join("manifest.json"), &pretty(&manifest)?)?;
    std::fs::rename(&partial, &options.out)
        .with_context(|| format!("cannot move the bundle to --out {}", options.out.display()))?;

    Ok(TrainReport {
        train_rows: train.len(),
        holdout_rows: holdout.len(),
        ensemble,
        components,
    })
}

/// Quantile bins, smoothed rates and a logistic regression on the rates, in
/// the layout of the original's JSON files.
fn fit_binned_logistic(
    train: &LabelledData,
    features: &[FeatureSpec],
    bins: usize,
) -> anyhow::Result<Value> {
    let base_rate = train.defaults() as f64 / train.len() as f64;
    let smoothed = |defaults: usize, rows: usize| {
        (defaults as f64 + PRIOR_ROWS * base_rate) / (rows as f64 + PRIOR_ROWS)
    };
    let width = features.len();
    let mut binned = Array2::<f64>::zeros((train.len(), width));
    let mut feature_json = Vec::with_capacity(width);
    for (column, feature) in features.iter().enumerate() {
        let mut present: Vec<f64> = (0..train.len())
            .map(|row| train.row(row)[column])
            .filter(|value| !value.is_nan())
            .collect();
        present.sort_by(f64::total_cmp);
        let edges = quantile_edges(&present, bins);
        // Counts per bin, then Missing last.
        let mut rows = vec![0usize; edges.len() + 2];
        let mut defaults = vec![0usize; edges.len() + 2];
        let slot = |value: f64| {
            if value.is_nan() {
                edges.len() + 1
            } else {
                edges.partition_point(|edge| *edge < value)
            }
        };
        for row in 0..train.len() {
            let index = slot(train.row(row)[column]);
            rows[index] += 1;
            defaults[index] += usize::from(train.labels[row]);
        }
        let rates: Vec<f64> = rows
            .iter()
            .zip(&defaults)
            .map(|(&r, &d)| smoothed(d, r))
            .collect();
        for row in 0..train.len() {
            binned[[row, column]] = rates[slot(train.row(row)[column])];
        }
        let bounds: Vec<Value> = std::iter::once(json!("-inf"))
            .chain(edges.iter().map(|edge| json!(edge)))
            .chain(std::iter::once(json!("inf")))
            .collect();
        let bins_json: Vec<Value> = (0..=edges.len())
            .map(|bin| {
                json!({
                    "low": bounds[bin],
                    "high": bounds[bin + 1],
                    "rate": rates[bin],
                    "rows": rows[bin],
                    "defaults": defaults[bin],
                })
            })
            .collect();
        feature_json.push(json!({
            "name": feature.name,
            "bins": bins_json,
            "missing_rate": rates[edges.len() + 1],
            "missing_rows": rows[edges.len() + 1],
            "missing_defaults": defaults[edges.len() + 1],
        }));
    }

    // Standardise the rate columns so the penalty treats features alike and
    // L-BFGS sees a well-conditioned problem; write the fit back in raw units.
    let means = binned
        .mean_axis(ndarray::Axis(0))
        .context("no training rows")?;
    let deviations = binned
        .std_axis(ndarray::Axis(0), 0.0)
        .mapv(|sd| if sd > 0.0 { sd } else { 1.0 });
    let standardised = (&binned - &means) / &deviations;
    let targets: Array1<bool> = train.labels.iter().copied().collect();
    let fitted = LogisticRegression::default()
        .alpha(LOGISTIC_ALPHA)
        .max_iterations(500)
        .fit(&Dataset::new(standardised, targets))
        .context("the logistic regression did not fit")?;
    // linfa models the majority class; P(default) = 1 - σ(z) = σ(-z) when that
    // is "no default".
    let sign = if fitted.labels().pos.class { 1.0 } else { -1.0 };
    let weights = fitted.params().mapv(|w| sign * w);
    let coefficients: Vec<f64> = weights
        .iter()
        .zip(&deviations)
        .map(|(w, sd)| w / sd)
        .collect();
    let intercept = sign * fitted.intercept()
        - weights
            .iter()
            .zip(&means)
            .zip(&deviations)
            .map(|((w, mean), sd)| w * mean / sd)
            .sum::<f64>();
    for (feature, coefficient) in feature_json.iter_mut().zip(&coefficients) {
        feature["coefficient"] = json!(coefficient);
    }
    Ok(json!({
        "model": "binned_logistic",
        "source": {
            "trained_by": "accunode model train",
            "bins": "quantiles of the training rows, low < x <= high; rates shrunk towards the overall rate",
            "prior_rows": PRIOR_ROWS,
            "logistic_regression": {
                "crate": "linfa-logistic 0.8",
                "alpha": LOGISTIC_ALPHA,
                "fitted_on": "standardised bin rates, written back in raw units"
            }
        },
        "feature_order": features.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
        "coefficients": coefficients,
        "intercept": intercept,
        "features": feature_json,
    }))
}

/// Upper edges of up to `bins` equal-count bins of sorted `values`, without
/// repeats and below the maximum (so the last bin is never empty).
fn quantile_edges(sorted: &[f64], bins: usize) -> Vec<f64> {
    let Some(&max) = sorted.last() else {
        return Vec::new();
    };
    let mut edges: Vec<f64> = Vec::with_capacity(bins);
    for k in 1..bins {
        let edge = sorted[k * sorted.len() / bins - 1];
        if edge < max && edges.last().is_none_or(|last| *last < edge) {
            edges.push(edge);
        }
    }
    edges
}

fn lightgbm_params(features: &[FeatureSpec], options: &TrainOptions) -> Value {
    // A string: lightgbm3 writes each parameter as `key=value` with the JSON
    // text of the value, and LightGBM reads `[1,-1]` as zeros.
    let constraints = features
        .iter()
        .map(|f| risk_direction(&f.name).map_or(0, |d| d.sign()).to_string())
        .collect::<Vec<_>>()
        .join(",");
    json!({
        "objective": "binary",
        "num_iterations": options.lightgbm_rounds,
        "learning_rate": 0.05,
        "num_leaves": 15,
        "min_data_in_leaf": 100,
        "monotone_constraints": constraints,
        "seed": options.seed % i32::MAX as u64,
        "deterministic": true,
        "force_row_wise": true,
        "num_threads": 1,
        "verbosity": -1,
    })
}

fn fit_lightgbm(
    train: &LabelledData,
    features: &[FeatureSpec],
    params: &Value,
) -> anyhow::Result<String> {
    let labels: Vec<f32> = train
        .labels
        .iter()
        .map(|&l| f32::from(u8::from(l)))
        .collect();
    let mut dataset =
        lightgbm3::Dataset::from_slice(&train.rows, &labels, features.len() as i32, true)
            .context("LightGBM refused the training data")?;
    let names: Vec<String> = features.iter().map(|f| f.name.clone()).collect();
    dataset
        .set_feature_names(&names)
        .context("LightGBM refused the feature names")?;
    let booster = lightgbm3::Booster::train(dataset, params).context("LightGBM training failed")?;
    booster
        .save_string()
        .context("LightGBM could not write its model")
}

fn manifest(
    options: &TrainOptions,
    features: &[FeatureSpec],
    data: &LabelledData,
    train: &LabelledData,
    holdout: &LabelledData,
    lightgbm_params: Value,
) -> Manifest {
    let semi_synthetic = data.true_probabilities.is_some();
    let file_name = data
        .path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let rate = |part: &LabelledData| part.defaults() as f64 / part.len() as f64;
    Manifest {
        id: options.id.clone(),
        version: options.version.clone(),
        kind: options.kind,
        description: format!(
            "Trained by accunode model train on {file_name} ({} rows{}): a binned logistic and a monotone LightGBM, equally weighted.",
            data.len(),
            if semi_synthetic {
                ", SEMI-SYNTHETIC: real ratios, labels drawn from a known probability function"
            } else {
                ""
            }
        ),
        features: features.to_vec(),
        components: vec![
            ComponentSpec {
                name: "binned_logistic".into(),
                kind: ComponentKind::BinnedLogistic,
                file: BINNED_FILE.into(),
                weight: 1.0,
                fill_missing: None,
                rationale: Some(
                    "The original's kind of model, refitted: quantile bins, a Missing bin, logistic regression on bin default rates. Equal weight: no outcome data beyond this file says either component is better; the holdout metrics of each are below."
                        .into(),
                ),
            },
            ComponentSpec {
                name: "lightgbm".into(),
                kind: ComponentKind::Lightgbm,
                file: LIGHTGBM_FILE.into(),
                weight: 1.0,
                fill_missing: None,
                rationale: Some(
                    "Gradient-boosted trees on the raw ratios, monotone in each ratio's risk direction, Missing routed by LightGBM. Equal weight, as for the binned logistic."
                        .into(),
                ),
            },
        ],
        risk_thresholds: RiskThresholds {
            critical_above_pct: 15.0,
            high_from_pct: 5.0,
            medium_from_pct: 2.0,
        },
        provenance: json!({
            "trained_by": format!("accunode model train {}", env!("CARGO_PKG_VERSION")),
            "data": {
                "file": file_name,
                "sha256": data.sha256,
                "rows": data.len(),
                "defaults": data.defaults(),
                "default_rate": rate(data),
                "semi_synthetic": semi_synthetic,
            },
            "split": {
                "seed": options.seed,
                "holdout_fraction": options.holdout,
                "train_rows": train.len(),
                "train_default_rate": rate(train),
                "holdout_rows": holdout.len(),
                "holdout_default_rate": rate(holdout),
            },
            "binned_logistic": { "bins": options.bins, "prior_rows": PRIOR_ROWS, "alpha": LOGISTIC_ALPHA },
            "lightgbm": lightgbm_params,
        }),
        metrics: None,
        deviations: Vec::new(),
    }
}

fn partial_dir(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    out.with_file_name(name)
}

fn pretty<T: serde::Serialize>(value: &T) -> anyhow::Result<String> {
    let mut text = serde_json::to_string_pretty(value).context("cannot serialise")?;
    text.push('\n');
    Ok(text)
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}
