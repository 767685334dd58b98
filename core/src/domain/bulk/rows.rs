//! The rows of an uploaded file: which column is which, what a row means, and
//! a chunk of rows scored.
//!
//! A row is validated exactly as a single-prediction request is (the same
//! company normalisation, year and quarter rules, the same ratio parsing), so
//! that a row scores to the same bits as the same values posted one by one.
//! Blank, `NaN`, `NM` and `N/A` ratios are Missing, never 0; other text is a
//! row error naming the column and the value; every finite number is scored,
//! with a warning when it lies outside the range the model was fitted on.

use csv::StringRecord;

use crate::domain::companies::{NewCompany, symbol_problem};
use crate::domain::predictions::{NewPredictionInput, Quarter, ratio_names};
use crate::scoring::csv_batch::BATCH_ROWS;
use crate::scoring::input::parse_ratio;
use crate::scoring::{BatchOutput, Bundle, ModelKind, Score};

/// Columns the results file adds after the input's; an input may not have them.
pub const RESULT_COLUMNS: &[&str] = &[
    "probability",
    "risk_level",
    "confidence",
    "model_id",
    "model_version",
    "warnings",
    "error",
];

/// Where each column a prediction needs is in a file's header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Columns {
    pub kind: ModelKind,
    symbol: usize,
    name: usize,
    market_cap: Option<usize>,
    sector: Option<usize>,
    year: usize,
    quarter: Option<usize>,
    /// In [`ratio_names`] order.
    ratios: Vec<usize>,
    width: usize,
}

/// Why a header row cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("the file has no header row")]
    Empty,
    #[error("missing column{}: {}; a {kind} file needs {needed}", if .missing.len() == 1 { "" } else { "s" }, .missing.join(", "))]
    Missing {
        kind: &'static str,
        missing: Vec<String>,
        needed: String,
    },
    #[error("the column {0:?} appears twice")]
    Duplicate(String),
    #[error("the column {0:?} is one the results add; rename it")]
    Reserved(String),
    #[error("a column name is empty or holds control characters (column {0})")]
    BadName(usize),
}

/// The columns of a kind's file: required ones, then optional ones.
pub fn known_columns(kind: ModelKind) -> (Vec<String>, Vec<String>) {
    let mut required: Vec<String> = ["company_symbol", "company_name", "reporting_year"]
        .map(str::to_owned)
        .into();
    let mut optional: Vec<String> = ["market_cap", "sector"].map(str::to_owned).into();
    match kind {
        ModelKind::Annual => optional.push("reporting_quarter".into()),
        ModelKind::Quarterly => required.push("reporting_quarter".into()),
    }
    required.extend(ratio_names(kind));
    (required, optional)
}

impl Columns {
    /// Reads a header row: known columns matched ignoring case and surrounding
    /// spaces, others kept. Returns the columns and the header as stored
    /// (known names in their canonical spelling, other names trimmed).
    pub fn from_header(
        kind: ModelKind,
        header: &[&str],
    ) -> Result<(Self, Vec<String>), HeaderError> {
        if header.is_empty() || header.iter().all(|name| name.trim().is_empty()) {
            return Err(HeaderError::Empty);
        }
        let (required, optional) = known_columns(kind);
        let mut canonical = Vec::with_capacity(header.len());
        for (index, name) in header.iter().enumerate() {
            let trimmed = name.trim();
            if trimmed.is_empty() || trimmed.chars().any(char::is_control) {
                return Err(HeaderError::BadName(index + 1));
            }
            let lower = trimmed.to_lowercase();
            let name = if required.contains(&lower) || optional.contains(&lower) {
                lower
            } else if RESULT_COLUMNS.contains(&lower.as_str()) || lower.ends_with("_probability") {
                return Err(HeaderError::Reserved(trimmed.to_owned()));
            } else {
                trimmed.to_owned()
            };
            if canonical.contains(&name) {
                return Err(HeaderError::Duplicate(name));
            }
            canonical.push(name);
        }
        let position = |name: &str| canonical.iter().position(|column| column == name);
        let missing: Vec<String> = required
            .iter()
            .filter(|name| position(name).is_none())
            .cloned()
            .collect();
        if !missing.is_empty() {
            return Err(HeaderError::Missing {
                kind: kind.as_str(),
                missing,
                needed: required.join(", "),
            });
        }
        let required_at = |name: &str| position(name).expect("checked above");
        let columns = Self {
            kind,
            symbol: required_at("company_symbol"),
            name: required_at("company_name"),
            market_cap: position("market_cap"),
            sector: position("sector"),
            year: required_at("reporting_year"),
            quarter: position("reporting_quarter"),
            ratios: ratio_names(kind)
                .iter()
                .map(|name| required_at(name))
                .collect(),
            width: canonical.len(),
        };
        Ok((columns, canonical))
    }

