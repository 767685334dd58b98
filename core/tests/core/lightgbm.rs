//! The `lightgbm` component on the original's quarterly booster: loading,
//! monotone constraints, missing values, batch against single rows, many threads
//! at once, ensembles with a binned logistic, and broken model files.

use std::sync::Arc;

use accunode_core::scoring::{BatchOutput, Bundle};
use serde_json::Value;

use crate::support::bundle_dir;

fn gbm() -> Bundle {
    Bundle::load(&bundle_dir("accunode-v1-quarterly-lightgbm")).unwrap()
}

/// Rows spread over the features' realistic ranges (as in the sample uploads).
fn grid() -> Vec<[f64; 4]> {
    let mut rows = Vec::new();
    for debt in [0.5, 2.0, 3.5, 6.0, 10.0] {
        for sga in [5.0, 15.0, 25.0, 40.0] {
            for ltd in [10.0, 40.0, 70.0] {
                for roc in [2.0, 8.0, 15.0, 30.0] {
                    rows.push([debt, sga, ltd, roc]);
                }
            }
        }
    }
    rows
}

fn p(bundle: &Bundle, row: &[f64]) -> f64 {
    bundle.score(row).unwrap().score.probability
}

#[test]
fn scores_are_probabilities_that_respect_the_monotone_constraints() {
    let bundle = gbm();
    // monotone_constraints=1 -1 1 -1 in the model file.
    let directions = [1.0, -1.0, 1.0, -1.0];
    for row in grid() {
        let base = p(&bundle, &row);
        assert!(base > 0.0 && base < 1.0, "{row:?}: {base}");
        for (feature, direction) in directions.iter().enumerate() {
            let mut moved = row;
            moved[feature] += 5.0;
            let after = p(&bundle, &moved);
            assert!(
                (after - base) * direction >= 0.0,
                "feature {feature} moved the wrong way at {row:?}: {base} -> {after}"
            );
        }
    }
}

#[test]
fn missing_ratios_are_filled_with_zero_as_the_original_intended() {
    let bundle = gbm();
    assert_eq!(
        p(&bundle, &[f64::NAN, 20.0, f64::NAN, 10.0]),
        p(&bundle, &[0.0, 20.0, 0.0, 10.0])
    );
}

#[test]
fn the_batch_path_equals_the_single_row_path_and_threads_agree() {
    let bundle = Arc::new(gbm());
    let rows: Vec<f64> = grid().into_iter().flatten().collect();
    let mut output = BatchOutput::default();
    bundle.score_batch(&rows, &mut output).unwrap();
    let single: Vec<f64> = rows.chunks_exact(4).map(|row| p(&bundle, row)).collect();
    let batch: Vec<f64> = output.scores.iter().map(|s| s.probability).collect();
    assert_eq!(batch, single);

    // Each thread parses its own booster; all of them give the same numbers.
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let bundle = Arc::clone(&bundle);
            let rows = rows.clone();
            std::thread::spawn(move || {
                let mut output = BatchOutput::default();
                for _ in 0..20 {
                    bundle.score_batch(&rows, &mut output).unwrap();
                }
                output
                    .scores
                    .iter()
                    .map(|s| s.probability)
                    .collect::<Vec<f64>>()
            })
        })
        .collect();
    for handle in handles {
        assert_eq!(handle.join().unwrap(), single);
    }
}

#[test]
fn an_ensemble_of_the_logistic_and_the_booster_is_their_weighted_mean() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        bundle_dir("accunode-v1-quarterly").join("binned_logistic.json"),
        dir.path().join("logistic.json"),
    )
    .unwrap();
    std::fs::copy(
        bundle_dir("accunode-v1-quarterly-lightgbm").join("lightgbm.txt"),
        dir.path().join("gbm.txt"),
    )
    .unwrap();
    let mut manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(
            bundle_dir("accunode-v1-quarterly-lightgbm").join("manifest.json"),
        )
        .unwrap(),
    )
    .unwrap();
    manifest["components"] = serde_json::json!([
        { "name": "logistic", "type": "binned_logistic", "file": "logistic.json", "weight": 0.25 },
        { "name": "gbm", "type": "lightgbm", "file": "gbm.txt", "weight": 0.75, "fill_missing": 0.0 },
    ]);
    std::fs::write(dir.path().join("manifest.json"), manifest.to_string()).unwrap();
    let ensemble = Bundle::load(dir.path()).unwrap();
    let logistic = Bundle::load(&bundle_dir("accunode-v1-quarterly")).unwrap();
    let booster = gbm();

    let rows: Vec<f64> = grid().into_iter().flatten().collect();
    let mut output = BatchOutput::default();
    ensemble.score_batch(&rows, &mut output).unwrap();
    for (index, row) in rows.chunks_exact(4).enumerate() {
        let (a, b) = (p(&logistic, row), p(&booster, row));
        assert_eq!(
            output.component_probabilities[index * 2..index * 2 + 2],
            [a, b]
        );
        let expected = (0.25 * a + 0.75 * b) / 1.0;
        assert!((output.scores[index].probability - expected).abs() <= 1e-15);
        let detailed = ensemble.score(row).unwrap();
        assert_eq!(detailed.score, output.scores[index]);
        assert_eq!(detailed.components[1], ("gbm".to_owned(), b));
    }
}

#[test]
fn a_broken_or_mismatched_model_file_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let source = bundle_dir("accunode-v1-quarterly-lightgbm");
    std::fs::copy(
        source.join("manifest.json"),
        dir.path().join("manifest.json"),
    )
    .unwrap();

    std::fs::write(dir.path().join("lightgbm.txt"), "this is not a model").unwrap();
    let error = Bundle::load(dir.path()).unwrap_err().to_string();
    assert!(
        error.contains("lightgbm.txt: not a LightGBM text model"),
        "{error}"
    );

    // A manifest with three features for a four-feature booster.
    let text = std::fs::read_to_string(source.join("lightgbm.txt")).unwrap();
    std::fs::write(dir.path().join("lightgbm.txt"), text).unwrap();
    let mut manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(source.join("manifest.json")).unwrap())
            .unwrap();
    manifest["features"].as_array_mut().unwrap().pop();
    std::fs::write(dir.path().join("manifest.json"), manifest.to_string()).unwrap();
    let error = Bundle::load(dir.path()).unwrap_err().to_string();
    assert!(
        error.contains("the model takes 4 features, the bundle has 3"),
        "{error}"
    );
}
