//! The `binned_logistic` component: the original AccuNode rule, read from the
//! original's JSON files (copied unchanged into `models/accunode-v1-*/`) as they are.
//!
//! Each ratio is replaced by the default rate of its bin (`low < x <= high`), a
//! missing ratio by the feature's Missing rate, and
//! `p = 1 / (1 + exp(-(Σ coefficient_i · rate_i + intercept)))`.
//!
//! Every finite value has a bin, whether or not it is inside the range the
//! bundle was fitted on: a value at or below a finite first lower bound takes
//! the first bin's rate, as in the original (so `0`, or `-40` from negative
//! equity, for long-term debt / total capital takes the first bin), and a value
//! above a finite last upper bound takes the last bin's rate. The latter is one
//! deliberate difference from the original, which jumped to the first bin's (so
//! `ebit_to_interest_expense = 1e8` scored as the worst coverage).

use serde::Deserialize;

/// A bin bound as the original JSON writes it: a number, or `"-inf"` / `"inf"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Bound {
    Number(f64),
    Text(String),
}

impl Bound {
    fn value(&self) -> Result<f64, String> {
        match self {
            Self::Number(value) => Ok(*value),
            Self::Text(text) if text == "inf" => Ok(f64::INFINITY),
            Self::Text(text) if text == "-inf" => Ok(f64::NEG_INFINITY),
            Self::Text(text) => Err(format!(
                "bound {text:?} is neither a number nor \"inf\"/\"-inf\""
            )),
        }
    }
}

#[derive(Debug, Deserialize)]
struct OriginalBin {
    low: Bound,
    high: Bound,
    rate: f64,
}

#[derive(Debug, Deserialize)]
struct OriginalFeature {
    name: String,
    coefficient: f64,
    bins: Vec<OriginalBin>,
    missing_rate: f64,
}

/// The fields of the original JSON this component uses; the others (source,
/// probability range, LightGBM block) are documentation.
#[derive(Debug, Deserialize)]
pub struct OriginalModel {
    feature_order: Vec<String>,
    coefficients: Vec<f64>,
    intercept: f64,
    features: Vec<OriginalFeature>,
}

/// One feature, precomputed for scoring: each bin's upper bound and
/// `coefficient · rate`, so a row costs one search and one add per feature.
#[derive(Debug)]
struct Feature {
    name: String,
    upper_bounds: Vec<f64>,
    bin_terms: Vec<f64>,
    missing_term: f64,
}

impl Feature {
    fn term(&self, value: f64) -> f64 {
        if value.is_nan() {
            return self.missing_term;
        }
        // The first bin whose upper bound is >= value: contiguous bins make that
        // the bin with `low < value <= high`, and the first bin for any value at
        // or below its lower bound. Past the last bound, the last bin.
        let index = self.upper_bounds.partition_point(|high| *high < value);
        self.bin_terms[index.min(self.bin_terms.len() - 1)]
    }
}

#[derive(Debug)]
pub struct BinnedLogistic {
    features: Vec<Feature>,
    intercept: f64,
}

