//! The shipped v1 bundles against a transcription of the original's rule: every
//! bin, both edges of each bin, Missing for each feature, every combination of
//! bins, and the documented deviations. Also batch scoring, validation, ensemble
//! weighting and bundle loading errors.

use std::path::Path;

use accunode_core::scoring::{
    BatchError, BatchOutput, Bundle, BundleError, RangeWarning, RiskLevel, ScoringError,
};
use serde_json::Value;

use crate::support::bundle_dir;

const TOLERANCE: f64 = 1e-12;

fn original_json(id: &str) -> Value {
    let text = std::fs::read_to_string(bundle_dir(id).join("binned_logistic.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn bound(value: &Value) -> f64 {
    match value {
        Value::String(s) if s == "inf" => f64::INFINITY,
        Value::String(s) if s == "-inf" => f64::NEG_INFINITY,
        other => other.as_f64().unwrap(),
    }
}

/// A bin as the original lists it: `(low, high, rate)`.
type OriginalBin = (f64, f64, f64);

/// The original system, transcribed: first bin with `low < x <= high`, Missing
/// for NaN, the *first* bin's rate when no bin fits, sklearn's logistic.
struct Original {
    coefficients: Vec<f64>,
    intercept: f64,
    /// Per feature: (low, high, rate) bins and the Missing rate.
    features: Vec<(Vec<OriginalBin>, f64)>,
}

impl Original {
    fn new(json: &Value) -> Self {
        Self {
            coefficients: json["coefficients"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_f64().unwrap())
                .collect(),
            intercept: json["intercept"].as_f64().unwrap(),
            features: json["features"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| {
                    let bins = f["bins"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|b| {
                            (
                                bound(&b["low"]),
                                bound(&b["high"]),
                                b["rate"].as_f64().unwrap(),
                            )
                        })
                        .collect();
                    (bins, f["missing_rate"].as_f64().unwrap())
                })
                .collect(),
        }
    }

    fn binned(&self, feature: usize, x: f64) -> f64 {
        let (bins, missing_rate) = &self.features[feature];
        if x.is_nan() {
            return *missing_rate;
        }
        bins.iter()
            .find(|(low, high, _)| *low < x && x <= *high)
            .map_or(bins[0].2, |(_, _, rate)| *rate)
    }

    fn probability_of_rates(&self, rates: &[f64]) -> f64 {
        let linear: f64 = rates
            .iter()
            .zip(&self.coefficients)
            .map(|(r, c)| r * c)
            .sum();
        1.0 / (1.0 + (-(linear + self.intercept)).exp())
    }

    fn probability(&self, row: &[f64]) -> f64 {
        let rates: Vec<f64> = (0..row.len()).map(|i| self.binned(i, row[i])).collect();
        self.probability_of_rates(&rates)
    }

    fn risk_level(p: f64) -> RiskLevel {
        let pct = p * 100.0;
        if pct > 15.0 {
            RiskLevel::Critical
        } else if pct >= 5.0 {
            RiskLevel::High
        } else if pct >= 2.0 {
            RiskLevel::Medium
        } else {
            RiskLevel::Low
        }
    }

    /// Values that land in each bin: the closed upper edge, just above the open
    /// lower edge, and a point inside; infinite edges are replaced by a value
    /// inside the bin.
    fn values_in_bins(&self, feature: usize) -> Vec<Vec<f64>> {
        self.features[feature]
            .0
            .iter()
            .map(|(low, high, _)| {
                let mut values = Vec::new();
                if high.is_finite() {
                    values.push(*high);
                }
                if low.is_finite() {
                    values.push(low.next_up());
                }
                values.push(match (low.is_finite(), high.is_finite()) {
                    (true, true) => (low + high) / 2.0,
                    (true, false) => low + 1.0,
                    (false, true) => high - 1.0,
                    (false, false) => 0.0,
                });
                values
            })
            .collect()
    }
}

/// Scores `row` with the bundle and checks it against the original.
fn assert_parity(bundle: &Bundle, original: &Original, row: &[f64]) -> f64 {
    let ours = bundle.score(row).unwrap().score;
    let theirs = original.probability(row);
    assert!(
        (ours.probability - theirs).abs() <= TOLERANCE,
        "{row:?}: ours {} vs original {theirs}",
        ours.probability
    );
    assert_eq!(ours.risk_level, Original::risk_level(theirs), "{row:?}");
    let confidence = ((theirs - 0.5).abs() * 2.0).max(0.5);
    assert!((ours.confidence - confidence).abs() <= TOLERANCE, "{row:?}");
    ours.probability
}

/// Every feature's every bin edge and Missing, the others held in their first bin.
fn check_every_bin_edge_and_missing(id: &str) {
    let bundle = Bundle::load(&bundle_dir(id)).unwrap();
    let original = Original::new(&original_json(id));
    let width = original.features.len();
    let baseline: Vec<f64> = (0..width)
        .map(|f| original.values_in_bins(f)[0].last().copied().unwrap())
        .collect();
    let mut checked = 0;
    for feature in 0..width {
        for values in original.values_in_bins(feature) {
            for value in values {
                // Values outside the fitted range too (e.g. total debt / EBITDA
                // in (-1, 0)): every finite value is scored.
                let mut row = baseline.clone();
                row[feature] = value;
                assert_parity(&bundle, &original, &row);
                checked += 1;
            }
        }
        let mut row = baseline.clone();
        row[feature] = f64::NAN;
        assert_parity(&bundle, &original, &row);
        checked += 1;
    }
    assert!(checked > 4 * width, "only {checked} rows were checked");
}

#[test]
fn annual_v1_matches_the_original_at_every_bin_edge_and_for_missing() {
    check_every_bin_edge_and_missing("accunode-v1-annual");
}

#[test]
fn quarterly_v1_matches_the_original_at_every_bin_edge_and_for_missing() {
    check_every_bin_edge_and_missing("accunode-v1-quarterly");
}

/// Every combination of bins and Missing; also the README's probability range.
fn check_every_combination(id: &str, combinations: usize, min_p: f64, max_p: f64) {
    let bundle = Bundle::load(&bundle_dir(id)).unwrap();
    let original = Original::new(&original_json(id));
    let choices: Vec<Vec<f64>> = (0..original.features.len())
        .map(|f| {
            let mut values: Vec<f64> = original
                .values_in_bins(f)
                .into_iter()
                .map(|values| *values.last().unwrap())
                .collect();
            values.push(f64::NAN);
            values
        })
        .collect();
    let total: usize = choices.iter().map(Vec::len).product();
    assert_eq!(total, combinations);
    let (mut lowest, mut highest) = (f64::INFINITY, f64::NEG_INFINITY);
    let mut rows = Vec::with_capacity(total * choices.len());
    for mut index in 0..total {
        for values in &choices {
            rows.push(values[index % values.len()]);
            index /= values.len();
        }
    }
    for row in rows.chunks_exact(choices.len()) {
        let p = assert_parity(&bundle, &original, row);
        lowest = lowest.min(p);
        highest = highest.max(p);
    }
    assert!((lowest - min_p).abs() <= TOLERANCE, "min {lowest}");
    assert!((highest - max_p).abs() <= TOLERANCE, "max {highest}");

    // The batch path gives the same numbers, bit for bit.
    let mut output = BatchOutput::default();
    bundle.score_batch(&rows, &mut output).unwrap();
    assert_eq!(output.scores.len(), total);
    for (row, score) in rows.chunks_exact(choices.len()).zip(&output.scores) {
        assert_eq!(bundle.score(row).unwrap().score, *score);
    }
    assert_eq!(output.component_probabilities.len(), total);
}

#[test]
fn annual_v1_every_combination_of_bins_and_missing() {
    check_every_combination(
        "accunode-v1-annual",
        19_404,
        0.01913703808419225,
        0.04124789011485372,
    );
}

#[test]
fn quarterly_v1_every_combination_of_bins_and_missing() {
    check_every_combination(
        "accunode-v1-quarterly",
        864,
        0.014074768266166118,
        0.016567914621386525,
    );
}

#[test]
fn above_the_last_bin_takes_the_last_bins_rate_not_the_first() {
    let id = "accunode-v1-annual";
    let bundle = Bundle::load(&bundle_dir(id)).unwrap();
    let original = Original::new(&original_json(id));
    // ebit_to_interest_expense: the last bin ends at 275304; real rows hold 1e8 sentinels.
    let row = [20.0, 1.0, 5.0, 100_000_000.0, 5.0];
    let ours = bundle.score(&row).unwrap().score.probability;
    let last_bin = [20.0, 1.0, 5.0, 275_304.0, 5.0];
    assert!((ours - original.probability(&last_bin)).abs() <= TOLERANCE);
    assert!(
        (ours - original.probability(&row)).abs() > 1e-4,
        "the original's first-bin fallback should differ"
    );

    // 0 for long-term debt / total capital sits on the first bin's open lower
    // edge: it takes the first bin, as the original's fallback also did.
    let zero = [0.0, 1.0, 5.0, 10.0, 5.0];
    let first_bin = [16.0, 1.0, 5.0, 10.0, 5.0];
    let p = bundle.score(&zero).unwrap().score.probability;
    assert!((p - original.probability(&first_bin)).abs() <= TOLERANCE);
}

#[test]
fn risk_levels_compare_the_percentage_as_the_original_does() {
    let thresholds = Bundle::load(&bundle_dir("accunode-v1-annual"))
        .unwrap()
        .manifest()
        .risk_thresholds;
    for (p, level) in [
        (0.0, RiskLevel::Low),
        (0.019_999_999, RiskLevel::Low),
        (0.02, RiskLevel::Medium),
        (0.049_999, RiskLevel::Medium),
        (0.05, RiskLevel::High),
        (0.149_999, RiskLevel::High),
        // CRITICAL is strictly above 15 %.
        (0.15, RiskLevel::High),
        (0.150_000_000_001, RiskLevel::Critical),
        (0.9, RiskLevel::Critical),
    ] {
        assert_eq!(thresholds.level(p), level, "p = {p}");
        assert_eq!(thresholds.level(p), Original::risk_level(p), "p = {p}");
    }
    assert_eq!(accunode_core::scoring::confidence(0.02), 0.96);
    assert_eq!(accunode_core::scoring::confidence(0.4), 0.5);
}

#[test]
fn rows_of_the_wrong_width_or_with_an_infinite_value_are_typed_errors() {
    let bundle = Bundle::load(&bundle_dir("accunode-v1-annual")).unwrap();
    assert_eq!(
        bundle.score(&[1.0, 2.0]).unwrap_err(),
        ScoringError::WrongFeatureCount {
            expected: 5,
            got: 2
        }
    );
    for infinite in [f64::INFINITY, f64::NEG_INFINITY] {
        assert_eq!(
            bundle.score(&[50.0, 1.0, 1.0, 1.0, infinite]).unwrap_err(),
            ScoringError::NotFinite {
                feature: "return_on_assets".into(),
                value: infinite
            }
        );
    }
    // Infinite even where the fitted range is open above.
    let error = bundle
        .score(&[50.0, f64::INFINITY, 1.0, 1.0, 1.0])
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "total_debt_to_ebitda must be a finite number, got inf"
    );

    let mut output = BatchOutput::default();
    let rows = [50.0, 1.0, 1.0, 1.0, 1.0, 50.0, 1.0, 1.0, 1.0, f64::INFINITY];
    let error = bundle.score_batch(&rows, &mut output).unwrap_err();
    assert!(matches!(error, BatchError::Row { row: 1, .. }), "{error}");
    assert_eq!(
        error.to_string(),
        "row 1: return_on_assets must be a finite number, got inf"
    );
    let error = bundle.score_batch(&rows[..7], &mut output).unwrap_err();
    assert_eq!(
        error,
        BatchError::Row {
            row: 1,
            error: ScoringError::WrongFeatureCount {
                expected: 5,
                got: 2
            }
        }
    );
}

fn warning_texts(bundle: &Bundle, row: &[f64]) -> Vec<String> {
    let warnings = bundle.range_warnings(row);
    assert_eq!(
        bundle.has_range_warning(row),
        !warnings.is_empty(),
        "{row:?}"
    );
    warnings.iter().map(ToString::to_string).collect()
}

#[test]
fn values_outside_the_fitted_range_are_scored_by_the_outer_bins_with_a_warning_each() {
    let id = "accunode-v1-annual";
    let bundle = Bundle::load(&bundle_dir(id)).unwrap();
    let original = Original::new(&original_json(id));

    // Negative equity puts long-term debt / total capital above 100 %: its
    // last bin runs to +inf, so the original scored it too.
    let distressed = [113.5, 2.5, 8.0, 6.0, 5.0];
    let scored = bundle.score(&distressed).unwrap();
    assert!((scored.score.probability - original.probability(&distressed)).abs() <= TOLERANCE);
    assert_eq!(
        bundle.range_warnings(&distressed),
        [RangeWarning {
            feature: "long_term_debt_to_total_capital".into(),
            value: 113.5,
            min: Some(0.0),
            max: Some(100.0),
        }]
    );
    assert_eq!(
        warning_texts(&bundle, &distressed),
        ["outside_fitted_range: long_term_debt_to_total_capital=113.5 (fitted 0–100)"]
    );

    // Far below: a value below a finite first edge (ebit_to_interest_expense
    // starts at 0.007, total_debt_to_ebitda at -1) takes the first bin, as a
    // value inside the first bin does.
    let below = [40.0, -3.2, -150.0, -5.0, -1e9];
    let first_bins = [40.0, 1.0, -1.0, 1.0, -2.0];
    assert_eq!(
        bundle.score(&below).unwrap(),
        bundle.score(&first_bins).unwrap()
    );
    assert_eq!(
        warning_texts(&bundle, &below),
        [
            "outside_fitted_range: total_debt_to_ebitda=-3.2 (fitted at least 0)",
            "outside_fitted_range: net_income_margin=-150 (fitted -100–100)",
            "outside_fitted_range: ebit_to_interest_expense=-5 (fitted at least 0)",
            "outside_fitted_range: return_on_assets=-1000000000 (fitted -100–100)",
        ]
    );
    assert!(warning_texts(&bundle, &first_bins).is_empty());

    // Far above: past a finite last edge (ebit_to_interest_expense ends at
    // 275304) the last bin, as a value inside the last bin.
    let above = [1e6, 1e9, 1e4, 1e12, 1e4];
    let last_bins = [70.0, 6.0, 9.0, 100.0, 12.0];
    assert_eq!(
        bundle.score(&above).unwrap(),
        bundle.score(&last_bins).unwrap()
    );
    assert_eq!(
        warning_texts(&bundle, &above),
        [
            "outside_fitted_range: long_term_debt_to_total_capital=1000000 (fitted 0–100)",
            "outside_fitted_range: net_income_margin=10000 (fitted -100–100)",
            "outside_fitted_range: return_on_assets=10000 (fitted -100–100)",
        ]
    );

    // The bounds are inclusive, and Missing never warns.
    assert!(warning_texts(&bundle, &[0.0, 0.0, -100.0, 0.0, 100.0]).is_empty());
    assert!(warning_texts(&bundle, &[f64::NAN; 5]).is_empty());
    assert_eq!(
        warning_texts(&bundle, &[100f64.next_up(), 0.0, 0.0, 0.0, 0.0]).len(),
        1
    );

    // The batch path scores such rows, bit for bit as one by one.
    let rows: Vec<f64> = [distressed, below, above].concat();
    let mut output = BatchOutput::default();
    bundle.score_batch(&rows, &mut output).unwrap();
    for (row, score) in rows.chunks_exact(5).zip(&output.scores) {
        assert_eq!(bundle.score(row).unwrap().score, *score);
    }

    // A one-sided range open below (no shipped feature has one).
    let at_most = RangeWarning {
        feature: "x".into(),
        value: 7.5,
        min: None,
        max: Some(5.0),
    };
    assert_eq!(
        at_most.to_string(),
        "outside_fitted_range: x=7.5 (fitted at most 5)"
    );
}

#[test]
fn quarterly_and_lightgbm_bundles_score_values_outside_the_fitted_range_too() {
    // Quarterly: only long-term debt / total capital has a fitted range.
    let quarterly = Bundle::load(&bundle_dir("accunode-v1-quarterly")).unwrap();
    let row = [-12.0, -50.0, -5.0, -300.0];
    assert!(quarterly.score(&row).is_ok());
    assert_eq!(
        warning_texts(&quarterly, &row),
        ["outside_fitted_range: long_term_debt_to_total_capital=-5 (fitted 0–100)"]
    );

    // LightGBM takes any finite value.
    for id in ["accunode-ensemble-annual", "accunode-ensemble-quarterly"] {
        let bundle = Bundle::load(&bundle_dir(id)).unwrap();
        let rows: Vec<f64> = match bundle.feature_count() {
            5 => [
                [113.5, -3.2, -150.0, -5.0, -120.0],
                [1e6, 1e9, 1e4, 1e12, 1e4],
            ]
            .concat(),
            _ => [[-12.0, -50.0, -5.0, -300.0], [1e9, 1e4, 1e6, 1e4]].concat(),
        };
        let mut output = BatchOutput::default();
        bundle.score_batch(&rows, &mut output).unwrap();
        for (row, score) in rows
            .chunks_exact(bundle.feature_count())
            .zip(&output.scores)
        {
            assert!(!warning_texts(&bundle, row).is_empty(), "{id} {row:?}");
            assert!(score.probability > 0.0 && score.probability < 1.0, "{id}");
            assert_eq!(bundle.score(row).unwrap().score, *score, "{id} {row:?}");
        }
    }
}

/// Writes a bundle of two annual components with different intercepts.
fn write_ensemble(dir: &Path, weights: (f64, f64)) {
    let mut shifted = original_json("accunode-v1-annual");
    shifted["intercept"] = serde_json::json!(-2.5);
    std::fs::write(
        dir.join("a.json"),
        original_json("accunode-v1-annual").to_string(),
    )
    .unwrap();
    std::fs::write(dir.join("b.json"), shifted.to_string()).unwrap();
    let mut manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(bundle_dir("accunode-v1-annual").join("manifest.json")).unwrap(),
    )
    .unwrap();
    manifest["id"] = serde_json::json!("test-ensemble");
    manifest["components"] = serde_json::json!([
        { "name": "a", "type": "binned_logistic", "file": "a.json", "weight": weights.0 },
        { "name": "b", "type": "binned_logistic", "file": "b.json", "weight": weights.1 },
    ]);
    std::fs::write(dir.join("manifest.json"), manifest.to_string()).unwrap();
}