    /// Columns of a header stored by [`Columns::from_header`].
    pub fn from_stored(kind: ModelKind, header: &[String]) -> Result<Self, HeaderError> {
        let names: Vec<&str> = header.iter().map(String::as_str).collect();
        Self::from_header(kind, &names).map(|(columns, _)| columns)
    }

    pub fn width(&self) -> usize {
        self.width
    }

    /// Validates one row (see the module documentation).
    pub fn parse_row(&self, record: &StringRecord) -> Result<NewPredictionInput, RowError> {
        if record.len() != self.width {
            return Err(RowError::row(format!(
                "the row has {} fields, the header {}",
                record.len(),
                self.width
            )));
        }
        let field = |index: usize| &record[index];
        let symbol = field(self.symbol).trim().to_uppercase();
        check_text("company_symbol", field(self.symbol), &symbol, 1, 20)?;
        if let Some(problem) = symbol_problem(field(self.symbol)) {
            return Err(RowError::field(
                "company_symbol",
                field(self.symbol),
                problem,
            ));
        }
        let name = field(self.name).trim();
        check_text("company_name", field(self.name), name, 1, 255)?;
        let market_cap = match self.market_cap.map(field).map(str::trim) {
            None | Some("") => None,
            Some(text) => match text.parse::<f64>() {
                Ok(cap) if cap > 0.0 && cap.is_finite() => Some(cap),
                _ => {
                    return Err(RowError::field(
                        "market_cap",
                        text,
                        "must be a number greater than 0",
                    ));
                }
            },
        };
        let sector = match self.sector.map(field) {
            Some(text) if !text.trim().is_empty() => {
                check_text("sector", text, text.trim(), 0, 100)?;
                Some(text.trim().to_owned())
            }
            _ => None,
        };
        let year_text = field(self.year).trim();
        let reporting_year = parse_year(year_text).ok_or_else(|| {
            RowError::field(
                "reporting_year",
                year_text,
                "must be a year as YYYY between 1900 and 2200",
            )
        })?;
        let quarter_text = self.quarter.map(field).map(str::trim).unwrap_or("");
        let reporting_quarter = if quarter_text.is_empty() {
            if self.kind == ModelKind::Quarterly {
                return Err(RowError::field(
                    "reporting_quarter",
                    quarter_text,
                    "is required: Q1, Q2, Q3 or Q4",
                ));
            }
            None
        } else {
            Some(
                quarter_text
                    .to_uppercase()
                    .parse::<Quarter>()
                    .map_err(|_| {
                        RowError::field(
                            "reporting_quarter",
                            quarter_text,
                            "must be Q1, Q2, Q3 or Q4",
                        )
                    })?,
            )
        };
        let names = ratio_names(self.kind);
        let mut ratios = Vec::with_capacity(names.len());
        for (name, &index) in names.iter().zip(&self.ratios) {
            let text = field(index);
            let value =
                parse_ratio(text).map_err(|problem| RowError::field(name, text, problem))?;
            if value.is_infinite() {
                return Err(RowError::field(name, text, "must be a finite number"));
            }
            ratios.push((!value.is_nan()).then_some(value));
        }
        Ok(NewPredictionInput {
            kind: self.kind,
            company: NewCompany {
                symbol,
                name: name.to_owned(),
                market_cap,
                sector,
            },
            reporting_year,
            reporting_quarter,
            ratios,
        })
    }
}

