//! `accunode model train` and `model evaluate`: reproducible bundles that load,
//! learn the semi-synthetic truth, respect the risk directions, and refuse bad
//! data with the line and column.

use std::path::Path;
use std::process::Output;

use accunode_core::scoring::Bundle;
use accunode_core::scoring::features::{RiskDirection, risk_direction};
use serde_json::Value;

use crate::support::{accunode, repo, stderr, succeeded};

fn ok(output: Output) -> Output {
    succeeded(&output);
    output
}

/// Semi-synthetic labelled rows of `kind` from the real sample uploads.
fn synth(kind: &str, rows: &str, seed: &str, out: &Path) {
    ok(accunode([
        "model",
        "synth",
        "--bundle",
        repo(&format!("models/accunode-v1-{kind}"))
            .to_str()
            .unwrap(),
        "--from",
        repo(&format!("data/original-bulk-samples/{kind}.csv"))
            .to_str()
            .unwrap(),
        "--rows",
        rows,
        "--seed",
        seed,
        "--out",
        out.to_str().unwrap(),
    ]));
}

fn train(kind: &str, data: &Path, out: &Path, seed: &str) -> Output {
    accunode([
        "model",
        "train",
        "--kind",
        kind,
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--seed",
        seed,
        "--lightgbm-rounds",
        "60",
    ])
}

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            (
                entry.file_name().to_string_lossy().into_owned(),
                std::fs::read(entry.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

/// The labelled file's true probabilities and labels, and `bundle`'s score of
/// each of its rows (blank ratios are Missing).
fn truth_labels_and_scores(data: &Path, bundle: &Bundle) -> (Vec<f64>, Vec<bool>, Vec<f64>) {
    let mut reader = csv::Reader::from_path(data).unwrap();
    let headers = reader.headers().unwrap().clone();
    let column = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let features: Vec<usize> = bundle
        .manifest()
        .features
        .iter()
        .map(|f| column(&f.name))
        .collect();
    let (truth, default) = (column("true_probability"), column("default"));
    let (mut truths, mut labels, mut predicted) = (Vec::new(), Vec::new(), Vec::new());
    for record in reader.records() {
        let record = record.unwrap();
        let row: Vec<f64> = features
            .iter()
            .map(|&c| record[c].parse().unwrap_or(f64::NAN))
            .collect();
        predicted.push(bundle.score(&row).unwrap().score.probability);
        truths.push(record[truth].parse().unwrap());
        labels.push(&record[default] == "1");
    }
    (truths, labels, predicted)
}

#[test]
fn training_is_byte_identical_per_seed_and_records_data_and_holdout_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("annual.csv");
    synth("annual", "40000", "11", &data);
    let (a, b, c) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("c"),
    );
    ok(train("annual", &data, &a, "5"));
    ok(train("annual", &data, &b, "5"));
    ok(train("annual", &data, &c, "6"));
    let written = files(&a);
    assert_eq!(
        written
            .iter()
            .map(|(name, _)| name.as_str())
            .collect::<Vec<_>>(),
        ["binned_logistic.json", "lightgbm.txt", "manifest.json"]
    );
    assert_eq!(written, files(&b), "same data and seed, same bytes");
    assert_ne!(written, files(&c), "another seed, another split");
    assert!(!dir.path().join("a.partial").exists());

    let manifest: Value =
        serde_json::from_slice(&std::fs::read(a.join("manifest.json")).unwrap()).unwrap();
    let evaluation: Value = serde_json::from_slice(
        &ok(accunode([
            "model",
            "evaluate",
            "--bundle",
            a.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--output",
            "json",
        ]))
        .stdout,
    )
    .unwrap();
    let provenance = &manifest["provenance"];
    assert_eq!(provenance["data"]["sha256"], evaluation["data_sha256"]);
    assert_eq!(provenance["data"]["rows"], 40000);
    assert_eq!(provenance["data"]["semi_synthetic"], true);
    let split = &provenance["split"];
    assert_eq!(
        split["train_rows"].as_u64().unwrap() + split["holdout_rows"].as_u64().unwrap(),
        40000
    );
    let holdout_share = split["holdout_rows"].as_f64().unwrap() / 40000.0;
    assert!((holdout_share - 0.2).abs() < 0.01, "{holdout_share}");
    assert_eq!(
        provenance["lightgbm"]["monotone_constraints"],
        "1,1,-1,-1,-1"
    );

    // The model learned the truth: holdout AUC close to the truth's own AUC,
    // and mean error against the true probabilities small.
    let holdout = &manifest["metrics"]["holdout"];
    let auc = holdout["ensemble"]["roc_auc"].as_f64().unwrap();
    let ceiling = holdout["against_true_probability"]["ensemble"]["true_probability_roc_auc"]
        .as_f64()
        .unwrap();
    assert!(
        auc > 0.8 && auc < ceiling + 0.01,
        "auc {auc}, ceiling {ceiling}"
    );
    let error = holdout["against_true_probability"]["ensemble"]["mean_absolute_error"]
        .as_f64()
        .unwrap();
    assert!(error < 0.03, "mean absolute error {error}");
    for name in ["binned_logistic", "lightgbm"] {
        let component = holdout["components"][name]["roc_auc"].as_f64().unwrap();
        assert!(component > 0.8, "{name} auc {component}");
    }

    // Evaluate's error against the truth is the one computed here, from the
    // file's own true_probability column and the bundle's scores.
    let (truths, labels, predicted) = truth_labels_and_scores(&data, &Bundle::load(&a).unwrap());
    let expected_error = predicted
        .iter()
        .zip(&truths)
        .map(|(p, t)| (p - t).abs())
        .sum::<f64>()
        / truths.len() as f64;
    let reported = &evaluation["against_true_probability"];
    assert!(
        (reported["mean_absolute_error"].as_f64().unwrap() - expected_error).abs() < 1e-12,
        "{reported} vs {expected_error}"
    );
    let expected_max = predicted
        .iter()
        .zip(&truths)
        .map(|(p, t)| (p - t).abs())
        .fold(0.0, f64::max);
    assert_eq!(
        reported["max_absolute_error"].as_f64().unwrap(),
        expected_max
    );
    let mean = |values: &[f64]| values.iter().sum::<f64>() / values.len() as f64;
    let default_rate = labels.iter().filter(|&&l| l).count() as f64 / labels.len() as f64;
    assert!(
        (evaluation["metrics"]["mean_bias"].as_f64().unwrap() - (mean(&predicted) - default_rate))
            .abs()
            < 1e-12
    );

    // Evaluate reports the same kind of metrics on the whole file, and a
    // calibration table whose bins cover every row, each with the mean of the
    // file's true probabilities over its rows (they add up to the file's).
    assert_eq!(evaluation["rows"], 40000);
    let bins = evaluation["calibration"].as_array().unwrap();
    assert_eq!(bins.len(), 10);
    assert_eq!(
        bins.iter()
            .map(|b| b["rows"].as_u64().unwrap())
            .sum::<u64>(),
        40000
    );
    let binned_truth: f64 = bins
        .iter()
        .map(|b| b["rows"].as_f64().unwrap() * b["mean_true_probability"].as_f64().unwrap())
        .sum();
    assert!(
        (binned_truth - truths.iter().sum::<f64>()).abs() < 1e-6,
        "{binned_truth}"
    );
    for bin in bins {
        let predicted = bin["mean_predicted"].as_f64().unwrap();
        let truth = bin["mean_true_probability"].as_f64().unwrap();
        assert!((predicted - truth).abs() < 0.03, "{bin}");
    }
    let text = String::from_utf8(
        ok(accunode([
            "model",
            "evaluate",
            "--bundle",
            a.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
        ]))
        .stdout,
    )
    .unwrap();
    assert!(
        text.contains("ROC AUC") && text.contains("calibration"),
        "{text}"
    );
}

