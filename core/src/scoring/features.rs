//! The standard inputs of each model kind: names, units, fitted ranges and the
//! direction in which each ratio moves default risk.
//!
//! Bundles list their own features (in `manifest.json`); these are the ones the
//! API takes and `accunode model train` fits, and the shipped v1 bundles use
//! exactly them (a test checks it). Ranges are those of the original API's
//! request schema: the range the models were fitted on, described (a value
//! outside is scored with a warning), not enforced.

use super::manifest::{FeatureSpec, ModelKind};

/// Whether more of a ratio means more risk or less.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RiskDirection {
    /// More is riskier (debt ratios).
    Up,
    /// More is safer (margins, returns, interest coverage).
    Down,
}

impl RiskDirection {
    /// `+1` or `-1`: the sign a monotone model of this ratio must have.
    pub fn sign(self) -> i8 {
        match self {
            Self::Up => 1,
            Self::Down => -1,
        }
    }
}

fn feature(name: &str, unit: &str, min: Option<f64>, max: Option<f64>) -> FeatureSpec {
    FeatureSpec {
        name: name.to_owned(),
        unit: unit.to_owned(),
        min,
        max,
    }
}

/// The features of `kind`, in the order the original models take them.
pub fn standard_features(kind: ModelKind) -> Vec<FeatureSpec> {
    match kind {
        ModelKind::Annual => vec![
            feature(
                "long_term_debt_to_total_capital",
                "percent",
                Some(0.0),
                Some(100.0),
            ),
            feature("total_debt_to_ebitda", "multiple", Some(0.0), None),
            feature("net_income_margin", "percent", Some(-100.0), Some(100.0)),
            feature("ebit_to_interest_expense", "multiple", Some(0.0), None),
            feature("return_on_assets", "percent", Some(-100.0), Some(100.0)),
        ],
        ModelKind::Quarterly => vec![
            feature("total_debt_to_ebitda", "multiple", None, None),
            feature("sga_margin", "percent", None, None),
            feature(
                "long_term_debt_to_total_capital",
                "percent",
                Some(0.0),
                Some(100.0),
            ),
            feature("return_on_capital", "percent", None, None),
        ],
    }
}

/// The direction of a standard ratio; `None` for a name that is not one.
///
/// SG&A margin is `Down`: in the original's own data (its quarterly bins) the
/// default rate falls from 2.9 % to 0.4 % as SG&A margin rises, and its LightGBM
/// booster was trained with the same constraint (`1 -1 1 -1`). Companies that
/// can afford a high SG&A share tend to have high gross margins.
pub fn risk_direction(feature: &str) -> Option<RiskDirection> {
    match feature {
        "long_term_debt_to_total_capital" | "total_debt_to_ebitda" => Some(RiskDirection::Up),
        "sga_margin"
        | "net_income_margin"
        | "ebit_to_interest_expense"
        | "return_on_assets"
        | "return_on_capital" => Some(RiskDirection::Down),
        _ => None,
    }
}