#[test]
fn an_ensemble_is_the_weighted_mean_of_its_components() {
    let dir = tempfile::tempdir().unwrap();
    write_ensemble(dir.path(), (3.0, 1.0));
    let bundle = Bundle::load(dir.path()).unwrap();
    let row = [40.0, 2.0, 3.0, 5.0, 4.0];
    let scored = bundle.score(&row).unwrap();
    let names: Vec<&str> = scored
        .components
        .iter()
        .map(|(name, _)| name.as_str())
        .collect();
    assert_eq!(names, ["a", "b"]);
    let (a, b) = (scored.components[0].1, scored.components[1].1);
    assert!(b > a, "the shifted intercept raises the probability");
    assert!((scored.score.probability - (3.0 * a + b) / 4.0).abs() <= 1e-15);

    let mut output = BatchOutput::default();
    bundle.score_batch(&row, &mut output).unwrap();
    assert_eq!(output.component_probabilities, [a, b]);
    assert_eq!(output.scores[0], scored.score);
}

#[test]
fn broken_bundles_are_refused_with_the_file_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    write_ensemble(dir.path(), (1.0, 0.0));
    let error = Bundle::load(dir.path()).unwrap_err();
    assert!(
        error
            .to_string()
            .ends_with("component b: weight must be a positive number, got 0"),
        "{error}"
    );

    write_ensemble(dir.path(), (1.0, 1.0));
    let mut component = original_json("accunode-v1-annual");
    component["features"][1]["bins"][2]["low"] = serde_json::json!(2.5);
    std::fs::write(dir.path().join("b.json"), component.to_string()).unwrap();
    let error = Bundle::load(dir.path()).unwrap_err();
    assert!(matches!(error, BundleError::Invalid { .. }), "{error}");
    assert!(
        error
            .to_string()
            .contains("b.json: total_debt_to_ebitda: bins are not contiguous"),
        "{error}"
    );

    std::fs::write(dir.path().join("b.json"), "{ not json").unwrap();
    let error = Bundle::load(dir.path()).unwrap_err();
    assert!(
        error
            .to_string()
            .ends_with("b.json is not a valid binned logistic model"),
        "{error}"
    );

    let quarterly = original_json("accunode-v1-quarterly");
    std::fs::write(dir.path().join("b.json"), quarterly.to_string()).unwrap();
    let error = Bundle::load(dir.path()).unwrap_err();
    assert!(
        error.to_string().contains("differ from the manifest's"),
        "{error}"
    );

    let error = Bundle::load(&dir.path().join("missing")).unwrap_err();
    assert!(matches!(error, BundleError::Read { .. }), "{error}");
}

#[test]
fn a_bundle_is_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Bundle>();
}

#[test]
fn shipped_bundles_take_the_standard_features_of_their_kind() {
    use accunode_core::scoring::features::{risk_direction, standard_features};
    for id in [
        "accunode-v1-annual",
        "accunode-v1-quarterly",
        "accunode-v1-quarterly-lightgbm",
        "accunode-ensemble-annual",
        "accunode-ensemble-quarterly",
    ] {
        let bundle = Bundle::load(&bundle_dir(id)).unwrap();
        let manifest = bundle.manifest();
        let standard = standard_features(manifest.kind);
        assert_eq!(
            serde_json::to_value(&manifest.features).unwrap(),
            serde_json::to_value(&standard).unwrap(),
            "{id}"
        );
        assert!(standard.iter().all(|f| risk_direction(&f.name).is_some()));
    }
}
