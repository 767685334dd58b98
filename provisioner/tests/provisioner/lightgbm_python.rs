//! LightGBM model files move between Python's `lightgbm` and Rust bit for bit:
//! a booster Python trains scores the same in Rust, and one `accunode model
//! train` writes scores the same in Python, on rows with missing values too.
//! Python's side is `scripts/lightgbm_parity.py`, run with the interpreter
//! `scripts/test` installs (`TEST_PYTHON_LIGHTGBM`).

use std::path::{Path, PathBuf};
use std::process::Command;

use accunode_core::scoring::features::{risk_direction, standard_features};
use accunode_core::scoring::{BatchOutput, Bundle, ModelKind};

use crate::support::{accunode, repo, succeeded};

fn python(args: &[&str]) {
    let interpreter = std::env::var("TEST_PYTHON_LIGHTGBM").expect(
        "TEST_PYTHON_LIGHTGBM is not set: run the tests through scripts/test, which installs Python's lightgbm",
    );
    let output = Command::new(interpreter)
        .arg(repo("scripts/lightgbm_parity.py"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Semi-synthetic rows of `kind`, some with missing ratios.
fn labelled_data(dir: &Path, kind: ModelKind) -> PathBuf {
    let data = dir.join(format!("labelled-{}.csv", kind.as_str()));
    succeeded(&accunode([
        "model",
        "synth",
        "--bundle",
        repo(&format!("models/accunode-v1-{}", kind.as_str()))
            .to_str()
            .unwrap(),
        "--from",
        repo(&format!("data/original-bulk-samples/{}.csv", kind.as_str()))
            .to_str()
            .unwrap(),
        "--rows",
        "20000",
        "--seed",
        "99",
        "--out",
        data.to_str().unwrap(),
    ]));
    data
}

/// The rows to compare: the data's own rows plus every ratio missing in turn.
fn rows(data: &Path, out: &Path, kind: ModelKind) -> Vec<f64> {
    let mut reader = csv::Reader::from_path(data).unwrap();
    let mut writer = csv::Writer::from_path(out).unwrap();
    let names = feature_names(kind);
    writer.write_record(&names).unwrap();
    let mut values = Vec::new();
    for (index, record) in reader.records().take(3000).enumerate() {
        let record = record.unwrap();
        let mut fields: Vec<String> = (0..names.len()).map(|i| record[i].to_owned()).collect();
        if index < names.len() * 10 {
            fields[index % names.len()] = String::new();
        }
        for field in &fields {
            values.push(if field.is_empty() {
                f64::NAN
            } else {
                field.parse().unwrap()
            });
        }
        writer.write_record(&fields).unwrap();
    }
    writer.flush().unwrap();
    values
}

fn feature_names(kind: ModelKind) -> Vec<String> {
    standard_features(kind)
        .into_iter()
        .map(|f| f.name)
        .collect()
}

fn python_predictions(path: &Path) -> Vec<f64> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| line.parse().unwrap())
        .collect()
}

fn assert_bit_identical(rust: &[f64], python: &[f64]) {
    assert_eq!(rust.len(), python.len());
    let mut distinct: Vec<u64> = python.iter().map(|p| p.to_bits()).collect();
    distinct.sort_unstable();
    distinct.dedup();
    assert!(
        distinct.len() > 100,
        "the rows exercise the model: {} distinct probabilities",
        distinct.len()
    );
    for (row, (r, p)) in rust.iter().zip(python).enumerate() {
        assert_eq!(
            r.to_bits(),
            p.to_bits(),
            "row {row}: Rust {r:e}, Python {p:e}"
        );
    }
}

/// A one-component bundle around a LightGBM file, NaN left to LightGBM.
fn bundle_around(model: &Path, dir: &Path, kind: ModelKind) -> Bundle {
    let bundle = dir.join("bundle");
    std::fs::create_dir(&bundle).unwrap();
    std::fs::copy(model, bundle.join("model.txt")).unwrap();
    let manifest = serde_json::json!({
        "id": "python-trained",
        "version": "1.0.0",
        "kind": kind.as_str(),
        "description": "one LightGBM file",
        "features": standard_features(kind),
        "components": [{"name": "lightgbm", "type": "lightgbm", "file": "model.txt", "weight": 1.0}],
        "risk_thresholds": {"critical_above_pct": 15, "high_from_pct": 5, "medium_from_pct": 2},
        "provenance": "test",
    });
    std::fs::write(bundle.join("manifest.json"), manifest.to_string()).unwrap();
    Bundle::load(&bundle).unwrap()
}

#[test]
fn a_booster_trained_in_python_scores_bit_identically_in_rust() {
    let dir = tempfile::tempdir().unwrap();
    let data = labelled_data(dir.path(), ModelKind::Quarterly);
    let model = dir.path().join("python.txt");
    let monotone = feature_names(ModelKind::Quarterly)
        .iter()
        .map(|name| risk_direction(name).unwrap().sign().to_string())
        .collect::<Vec<_>>()
        .join(",");
    python(&[
        "train",
        "--data",
        data.to_str().unwrap(),
        "--features",
        &feature_names(ModelKind::Quarterly).join(","),
        "--monotone",
        &monotone,
        "--model-out",
        model.to_str().unwrap(),
    ]);
    let rows_csv = dir.path().join("rows.csv");
    let values = rows(&data, &rows_csv, ModelKind::Quarterly);
    let python = predict_in_python(
        &model,
        &rows_csv,
        ModelKind::Quarterly,
        &dir.path().join("python-predictions.txt"),
    );

    let bundle = bundle_around(&model, dir.path(), ModelKind::Quarterly);
    let mut batch = BatchOutput::default();
    bundle.score_batch(&values, &mut batch).unwrap();
    let rust: Vec<f64> = batch.scores.iter().map(|s| s.probability).collect();
    assert_bit_identical(&rust, &python);
    // The single-row path agrees with the batch path too.
    for (row, expected) in values.chunks(4).zip(&rust).take(200) {
        assert_eq!(
            bundle.score(row).unwrap().score.probability.to_bits(),
            expected.to_bits()
        );
    }
}

#[test]
fn a_booster_trained_by_accunode_scores_bit_identically_in_python() {
    let dir = tempfile::tempdir().unwrap();
    let data = labelled_data(dir.path(), ModelKind::Quarterly);
    let trained = dir.path().join("trained");
    succeeded(&accunode([
        "model",
        "train",
        "--kind",
        "quarterly",
        "--data",
        data.to_str().unwrap(),
        "--out",
        trained.to_str().unwrap(),
        "--lightgbm-rounds",
        "80",
    ]));
    let rows_csv = dir.path().join("rows.csv");
    let values = rows(&data, &rows_csv, ModelKind::Quarterly);
    let python = predict_in_python(
        &trained.join("lightgbm.txt"),
        &rows_csv,
        ModelKind::Quarterly,
        &dir.path().join("python-predictions.txt"),
    );
    let bundle = Bundle::load(&trained).unwrap();
    let mut batch = BatchOutput::default();
    bundle.score_batch(&values, &mut batch).unwrap();
    // The LightGBM component is the second of the trained bundle.
    let rust = batch.component(1);
    assert_bit_identical(&rust, &python);
}

/// Python's prediction for every row of `rows_csv` with the booster `model`.
fn predict_in_python(model: &Path, rows_csv: &Path, kind: ModelKind, out: &Path) -> Vec<f64> {
    python(&[
        "predict",
        "--model",
        model.to_str().unwrap(),
        "--rows",
        rows_csv.to_str().unwrap(),
        "--features",
        &feature_names(kind).join(","),
        "--out",
        out.to_str().unwrap(),
    ]);
    python_predictions(out)
}

#[test]
fn every_shipped_booster_scores_bit_identically_in_python() {
    let dir = tempfile::tempdir().unwrap();
    for (model, kind) in [
        (
            "models/accunode-v1-quarterly-lightgbm/lightgbm.txt",
            ModelKind::Quarterly,
        ),
        (
            "models/accunode-ensemble-quarterly/semi_synthetic_lightgbm.txt",
            ModelKind::Quarterly,
        ),
        (
            "models/accunode-ensemble-annual/semi_synthetic_lightgbm.txt",
            ModelKind::Annual,
        ),
    ] {
        let case = dir.path().join(model.replace('/', "_"));
        std::fs::create_dir(&case).unwrap();
        let data = labelled_data(&case, kind);
        let rows_csv = case.join("rows.csv");
        let values = rows(&data, &rows_csv, kind);
        let python = predict_in_python(&repo(model), &rows_csv, kind, &case.join("python.txt"));
        let bundle = bundle_around(&repo(model), &case, kind);
        let mut batch = BatchOutput::default();
        bundle.score_batch(&values, &mut batch).unwrap();
        let rust: Vec<f64> = batch.scores.iter().map(|s| s.probability).collect();
        assert_bit_identical(&rust, &python);
    }
}
