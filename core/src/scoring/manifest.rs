//! `manifest.json`: what a bundle is, which features it takes in which order
//! and the ranges they were fitted on, which components it combines with which
//! weights, and where it came from.

use serde::{Deserialize, Serialize};

use super::RiskLevel;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    Annual,
    Quarterly,
}

impl ModelKind {
    /// The kind as the manifests, the API and the database spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Annual => "annual",
            Self::Quarterly => "quarterly",
        }
    }
}

impl std::fmt::Display for ModelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Reads a kind as [`ModelKind::as_str`] writes it.
impl std::str::FromStr for ModelKind {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        [Self::Annual, Self::Quarterly]
            .into_iter()
            .find(|kind| kind.as_str() == text)
            .ok_or_else(|| format!("expected annual or quarterly, got {text:?}"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ComponentKind {
    BinnedLogistic,
    Lightgbm,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub id: String,
    pub version: String,
    pub kind: ModelKind,
    pub description: String,
    pub features: Vec<FeatureSpec>,
    pub components: Vec<ComponentSpec>,
    pub risk_thresholds: RiskThresholds,
    /// Where the parameters came from (free-form, recorded as given).
    pub provenance: serde_json::Value,
    /// Holdout metrics of training, when the bundle was trained.
    #[serde(default)]
    pub metrics: Option<serde_json::Value>,
    /// Differences from the system the bundle reproduces, one sentence each.
    #[serde(default)]
    pub deviations: Vec<String>,
}

/// One input ratio: its name, unit and fitted range.
///
/// `min` / `max` (inclusive; `null` = open) are the range the model was fitted
/// on: described, not enforced. Any finite value is scored; one outside the
/// range carries a [`RangeWarning`](super::RangeWarning).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureSpec {
    pub name: String,
    pub unit: String,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

impl FeatureSpec {
    /// Whether `value` lies in the fitted range (never for `NaN`). Scoring
    /// does not require it (it only warns); training data does.
    pub fn accepts(&self, value: f64) -> bool {
        !value.is_nan()
            && self.min.is_none_or(|min| value >= min)
            && self.max.is_none_or(|max| value <= max)
    }

    /// The fitted range as people read it: `between 0 and 100`, `at least 0`,
    /// `a number`.
    pub fn range_text(&self) -> String {
        match (self.min, self.max) {
            (Some(min), Some(max)) => format!("between {min} and {max}"),
            (Some(min), None) => format!("at least {min}"),
            (None, Some(max)) => format!("at most {max}"),
            (None, None) => "a number".to_owned(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentSpec {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ComponentKind,
    /// Relative to the bundle folder.
    pub file: String,
    pub weight: f64,
    /// `lightgbm` only: the value a missing ratio is replaced with (the
    /// original filled with 0); absent, LightGBM's own NaN handling applies.
    #[serde(default)]
    pub fill_missing: Option<f64>,
    /// Why this component has this weight.
    #[serde(default)]
    pub rationale: Option<String>,
}

/// Risk levels from the probability in percent, as the original compares them:
/// `> critical_above_pct` CRITICAL, `>= high_from_pct` HIGH, `>= medium_from_pct` MEDIUM.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RiskThresholds {
    pub critical_above_pct: f64,
    pub high_from_pct: f64,
    pub medium_from_pct: f64,
}

impl RiskThresholds {
    pub fn level(&self, probability: f64) -> RiskLevel {
        // The original multiplies first; comparing `p` with `threshold / 100`
        // would round differently at the edges.
        let pct = probability * 100.0;
        if pct > self.critical_above_pct {
            RiskLevel::Critical
        } else if pct >= self.high_from_pct {
            RiskLevel::High
        } else if pct >= self.medium_from_pct {
            RiskLevel::Medium
        } else {
            RiskLevel::Low
        }
    }
}

impl Manifest {
    /// Checks what serde cannot: non-empty, unique names, sane weights and ranges.
    pub fn validate(&self) -> Result<(), String> {
        if self.id.trim().is_empty() || self.version.trim().is_empty() {
            return Err("id and version must not be empty".into());
        }
        if self.features.is_empty() {
            return Err("a bundle needs at least one feature".into());
        }
        if self.components.is_empty() {
            return Err("a bundle needs at least one component".into());
        }
        for (index, feature) in self.features.iter().enumerate() {
            if self.features[..index]
                .iter()
                .any(|f| f.name == feature.name)
            {
                return Err(format!("feature {} is listed twice", feature.name));
            }
            if let (Some(min), Some(max)) = (feature.min, feature.max)
                && min > max
            {
                return Err(format!(
                    "feature {}: min {min} is above max {max}",
                    feature.name
                ));
            }
        }
        for (index, component) in self.components.iter().enumerate() {
            if self.components[..index]
                .iter()
                .any(|c| c.name == component.name)
            {
                return Err(format!("component {} is listed twice", component.name));
            }
            if !(component.weight.is_finite() && component.weight > 0.0) {
                return Err(format!(
                    "component {}: weight must be a positive number, got {}",
                    component.name, component.weight
                ));
            }
        }
        let t = &self.risk_thresholds;
        if !(t.medium_from_pct <= t.high_from_pct && t.high_from_pct <= t.critical_above_pct) {
            return Err("risk thresholds must rise: medium <= high <= critical".into());
        }
        Ok(())
    }
}
