//! The shipped ensemble bundles are what their manifests say: the v1 files
//! unchanged, the trained component reproducible from its recipe byte for
//! byte, and scores the weighted mean of the components.

use accunode_core::scoring::Bundle;
use serde_json::Value;

use crate::support::{accunode, repo, succeeded};

fn run(args: &[String]) {
    succeeded(&accunode(args));
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn reproduce(kind: &str) {
    let bundle = repo(&format!("models/accunode-ensemble-{kind}"));
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(bundle.join("manifest.json")).unwrap()).unwrap();
    let recipe = &manifest["provenance"]["semi_synthetic_lightgbm"];
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("train.csv");
    let trained = dir.path().join("trained");
    let synth = &recipe["synth"];
    run(&[
        "model".into(),
        "synth".into(),
        "--bundle".into(),
        repo(&text(&synth["bundle"])).display().to_string(),
        "--from".into(),
        repo(&text(&synth["from"])).display().to_string(),
        "--rows".into(),
        text(&synth["rows"]),
        "--seed".into(),
        text(&synth["seed"]),
        "--out".into(),
        data.display().to_string(),
    ]);
    let train = &recipe["train"];
    run(&[
        "model".into(),
        "train".into(),
        "--kind".into(),
        kind.into(),
        "--data".into(),
        data.display().to_string(),
        "--out".into(),
        trained.display().to_string(),
        "--seed".into(),
        text(&train["seed"]),
        "--holdout".into(),
        text(&train["holdout"]),
        "--bins".into(),
        text(&train["bins"]),
        "--lightgbm-rounds".into(),
        text(&train["lightgbm_rounds"]),
    ]);
    let trained_manifest: Value =
        serde_json::from_slice(&std::fs::read(trained.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(
        trained_manifest["provenance"]["data"]["sha256"],
        recipe["data_sha256"]
    );
    assert!(
        std::fs::read(trained.join("lightgbm.txt")).unwrap()
            == std::fs::read(bundle.join("semi_synthetic_lightgbm.txt")).unwrap(),
        "{kind}: the shipped semi-synthetic LightGBM differs from what its recipe trains; run scripts/build-ensembles"
    );
}

#[test]
fn the_annual_ensemble_component_is_reproducible_from_its_recipe() {
    reproduce("annual");
}

#[test]
fn the_quarterly_ensemble_component_is_reproducible_from_its_recipe() {
    reproduce("quarterly");
}

#[test]
fn ensembles_reuse_the_v1_files_unchanged_and_score_the_mean_of_their_components() {
    let same =
        |a: &str, b: &str| std::fs::read(repo(a)).unwrap() == std::fs::read(repo(b)).unwrap();
    assert!(same(
        "models/accunode-ensemble-annual/v1_binned_logistic.json",
        "models/accunode-v1-annual/binned_logistic.json"
    ));
    assert!(same(
        "models/accunode-ensemble-quarterly/v1_binned_logistic.json",
        "models/accunode-v1-quarterly/binned_logistic.json"
    ));
    assert!(same(
        "models/accunode-ensemble-quarterly/v1_lightgbm.txt",
        "models/accunode-v1-quarterly-lightgbm/lightgbm.txt"
    ));

    let annual = Bundle::load(&repo("models/accunode-ensemble-annual")).unwrap();
    let v1_annual = Bundle::load(&repo("models/accunode-v1-annual")).unwrap();
    let row = [40.0, 3.0, 5.0, f64::NAN, 4.0];
    let scored = annual.score(&row).unwrap();
    assert_eq!(scored.components.len(), 2);
    assert_eq!(
        scored.components[0].1,
        v1_annual.score(&row).unwrap().score.probability
    );
    let mean = (scored.components[0].1 + scored.components[1].1) / 2.0;
    assert!((scored.score.probability - mean).abs() < 1e-15);

    let quarterly = Bundle::load(&repo("models/accunode-ensemble-quarterly")).unwrap();
    let scored = quarterly.score(&[2.0, 20.0, 40.0, 8.0]).unwrap();
    assert_eq!(
        scored
            .components
            .iter()
            .map(|(name, _)| name.as_str())
            .collect::<Vec<_>>(),
        [
            "v1_binned_logistic",
            "v1_lightgbm",
            "semi_synthetic_lightgbm"
        ]
    );
    let mean = scored.components.iter().map(|(_, p)| p).sum::<f64>() / 3.0;
    assert!((scored.score.probability - mean).abs() < 1e-15);
}