/// A required text's length in characters, after normalising, and no control characters.
fn check_text(
    column: &str,
    raw: &str,
    normalised: &str,
    min: usize,
    max: usize,
) -> Result<(), RowError> {
    if raw.chars().any(char::is_control) {
        return Err(RowError::field(
            column,
            raw,
            "must not contain control characters",
        ));
    }
    let length = normalised.chars().count();
    if length < min || length > max {
        return Err(RowError::field(
            column,
            raw,
            format!("must be {min} to {max} characters, got {length}"),
        ));
    }
    Ok(())
}

/// `YYYY` between 1900 and 2200; a spreadsheet's `2021.0` is 2021.
fn parse_year(text: &str) -> Option<i32> {
    let digits = text.strip_suffix(".0").unwrap_or(text);
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits
        .parse()
        .ok()
        .filter(|year| (1900..=2200).contains(year))
}

/// Why a row was not scored: the column and value when one field is at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    pub column: Option<String>,
    pub value: Option<String>,
    pub message: String,
}

/// Longest value an error keeps: enough to recognise it, not a copy of a huge cell.
const MAX_ERROR_VALUE_CHARS: usize = 200;

impl RowError {
    fn row(message: String) -> Self {
        Self {
            column: None,
            value: None,
            message,
        }
    }

    fn field(column: &str, value: &str, problem: impl Into<String>) -> Self {
        let value: String = value
            .chars()
            .take(MAX_ERROR_VALUE_CHARS)
            .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
            .collect();
        let problem = problem.into();
        Self {
            message: format!("{column}: {problem}"),
            column: Some(column.to_owned()),
            value: Some(value),
        }
    }
}

/// One row scored.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredRow {
    pub row_number: i32,
    pub input: NewPredictionInput,
    pub score: Score,
    /// In the bundle's component order.
    pub components: Vec<f64>,
    pub warnings: Vec<String>,
}

/// A chunk's rows, scored or refused, in row order within each list.
#[derive(Debug, Clone, Default)]
pub struct ScoredChunk {
    pub scored: Vec<ScoredRow>,
    pub errors: Vec<(i32, RowError)>,
}