#[test]
fn the_trained_lightgbm_never_moves_against_a_ratios_risk_direction() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("quarterly.csv");
    synth("quarterly", "30000", "3", &data);
    let out = dir.path().join("bundle");
    ok(train("quarterly", &data, &out, "1"));
    let bundle = Bundle::load(&out).unwrap();
    let features = bundle.manifest().features.clone();
    let base = [2.0, 20.0, 40.0, 8.0];
    for (index, feature) in features.iter().enumerate() {
        let direction = risk_direction(&feature.name).unwrap();
        let mut previous: Option<f64> = None;
        let mut first: Option<f64> = None;
        for step in 0..=200 {
            let mut row = base;
            row[index] = -20.0 + f64::from(step) * 0.6;
            if !feature.accepts(row[index]) {
                continue;
            }
            let scored = bundle.score(&row).unwrap();
            let lightgbm = scored.components[1].1;
            if let Some(previous) = previous {
                let moved_against = match direction {
                    RiskDirection::Up => lightgbm < previous,
                    RiskDirection::Down => lightgbm > previous,
                };
                assert!(
                    !moved_against,
                    "{} at {}: {previous} -> {lightgbm}",
                    feature.name, row[index]
                );
            }
            first.get_or_insert(lightgbm);
            previous = Some(lightgbm);
        }
        // Never against the direction is not enough (a constant passes):
        // across the ratio's range the model must move with it.
        let (first, last) = (first.unwrap(), previous.unwrap());
        let moved_with = match direction {
            RiskDirection::Up => last > first,
            RiskDirection::Down => last < first,
        };
        assert!(
            moved_with,
            "{} never moved the probability in its risk direction: {first} -> {last}",
            feature.name
        );
    }
}

