//! `scoring::csv_batch`: files longer than one batch score row for row as
//! `Bundle::score` does, keep their order and columns, carry row errors in
//! place, and score ratios outside the fitted range with their warnings; a file
//! that cannot be scored is refused before any row is written.

use accunode_core::scoring::Bundle;
use accunode_core::scoring::csv_batch::{BATCH_ROWS, CsvScoringError, score_csv, score_file};

use crate::support::bundle_dir;

const HEADER: &str = "company_symbol,long_term_debt_to_total_capital,total_debt_to_ebitda,net_income_margin,ebit_to_interest_expense,return_on_assets,note";

/// Row `i` of a long annual upload: varied ratios, some Missing, and among
/// every 997 rows three unscorable in different ways and two outside the
/// fitted ranges (scored, with warnings).
fn annual_row(i: usize) -> String {
    let f = (i % 50) as f64;
    match i % 997 {
        0 => format!("BAD{i},40,lots,5,12,4,text"),
        1 => format!("OUT{i},250,2,5,12,4,out of range"),
        2 => format!("SHORT{i},40,2"),
        3 => format!("INF{i},40,2,5,inf,4,infinite"),
        4 => format!("NEG{i},40,-2.5,-120,-3,4,distressed"),
        _ => {
            let roa = if i.is_multiple_of(7) {
                String::new()
            } else {
                format!("{}", 12.0 - f * 0.5)
            };
            format!(
                "C{i},{},{},{},{},{roa},\"kept, as is\"",
                5.0 + f * 1.5,
                0.2 + f * 0.15,
                15.0 - f * 0.6,
                40.0 - f * 0.7
            )
        }
    }
}

fn scored_rows(bundle: &Bundle, rows: usize) -> (Vec<csv::StringRecord>, csv::StringRecord) {
    let mut input = String::from(HEADER);
    for i in 0..rows {
        input.push('\n');
        input += &annual_row(i);
    }
    let mut output = Vec::new();
    let summary = score_csv(bundle, input.as_bytes(), "input", &mut output, "output").unwrap();
    assert_eq!(summary.rows, rows);
    assert_eq!(
        summary.errors,
        (0..rows).filter(|i| i % 997 <= 3 && i % 997 != 1).count()
    );
    assert_eq!(
        summary.warned,
        (0..rows).filter(|i| matches!(i % 997, 1 | 4)).count()
    );
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(output.as_slice());
    let headers = reader.headers().unwrap().clone();
    let records: Vec<_> = reader.records().map(Result::unwrap).collect();
    assert_eq!(records.len(), rows);
    assert_eq!(
        summary.errors,
        records
            .iter()
            .filter(|r| !r[r.len() - 1].is_empty())
            .count()
    );
    (records, headers)
}

fn check_against_single_rows(id: &str) {
    let bundle = Bundle::load(&bundle_dir(id)).unwrap();
    let rows = 2 * BATCH_ROWS + 123;
    let (records, headers) = scored_rows(&bundle, rows);
    let column = |name: &str| headers.iter().position(|h| h == name).unwrap();
    assert_eq!(
        headers.iter().skip(7).collect::<Vec<_>>()[..3],
        ["probability", "risk_level", "confidence"]
    );
    assert_eq!(
        headers.iter().rev().take(4).collect::<Vec<_>>(),
        ["error", "warnings", "model_version", "model_id"]
    );
    for (i, record) in records.iter().enumerate() {
        assert_eq!(record.len(), headers.len(), "row {i} keeps every column");
        assert_eq!(
            &record[0],
            annual_row(i).split(',').next().unwrap(),
            "row {i} in order"
        );
        let error = &record[column("error")];
        let warnings = &record[column("warnings")];
        match i % 997 {
            0 => assert!(error.contains("total_debt_to_ebitda"), "row {i}: {error}"),
            2 => assert!(error.contains("fields"), "row {i}: {error}"),
            3 => assert!(
                error.ends_with("ebit_to_interest_expense must be a finite number, got inf"),
                "row {i}: {error}"
            ),
            _ => {
                assert_eq!(error, "", "row {i}");
                let expected_warnings = match i % 997 {
                    1 => "outside_fitted_range: long_term_debt_to_total_capital=250 (fitted 0–100)",
                    4 => {
                        "outside_fitted_range: total_debt_to_ebitda=-2.5 (fitted at least 0);\
                         outside_fitted_range: net_income_margin=-120 (fitted -100–100);\
                         outside_fitted_range: ebit_to_interest_expense=-3 (fitted at least 0)"
                    }
                    _ => "",
                };
                assert_eq!(warnings, expected_warnings, "row {i}");
                let ratios: Vec<f64> = (1..=5)
                    .map(|c| record[c].parse().unwrap_or(f64::NAN))
                    .collect();
                let expected = bundle.score(&ratios).unwrap();
                assert_eq!(
                    record[column("probability")],
                    expected.score.probability.to_string(),
                    "row {i}"
                );
                assert_eq!(
                    &record[column("risk_level")],
                    expected.score.risk_level.as_str()
                );
                for (name, probability) in &expected.components {
                    assert_eq!(
                        record[column(&format!("{name}_probability"))],
                        probability.to_string()
                    );
                }
                if i % 997 > 4 {
                    assert_eq!(&record[column("note")], "kept, as is");
                }
            }
        }
        if !error.is_empty() {
            assert_eq!(warnings, "", "row {i}: no warning without a score");
            assert_eq!(&record[column("probability")], "", "row {i}");
        }
    }
}

#[test]
fn a_file_longer_than_a_batch_scores_as_row_by_row() {
    check_against_single_rows("accunode-v1-annual");
}

#[test]
fn an_ensemble_with_lightgbm_scores_as_row_by_row_across_batches() {
    check_against_single_rows("accunode-ensemble-annual");
}

#[test]
fn a_missing_column_is_refused_and_no_output_appears() {
    let bundle = Bundle::load(&bundle_dir("accunode-v1-annual")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "company_symbol,return_on_assets\nA,1\n").unwrap();
    let output = dir.path().join("out.csv");
    let error = score_file(
        &bundle,
        &input,
        "--input in.csv",
        &output,
        "--output out.csv",
    )
    .unwrap_err();
    assert!(
        matches!(error, CsvScoringError::MissingColumn { .. }),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .starts_with("--input in.csv has no column \"long_term_debt_to_total_capital\""),
        "{error}"
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "nothing written"
    );
}
