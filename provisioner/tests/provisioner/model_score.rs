//! `accunode model score` end to end: a CSV in, the same rows plus scores out;
//! rows outside the fitted ranges are scored with `warnings`, bad rows get an
//! `error`, bad files a one-line error and no output.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use accunode_core::scoring::Bundle;

use crate::support::{accunode, repo};

fn annual_bundle() -> PathBuf {
    repo("models/accunode-v1-annual")
}

fn score(input: &Path, output: &Path) -> std::process::Output {
    let bundle = annual_bundle();
    let args: [&OsStr; 8] = [
        "model".as_ref(),
        "score".as_ref(),
        "--bundle".as_ref(),
        bundle.as_ref(),
        "--input".as_ref(),
        input.as_ref(),
        "--output".as_ref(),
        output.as_ref(),
    ];
    accunode(args)
}

const INPUT: &str = "\
company_symbol,company_name,reporting_year,long_term_debt_to_total_capital,total_debt_to_ebitda,net_income_margin,ebit_to_interest_expense,return_on_assets
AAA,\"Alpha, Inc.\",2023,40.5,2.1,5.5,12.0,4.0
BBB,Beta,2023,,NM,N/A,NaN,
CCC,Gamma,2023,140,2.1,5.5,12.0,4.0
DDD,Delta,2023,40.5,lots,5.5,12.0,4.0
EEE,Epsilon,2023,40.5,2.1
FFF,Phi,2023,40.5,inf,5.5,12.0,4.0
";

#[test]
fn scores_every_row_and_marks_bad_ones_without_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("rows.csv"), dir.path().join("scored.csv"));
    std::fs::write(&input, INPUT).unwrap();
    let result = score(&input, &output);
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    assert!(
        String::from_utf8_lossy(&result.stderr)
            .contains("scored 6 rows with accunode-v1-annual 1.0.0"),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );

    let bundle = Bundle::load(&annual_bundle()).unwrap();
    let mut reader = csv::Reader::from_path(&output).unwrap();
    let headers: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        headers[8..],
        [
            "probability",
            "risk_level",
            "confidence",
            "binned_logistic_probability",
            "model_id",
            "model_version",
            "warnings",
            "error"
        ]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 6);
    let column = |row: &csv::StringRecord, name: &str| {
        row[headers.iter().position(|h| h == name).unwrap()].to_owned()
    };

    // Scored exactly as the library scores, printed at full precision.
    let expected = bundle.score(&[40.5, 2.1, 5.5, 12.0, 4.0]).unwrap().score;
    assert_eq!(&rows[0][1], "Alpha, Inc.");
    assert_eq!(
        column(&rows[0], "probability").parse::<f64>().unwrap(),
        expected.probability
    );
    assert_eq!(column(&rows[0], "risk_level"), expected.risk_level.as_str());
    assert_eq!(column(&rows[0], "model_version"), "1.0.0");
    assert_eq!(column(&rows[0], "warnings"), "");
    assert_eq!(column(&rows[0], "error"), "");

    // Blank, NM, N/A and NaN are Missing.
    let missing = bundle.score(&[f64::NAN; 5]).unwrap().score;
    assert_eq!(
        column(&rows[1], "probability").parse::<f64>().unwrap(),
        missing.probability
    );

    // Outside the fitted range: scored, with a warning.
    let distressed = bundle.score(&[140.0, 2.1, 5.5, 12.0, 4.0]).unwrap().score;
    assert_eq!(
        column(&rows[2], "probability").parse::<f64>().unwrap(),
        distressed.probability
    );
    assert_eq!(
        column(&rows[2], "warnings"),
        "outside_fitted_range: long_term_debt_to_total_capital=140 (fitted 0–100)"
    );
    assert_eq!(column(&rows[2], "error"), "");

    for (row, problem) in [
        (3, "line 5: total_debt_to_ebitda: \"lots\" is not a number"),
        (4, "line 6: the row has 5 fields, the header 8"),
        (
            5,
            "line 7: total_debt_to_ebitda must be a finite number, got inf",
        ),
    ] {
        assert!(
            column(&rows[row], "error").starts_with(problem),
            "{:?}",
            rows[row]
        );
        assert_eq!(column(&rows[row], "probability"), "");
        assert_eq!(column(&rows[row], "warnings"), "");
        assert_eq!(rows[row].len(), headers.len(), "columns stay aligned");
    }
}

#[test]
fn a_file_without_a_feature_column_fails_naming_it_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("rows.csv"), dir.path().join("scored.csv"));
    std::fs::write(&input, "company_symbol,return_on_assets\nAAA,1.0\n").unwrap();
    let result = score(&input, &output);
    assert_eq!(result.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("has no column \"long_term_debt_to_total_capital\""),
        "{stderr}"
    );
    assert!(!output.exists());
    assert!(
        std::fs::read_dir(dir.path()).unwrap().count() == 1,
        "no partial file left"
    );

    let result = score(&dir.path().join("absent.csv"), &output);
    assert_eq!(result.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&result.stderr).starts_with("accunode: cannot read --input"));
}