/// Validates and scores `records` (with their data row numbers) with `bundle`,
/// [`BATCH_ROWS`] at a time through [`Bundle::score_batch`].
pub fn score_rows(
    bundle: &Bundle,
    columns: &Columns,
    records: impl IntoIterator<Item = (i32, StringRecord)>,
) -> Result<ScoredChunk, crate::scoring::BatchError> {
    let names = ratio_names(columns.kind);
    // Where each of the bundle's features is among the kind's ratios.
    let feature_ratio: Vec<Option<usize>> = bundle
        .manifest()
        .features
        .iter()
        .map(|feature| names.iter().position(|name| *name == feature.name))
        .collect();
    let width = bundle.feature_count();
    let mut chunk = ScoredChunk::default();
    let mut pending: Vec<(i32, NewPredictionInput)> = Vec::with_capacity(BATCH_ROWS);
    let mut features: Vec<f64> = Vec::with_capacity(BATCH_ROWS * width);
    let mut row = vec![0.0; width];
    let mut output = BatchOutput::default();
    let mut records = records.into_iter().peekable();
    while records.peek().is_some() {
        for (row_number, record) in records.by_ref().take(BATCH_ROWS) {
            let input = match columns.parse_row(&record) {
                Ok(input) => input,
                Err(error) => {
                    chunk.errors.push((row_number, error));
                    continue;
                }
            };
            for (value, ratio) in row.iter_mut().zip(&feature_ratio) {
                *value = ratio
                    .and_then(|index| input.ratios[index])
                    .unwrap_or(f64::NAN);
            }
            if let Err(error) = bundle.validate(&row) {
                chunk
                    .errors
                    .push((row_number, RowError::row(error.to_string())));
                continue;
            }
            features.extend_from_slice(&row);
            pending.push((row_number, input));
        }
        if pending.is_empty() {
            continue;
        }
        bundle.score_batch(&features, &mut output)?;
        let components = bundle.component_names().count().max(1);
        for ((index, (row_number, input)), probabilities) in pending
            .drain(..)
            .enumerate()
            .zip(output.component_probabilities.chunks_exact(components))
        {
            let warnings = bundle
                .range_warnings(&features[index * width..(index + 1) * width])
                .iter()
                .map(ToString::to_string)
                .collect();
            chunk.scored.push(ScoredRow {
                row_number,
                input,
                score: output.scores[index],
                components: probabilities.to_vec(),
                warnings,
            });
        }
        features.clear();
    }
    Ok(chunk)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annual_header() -> Vec<&'static str> {
        vec![
            " Company_Symbol ",
            "company_name",
            "market_cap",
            "sector",
            "reporting_year",
            "reporting_quarter",
            "long_term_debt_to_total_capital",
            "total_debt_to_ebitda",
            "net_income_margin",
            "ebit_to_interest_expense",
            "return_on_assets",
            "Analyst",
        ]
    }

    #[test]
    fn header_names_match_ignoring_case_and_spaces_and_extras_are_kept() {
        let (columns, stored) = Columns::from_header(ModelKind::Annual, &annual_header()).unwrap();
        assert_eq!(stored[0], "company_symbol");
        assert_eq!(stored[11], "Analyst");
        assert_eq!(columns.width(), 12);
    }

    #[test]
    fn header_problems_are_named() {
        let mut header = annual_header();
        header.retain(|name| *name != "return_on_assets" && *name != "company_name");
        let error = Columns::from_header(ModelKind::Annual, &header).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("missing columns: company_name, return_on_assets"),
            "{error}"
        );
        let mut header = annual_header();
        header.push("COMPANY_SYMBOL");
        assert_eq!(
            Columns::from_header(ModelKind::Annual, &header).unwrap_err(),
            HeaderError::Duplicate("company_symbol".into())
        );
        let mut header = annual_header();
        header.push("probability");
        assert!(matches!(
            Columns::from_header(ModelKind::Annual, &header),
            Err(HeaderError::Reserved(_))
        ));
        let error = Columns::from_header(ModelKind::Quarterly, &annual_header()).unwrap_err();
        assert!(error.to_string().contains("sga_margin"), "{error}");
    }

    fn parse(fields: &[&str]) -> Result<NewPredictionInput, RowError> {
        let (columns, _) = Columns::from_header(ModelKind::Annual, &annual_header()).unwrap();
        columns.parse_row(&StringRecord::from(fields.to_vec()))
    }

    #[test]
    fn rows_normalise_as_single_predictions_do_and_missing_is_never_zero() {
        let input = parse(&[
            " hpe ",
            " Hewlett ",
            "",
            " Tech ",
            "2021.0",
            "q4",
            "NaN",
            "",
            "NM",
            "n/a",
            "-3.5",
            "x",
        ])
        .unwrap();
        assert_eq!(input.company.symbol, "HPE");
        assert_eq!(input.company.name, "Hewlett");
        assert_eq!(input.company.market_cap, None);
        assert_eq!(input.company.sector.as_deref(), Some("Tech"));
        assert_eq!(input.reporting_year, 2021);
        assert_eq!(input.reporting_quarter, Some(Quarter::Q4));
        assert_eq!(input.ratios, vec![None, None, None, None, Some(-3.5)]);
    }

    #[test]
    fn bad_fields_name_column_and_value() {
        let good = [
            "A", "A Inc", "1e9", "", "2020", "", "1", "2", "3", "4", "5", "",
        ];
        for (index, value, column) in [
            (6, "twelve", "long_term_debt_to_total_capital"),
            (7, "inf", "total_debt_to_ebitda"),
            (2, "-5", "market_cap"),
            (4, "20", "reporting_year"),
            (5, "Q5", "reporting_quarter"),
            (0, "A B", "company_symbol"),
            (0, "ẞ\u{0}", "company_symbol"),
            (0, &"ß".repeat(20), "company_symbol"),
            (1, "", "company_name"),
        ] {
            let mut fields = good;
            fields[index] = value;
            let error = parse(&fields).unwrap_err();
            assert_eq!(
                error.column.as_deref(),
                Some(column),
                "{value:?}: {error:?}"
            );
            assert!(error.message.starts_with(column), "{error:?}");
        }
        let error = parse(&good[..5]).unwrap_err();
        assert_eq!(error.column, None);
        assert!(error.message.contains("5 fields"), "{error:?}");
        assert!(parse(&good).is_ok());
    }
}