#[test]
fn bad_data_and_flags_are_refused_with_the_line_column_or_flag() {
    let dir = tempfile::tempdir().unwrap();
    let header = "long_term_debt_to_total_capital,total_debt_to_ebitda,net_income_margin,ebit_to_interest_expense,return_on_assets";
    let cases = [
        (
            format!("{header}\n1,1,1,1,1\n"),
            vec![],
            "has no column \"default\"",
        ),
        (
            format!("{header},default\n1,1,1,1,1,0\n1,1,1,1,1,2\n"),
            vec![],
            "line 3, column default: expected 0 or 1, got \"2\"",
        ),
        (
            format!("{header},default\n1,1,abc,1,1,0\n"),
            vec![],
            "line 2, column net_income_margin",
        ),
        (
            format!("{header},default\n101,1,1,1,1,0\n"),
            vec![],
            "line 2, column long_term_debt_to_total_capital: 101 is out of range, it must be between 0 and 100",
        ),
        (
            format!("{header},default\n1,1,1,1,1,0\n2,2,2,2,2,0\n"),
            vec![],
            "needs both defaults and non-defaults",
        ),
        (
            format!("{header},default\n1,1,1,1,1,0\n"),
            vec!["--holdout", "1.5"],
            "--holdout must be between 0 and 1",
        ),
        (
            format!("{header},default\n1,1,1,1,1,0\n"),
            vec!["--bins", "1"],
            "--bins must be between 2 and 100",
        ),
    ];
    for (index, (text, extra, expected)) in cases.iter().enumerate() {
        let data = dir.path().join(format!("case{index}.csv"));
        std::fs::write(&data, text).unwrap();
        let out = dir.path().join(format!("out{index}"));
        let mut args = vec![
            "model",
            "train",
            "--kind",
            "annual",
            "--data",
            data.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend(extra);
        let result = accunode(&args);
        assert_eq!(result.status.code(), Some(1), "case {index}");
        assert!(
            stderr(&result).contains(expected),
            "case {index}: {}",
            stderr(&result)
        );
        assert!(!out.exists(), "case {index}: nothing is written");
    }

    let existing = dir.path().join("existing");
    std::fs::create_dir(&existing).unwrap();
    std::fs::write(existing.join("keep"), "x").unwrap();
    let data = dir.path().join("case0.csv");
    let result = accunode([
        "model",
        "train",
        "--kind",
        "annual",
        "--data",
        data.to_str().unwrap(),
        "--out",
        existing.to_str().unwrap(),
    ]);
    assert_eq!(result.status.code(), Some(1));
    assert!(
        stderr(&result).contains("already exists"),
        "{}",
        stderr(&result)
    );
    assert_eq!(std::fs::read(existing.join("keep")).unwrap(), b"x");
}
