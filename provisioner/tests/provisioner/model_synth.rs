//! `accunode model synth`: reproducible, in range, and labelled from its own
//! true probabilities (the realised default rate matches them).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{ACCUNODE, repo};

fn bundle(id: &str) -> PathBuf {
    repo("models").join(id)
}

/// A small annual upload: varied ratios, some Missing, one out-of-range row.
fn write_source(path: &Path) {
    let mut text = String::from(
        "company_symbol,long_term_debt_to_total_capital,total_debt_to_ebitda,net_income_margin,ebit_to_interest_expense,return_on_assets\n",
    );
    for i in 0..40 {
        let f = f64::from(i);
        let roa = if i % 7 == 0 {
            String::new()
        } else {
            format!("{}", 12.0 - f * 0.5)
        };
        text += &format!(
            "C{i},{},{},{},{},{roa}\n",
            5.0 + f * 2.0,
            0.2 + f * 0.15,
            15.0 - f * 0.6,
            40.0 - f,
        );
    }
    text += "BAD,250,1,1,1,1\n";
    std::fs::write(path, text).unwrap();
}

fn synth(source: &Path, out: &Path, rows: &str, seed: &str) -> std::process::Output {
    Command::new(ACCUNODE)
        .args(["model", "synth", "--bundle"])
        .arg(bundle("accunode-v1-annual"))
        .arg("--from")
        .arg(source)
        .args(["--rows", rows, "--seed", seed, "--out"])
        .arg(out)
        .output()
        .unwrap()
}

#[test]
fn the_same_seed_gives_the_same_bytes_and_labels_follow_the_true_probability() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source.csv");
    write_source(&source);
    let (a, b, c) = (
        dir.path().join("a.csv"),
        dir.path().join("b.csv"),
        dir.path().join("c.csv"),
    );
    for (out, seed) in [(&a, "7"), (&b, "7"), (&c, "8")] {
        let result = synth(&source, out, "20000", seed);
        assert!(
            result.status.success(),
            "{}",
            String::from_utf8_lossy(&result.stderr)
        );
        assert!(String::from_utf8_lossy(&result.stderr).contains("resampled from 40 valid rows"));
    }
    let bytes = std::fs::read(&a).unwrap();
    assert_eq!(bytes, std::fs::read(&b).unwrap());
    assert_ne!(bytes, std::fs::read(&c).unwrap());

    let mut reader = csv::Reader::from_reader(&bytes[..]);
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        [
            "long_term_debt_to_total_capital",
            "total_debt_to_ebitda",
            "net_income_margin",
            "ebit_to_interest_expense",
            "return_on_assets",
            "true_probability",
            "default"
        ]
    );
    let (mut rows, mut defaults, mut expected, mut variance, mut missing) = (0, 0.0, 0.0, 0.0, 0);
    for record in reader.records() {
        let record = record.unwrap();
        let ltd: f64 = record[0].parse().unwrap();
        assert!((0.0..=100.0).contains(&ltd), "{record:?}");
        missing += usize::from(record[4].is_empty());
        let p: f64 = record[5].parse().unwrap();
        assert!(p > 0.0 && p < 1.0);
        expected += p;
        variance += p * (1.0 - p);
        defaults += record[6].parse::<f64>().unwrap();
        rows += 1;
    }
    assert_eq!(rows, 20_000);
    assert!(missing > 0, "Missing values are kept");
    // The realised number of defaults is within 4 standard deviations of its expectation.
    assert!(
        (defaults - expected).abs() < 4.0 * variance.sqrt(),
        "defaults {defaults}, expected {expected:.1} ± {:.1}",
        variance.sqrt()
    );
}

#[test]
fn a_source_without_a_feature_column_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source.csv");
    std::fs::write(&source, "company_symbol,return_on_assets\nA,1\n").unwrap();
    let out = dir.path().join("out.csv");
    let result = synth(&source, &out, "10", "1");
    assert_eq!(result.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&result.stderr)
            .contains("has no column \"long_term_debt_to_total_capital\""),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    assert!(!out.exists());
}
