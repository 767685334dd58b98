//! Default-probability scoring: model bundles, their components, risk levels.
//!
//! A [`Bundle`] is a folder with a `manifest.json` and component files. It is
//! loaded once, is immutable and `Send + Sync`, so one `Arc<Bundle>` serves every
//! thread. Rows are slices of `f64` in the bundle's feature order, with `NaN`
//! for a missing ratio (scored with the feature's Missing rate).
//!
//! Every finite value is scored. A feature's `min` / `max` in the manifest is
//! the range the model was fitted on, described, not enforced: a value outside
//! it is scored all the same (the distressed companies a default model exists
//! for have such values: negative equity puts debt / total capital above 100 %)
//! and carries a [`RangeWarning`] ([`Bundle::range_warnings`]). Only a row of
//! the wrong length or with an infinite value is refused ([`Bundle::validate`]).
//!
//! Component kinds: `binned_logistic`, the original system's rule read from its
//! JSON files as they are (see [`binned_logistic`]), and `lightgbm`, a LightGBM
//! text model (see [`lightgbm`]). An ensemble is the weighted mean of its
//! components' probabilities, with the weights of the manifest.

pub mod binned_logistic;
pub mod csv_batch;
pub mod features;
pub mod input;
pub mod lightgbm;
pub mod manifest;
pub mod registry;
pub mod store;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use self::binned_logistic::BinnedLogistic;
use self::lightgbm::LightGbm;
use self::manifest::ComponentSpec;
pub use self::manifest::{ComponentKind, FeatureSpec, Manifest, ModelKind, RiskThresholds};

/// The four risk levels of the original system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum RiskLevel {
    Low,
    Medium,
    High,
    Critical,
}

impl RiskLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "LOW",
            Self::Medium => "MEDIUM",
            Self::High => "HIGH",
            Self::Critical => "CRITICAL",
        }
    }
}

/// Reads a level as [`RiskLevel::as_str`] writes it (how predictions store it).
impl std::str::FromStr for RiskLevel {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        [Self::Low, Self::Medium, Self::High, Self::Critical]
            .into_iter()
            .find(|level| level.as_str() == text)
            .ok_or_else(|| format!("expected LOW, MEDIUM, HIGH or CRITICAL, got {text:?}"))
    }
}

/// One row's result.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Score {
    pub probability: f64,
    pub risk_level: RiskLevel,
    pub confidence: f64,
}

/// The original's confidence: `max(|p - 0.5| * 2, 0.5)`.
pub fn confidence(probability: f64) -> f64 {
    ((probability - 0.5).abs() * 2.0).max(0.5)
}

/// Why a bundle could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid {what}")]
    Parse {
        path: PathBuf,
        what: &'static str,
        source: serde_json::Error,
    },
    #[error("{path}: {problem}")]
    Invalid { path: PathBuf, problem: String },
}

/// Why a row could not be scored.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScoringError {
    #[error("expected {expected} features, got {got}")]
    WrongFeatureCount { expected: usize, got: usize },
    /// `±inf`; a missing ratio is `NaN`, never refused.
    #[error("{feature} must be a finite number, got {value}")]
    NotFinite { feature: String, value: f64 },
    /// The model itself failed (a LightGBM error): not the row's fault.
    #[error("component {component} failed: {message}")]
    Component { component: String, message: String },
}

/// A present value outside the range its feature was fitted on (the manifest's
/// `min` / `max`): the row is scored, and the answer says so. Displayed as
/// `outside_fitted_range: long_term_debt_to_total_capital=113.5 (fitted 0–100)`,
/// or `(fitted at least 0)` / `(fitted at most 5)` for a one-sided range.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RangeWarning {
    pub feature: String,
    pub value: f64,
    /// The fitted range's bounds (inclusive); `None` is open.
    pub min: Option<f64>,
    pub max: Option<f64>,
}

impl RangeWarning {
    /// The code every warning's text starts with.
    pub const CODE: &'static str = "outside_fitted_range";
}

impl fmt::Display for RangeWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}={} (fitted ",
            Self::CODE,
            self.feature,
            self.value
        )?;
        match (self.min, self.max) {
            (Some(min), Some(max)) => write!(f, "{min}–{max})"),
            (Some(min), None) => write!(f, "at least {min})"),
            (None, Some(max)) => write!(f, "at most {max})"),
            // Not produced: an open range holds every finite value.
            (None, None) => f.write_str("unbounded)"),
        }
    }
}

/// Why a batch was not scored.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BatchError {
    /// A row (counted from 0) is invalid; no row was scored.
    #[error("row {row}: {error}")]
    Row { row: usize, error: ScoringError },
    /// A component failed on the batch as a whole.
    #[error(transparent)]
    Model(ScoringError),
}