impl BinnedLogistic {
    /// Builds the component, checking that the file is self-consistent: feature
    /// order, coefficients, and contiguous, rising bins with rates in [0, 1].
    pub fn from_original_json(model: &OriginalModel) -> Result<Self, String> {
        let names: Vec<&str> = model.features.iter().map(|f| f.name.as_str()).collect();
        if model.feature_order != names {
            return Err(format!(
                "feature_order {:?} differs from the features listed {names:?}",
                model.feature_order
            ));
        }
        if model.coefficients.len() != model.features.len() {
            return Err(format!(
                "{} coefficients for {} features",
                model.coefficients.len(),
                model.features.len()
            ));
        }
        let mut features = Vec::with_capacity(model.features.len());
        for (feature, coefficient) in model.features.iter().zip(&model.coefficients) {
            if feature.coefficient.to_bits() != coefficient.to_bits() {
                return Err(format!(
                    "{}: coefficient {} differs from coefficients[] {coefficient}",
                    feature.name, feature.coefficient
                ));
            }
            if feature.bins.is_empty() {
                return Err(format!("{}: no bins", feature.name));
            }
            let mut upper_bounds = Vec::with_capacity(feature.bins.len());
            let mut previous_high = None;
            for bin in &feature.bins {
                let (low, high) = (bin.low.value()?, bin.high.value()?);
                if low >= high {
                    return Err(format!("{}: bin ({low}, {high}] is empty", feature.name));
                }
                if previous_high.is_some_and(|previous: f64| previous != low) {
                    return Err(format!(
                        "{}: bins are not contiguous at {low}",
                        feature.name
                    ));
                }
                if !(0.0..=1.0).contains(&bin.rate) {
                    return Err(format!(
                        "{}: rate {} is not in [0, 1]",
                        feature.name, bin.rate
                    ));
                }
                previous_high = Some(high);
                upper_bounds.push(high);
            }
            if !(0.0..=1.0).contains(&feature.missing_rate) {
                return Err(format!("{}: missing_rate is not in [0, 1]", feature.name));
            }
            features.push(Feature {
                name: feature.name.clone(),
                upper_bounds,
                bin_terms: feature
                    .bins
                    .iter()
                    .map(|bin| coefficient * bin.rate)
                    .collect(),
                missing_term: coefficient * feature.missing_rate,
            });
        }
        Ok(Self {
            features,
            intercept: model.intercept,
        })
    }

    pub fn feature_names(&self) -> Vec<&str> {
        self.features.iter().map(|f| f.name.as_str()).collect()
    }

    /// The probability of default for one row in feature order (`NaN` = missing).
    /// The caller has checked the row's length.
    pub fn probability(&self, row: &[f64]) -> f64 {
        let linear: f64 = self
            .features
            .iter()
            .zip(row)
            .map(|(feature, value)| feature.term(*value))
            .sum();
        1.0 / (1.0 + (-(linear + self.intercept)).exp())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One feature with finite outer edges: (0, 10] 0.1, (10, 20] 0.2,
    /// (20, 30] 0.3, Missing 0.5; coefficient 1, intercept 0.
    fn bounded() -> BinnedLogistic {
        let json = serde_json::json!({
            "feature_order": ["ratio"],
            "coefficients": [1.0],
            "intercept": 0.0,
            "features": [{
                "name": "ratio",
                "coefficient": 1.0,
                "missing_rate": 0.5,
                "bins": [
                    { "low": 0.0, "high": 10.0, "rate": 0.1 },
                    { "low": 10.0, "high": 20.0, "rate": 0.2 },
                    { "low": 20.0, "high": 30.0, "rate": 0.3 },
                ],
            }],
        });
        BinnedLogistic::from_original_json(&serde_json::from_value(json).unwrap()).unwrap()
    }

    fn logistic(rate: f64) -> f64 {
        1.0 / (1.0 + (-rate).exp())
    }

    #[test]
    fn values_beyond_finite_outer_edges_take_the_first_and_last_bins() {
        let model = bounded();
        let p = |value: f64| model.probability(&[value]);
        // Inside the bins, each its own rate.
        assert_eq!(p(5.0), logistic(0.1));
        assert_eq!(p(15.0), logistic(0.2));
        assert_eq!(p(30.0), logistic(0.3));
        assert_eq!(p(f64::NAN), logistic(0.5));
        // At and below the first lower edge, far below too: the first bin.
        for below in [0.0, -0.001, -40.0, -1e12, f64::MIN] {
            assert_eq!(p(below), logistic(0.1), "{below}");
        }
        // Above the last upper edge, far above too: the last bin.
        for above in [30.001, 113.5, 1e12, f64::MAX] {
            assert_eq!(p(above), logistic(0.3), "{above}");
        }
    }
}