/// A loaded component, ready to score.
#[derive(Debug)]
enum Component {
    BinnedLogistic(BinnedLogistic),
    LightGbm(LightGbm),
}

impl Component {
    /// Loads the file `spec` names and checks it takes the bundle's features.
    fn load(dir: &Path, spec: &ComponentSpec, feature_names: &[&str]) -> Result<Self, BundleError> {
        let path = dir.join(&spec.file);
        let invalid = |problem: String| BundleError::Invalid {
            path: path.clone(),
            problem,
        };
        match spec.kind {
            ComponentKind::BinnedLogistic => {
                let json = read_json(&path, "binned logistic model")?;
                let model = BinnedLogistic::from_original_json(&json).map_err(invalid)?;
                if model.feature_names() != feature_names {
                    return Err(invalid(format!(
                        "its features {:?} differ from the manifest's {feature_names:?}",
                        model.feature_names()
                    )));
                }
                Ok(Self::BinnedLogistic(model))
            }
            ComponentKind::Lightgbm => {
                let text = std::fs::read_to_string(&path).map_err(|source| BundleError::Read {
                    path: path.clone(),
                    source,
                })?;
                let model = LightGbm::from_text(text, feature_names.len(), spec.fill_missing)
                    .map_err(invalid)?;
                Ok(Self::LightGbm(model))
            }
        }
    }

    /// Writes the probability of each row of `rows` to `out[row * stride]`.
    fn probabilities(
        &self,
        rows: &[f64],
        width: usize,
        out: &mut [f64],
        stride: usize,
    ) -> Result<(), String> {
        let slots = out.iter_mut().step_by(stride);
        match self {
            Self::BinnedLogistic(model) => {
                for (row, slot) in rows.chunks_exact(width).zip(slots) {
                    *slot = model.probability(row);
                }
            }
            Self::LightGbm(model) => {
                for (p, slot) in model.probabilities(rows)?.into_iter().zip(slots) {
                    *slot = p;
                }
            }
        }
        Ok(())
    }
}

/// A loaded model bundle.
#[derive(Debug)]
pub struct Bundle {
    manifest: Manifest,
    components: Vec<(String, f64, Component)>,
    weight_total: f64,
}

/// What [`Bundle::score_batch`] writes: one score per row and, row-major, each
/// component's probability (`rows × components`).
#[derive(Debug, Default, Clone)]
pub struct BatchOutput {
    pub scores: Vec<Score>,
    pub component_probabilities: Vec<f64>,
}

impl BatchOutput {
    /// One component's probability for every row: column `component` of
    /// `component_probabilities`.
    pub fn component(&self, component: usize) -> Vec<f64> {
        let width = self.component_probabilities.len() / self.scores.len().max(1);
        self.component_probabilities
            .iter()
            .skip(component)
            .step_by(width.max(1))
            .copied()
            .collect()
    }
}

/// One row scored, with each component's probability by name.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DetailedScore {
    #[serde(flatten)]
    pub score: Score,
    pub components: Vec<(String, f64)>,
}

impl Bundle {
    /// Loads `dir/manifest.json` and the component files it names, checking that
    /// every component takes the manifest's features in the manifest's order.
    pub fn load(dir: &Path) -> Result<Self, BundleError> {
        let manifest_path = dir.join("manifest.json");
        let manifest: Manifest = read_json(&manifest_path, "bundle manifest")?;
        manifest
            .validate()
            .map_err(|problem| BundleError::Invalid {
                path: manifest_path.clone(),
                problem,
            })?;
        let feature_names: Vec<&str> = manifest.features.iter().map(|f| f.name.as_str()).collect();
        let mut components = Vec::with_capacity(manifest.components.len());
        for spec in &manifest.components {
            let component = Component::load(dir, spec, &feature_names)?;
            components.push((spec.name.clone(), spec.weight, component));
        }
        let weight_total = components.iter().map(|(_, weight, _)| weight).sum();
        Ok(Self {
            manifest,
            components,
            weight_total,
        })
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn id(&self) -> &str {
        &self.manifest.id
    }

    pub fn version(&self) -> &str {
        &self.manifest.version
    }

    pub fn feature_count(&self) -> usize {
        self.manifest.features.len()
    }

    pub fn component_names(&self) -> impl Iterator<Item = &str> {
        self.components.iter().map(|(name, _, _)| name.as_str())
    }

    /// Checks a row's length and that no value is infinite (`NaN` is Missing).
    /// A finite value outside its fitted range is valid: see
    /// [`Bundle::range_warnings`].
    pub fn validate(&self, row: &[f64]) -> Result<(), ScoringError> {
        if row.len() != self.feature_count() {
            return Err(ScoringError::WrongFeatureCount {
                expected: self.feature_count(),
                got: row.len(),
            });
        }
        for (value, feature) in row.iter().zip(&self.manifest.features) {
            if value.is_infinite() {
                return Err(ScoringError::NotFinite {
                    feature: feature.name.clone(),
                    value: *value,
                });
            }
        }
        Ok(())
    }

    /// The finite values of `row` (in feature order) that lie outside their
    /// feature's fitted range, with their features. Allocates nothing.
    fn outside_fitted_range<'a>(
        &'a self,
        row: &'a [f64],
    ) -> impl Iterator<Item = (&'a FeatureSpec, f64)> + 'a {
        self.manifest
            .features
            .iter()
            .zip(row)
            .filter(|(feature, value)| value.is_finite() && !feature.accepts(**value))
            .map(|(feature, value)| (feature, *value))
    }

    /// One warning per finite value of `row` outside its feature's fitted
    /// range, in feature order; empty for most rows (and then allocates
    /// nothing). Missing (`NaN`) and infinite values never warn: the one is
    /// scored as Missing, the other refused by [`Bundle::validate`].
    pub fn range_warnings(&self, row: &[f64]) -> Vec<RangeWarning> {
        self.outside_fitted_range(row)
            .map(|(feature, value)| RangeWarning {
                feature: feature.name.clone(),
                value,
                min: feature.min,
                max: feature.max,
            })
            .collect()
    }

    /// Whether [`Bundle::range_warnings`] would warn about `row`, without
    /// allocating: for batches, where most rows have no warning.
    pub fn has_range_warning(&self, row: &[f64]) -> bool {
        self.outside_fitted_range(row).next().is_some()
    }

    /// Scores one row (`NaN` = missing) and reports each component's probability.
    pub fn score(&self, row: &[f64]) -> Result<DetailedScore, ScoringError> {
        self.validate(row)?;
        let mut probabilities = vec![0.0; self.components.len()];
        self.score_components(row, &mut probabilities)?;
        let probability = self.combine(&probabilities);
        Ok(DetailedScore {
            score: self.finish(probability),
            components: self
                .component_names()
                .map(str::to_owned)
                .zip(probabilities)
                .collect(),
        })
    }

    /// Scores `rows` (row-major, `feature_count()` values per row) into `output`,
    /// reusing its buffers: no allocation per row, one call per component for the
    /// whole batch. Validates every row first and scores none if one is invalid
    /// (wrong length, an infinite value); rows outside the fitted ranges are
    /// scored (their warnings are [`Bundle::range_warnings`]).
    pub fn score_batch(&self, rows: &[f64], output: &mut BatchOutput) -> Result<(), BatchError> {
        let width = self.feature_count();
        if !rows.len().is_multiple_of(width) {
            return Err(BatchError::Row {
                row: rows.len() / width,
                error: ScoringError::WrongFeatureCount {
                    expected: width,
                    got: rows.len() % width,
                },
            });
        }
        for (index, row) in rows.chunks_exact(width).enumerate() {
            self.validate(row)
                .map_err(|error| BatchError::Row { row: index, error })?;
        }
        let count = rows.len() / width;
        output.component_probabilities.clear();
        output
            .component_probabilities
            .resize(count * self.components.len(), 0.0);
        self.score_components(rows, &mut output.component_probabilities)
            .map_err(BatchError::Model)?;
        output.scores.clear();
        output.scores.extend(
            output
                .component_probabilities
                .chunks_exact(self.components.len())
                .map(|probabilities| self.finish(self.combine(probabilities))),
        );
        Ok(())
    }

    /// Every component's probability for `rows`, row-major into `out`.
    fn score_components(&self, rows: &[f64], out: &mut [f64]) -> Result<(), ScoringError> {
        let stride = self.components.len();
        for (index, (name, _, component)) in self.components.iter().enumerate() {
            component
                .probabilities(rows, self.feature_count(), &mut out[index..], stride)
                .map_err(|message| ScoringError::Component {
                    component: name.clone(),
                    message,
                })?;
        }
        Ok(())
    }

    /// The weighted mean of one row's component probabilities; a single
    /// component's probability is returned as is, so v1 bundles reproduce the
    /// original exactly.
    fn combine(&self, probabilities: &[f64]) -> f64 {
        if let [only] = probabilities {
            return *only;
        }
        let weighted: f64 = probabilities
            .iter()
            .zip(&self.components)
            .map(|(p, (_, weight, _))| p * weight)
            .sum();
        weighted / self.weight_total
    }

    fn finish(&self, probability: f64) -> Score {
        Score {
            probability,
            risk_level: self.manifest.risk_thresholds.level(probability),
            confidence: confidence(probability),
        }
    }
}

fn read_json<T: serde::de::DeserializeOwned>(
    path: &Path,
    what: &'static str,
) -> Result<T, BundleError> {
    let text = std::fs::read_to_string(path).map_err(|source| BundleError::Read {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| BundleError::Parse {
        path: path.to_owned(),
        what,
        source,
    })
}
