//! The wire shapes of `/api/v1/predictions`: requests with their checks and
//! examples, responses, query enums, and their conversions from and to the
//! domain's records.

use accunode_core::domain::Page;
use accunode_core::domain::predictions::{self, NewPredictionInput};
use accunode_core::scoring::ModelKind;
use chrono::{DateTime, Utc};
use poem_openapi::payload::Json;
use poem_openapi::types::{ParseFromJSON, ToJSON};
use poem_openapi::{ApiResponse, Enum, Object};
use serde::Deserialize;
use uuid::Uuid;

use crate::api::shared::{Paging, check_company, new_company};
use crate::body::{Problems, Validate};
use crate::error::ApiError;

/// The company a prediction is for.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct PredictionCompany {
    pub id: Uuid,
    pub symbol: String,
    pub name: String,
    pub sector: Option<String>,
    pub market_cap: Option<f64>,
}

/// One ensemble component's own probability.
#[derive(Debug, Clone, Object)]
pub struct ComponentProbability {
    pub name: String,
    pub probability: f64,
}

/// The model bundle that scored a prediction.
#[derive(Debug, Clone, Object)]
pub struct PredictionModel {
    pub id: String,
    pub version: String,
}

/// What every prediction carries, whatever its kind.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct PredictionFields {
    pub id: Uuid,
    pub company: PredictionCompany,
    /// `YYYY`.
    pub reporting_year: String,
    /// `Q1` to `Q4`; absent for an annual prediction of a whole year.
    pub reporting_quarter: Option<String>,
    /// Probability of default, 0 to 1, in full double precision.
    pub probability: f64,
    /// `LOW`, `MEDIUM`, `HIGH` or `CRITICAL`, by the bundle's thresholds.
    pub risk_level: String,
    /// 0.5 to 1: how far the probability is from a coin toss.
    pub confidence: f64,
    pub components: Vec<ComponentProbability>,
    /// One warning per ratio outside the range the model was fitted on, e.g.
    /// `outside_fitted_range: long_term_debt_to_total_capital=113.5 (fitted 0–100)`
    /// (`(fitted at least 0)` for a one-sided range). Such a ratio is scored
    /// all the same: the warning is for the reader, who may trust the
    /// probability less. Always present, usually empty.
    pub warnings: Vec<String>,
    pub model: PredictionModel,
    /// `personal`, `organization` or `system`.
    pub access_level: String,
    pub organization_id: Option<Uuid>,
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The five annual ratios as scored; an absent one was scored as Missing.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct AnnualRatios {
    pub long_term_debt_to_total_capital: Option<f64>,
    pub total_debt_to_ebitda: Option<f64>,
    pub net_income_margin: Option<f64>,
    pub ebit_to_interest_expense: Option<f64>,
    pub return_on_assets: Option<f64>,
}

/// The four quarterly ratios as scored; an absent one was scored as Missing.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct QuarterlyRatios {
    pub total_debt_to_ebitda: Option<f64>,
    pub sga_margin: Option<f64>,
    pub long_term_debt_to_total_capital: Option<f64>,
    pub return_on_capital: Option<f64>,
}

#[derive(Debug, Clone, Object)]
pub struct AnnualPrediction {
    #[oai(flatten)]
    pub prediction: PredictionFields,
    pub ratios: AnnualRatios,
}

#[derive(Debug, Clone, Object)]
pub struct QuarterlyPrediction {
    #[oai(flatten)]
    pub prediction: PredictionFields,
    pub ratios: QuarterlyRatios,
}

/// Scores an annual report and stores the prediction. The company is created,
/// or reused by symbol, in the caller's scope. A ratio that is `null` or
/// absent is scored as Missing. Any other finite number is scored; one outside
/// the range the model was fitted on comes back with a warning in `warnings`.
#[derive(Debug, Clone, Object, Deserialize)]
#[oai(example)]
pub struct AnnualPredictionRequest {
    /// 1 to 20 characters; stored upper-case.
    #[oai(validator(pattern = r"^[!-~]{1,20}$"))]
    pub company_symbol: String,
    #[oai(validator(
        max_length = 255,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"
    ))]
    pub company_name: String,
    /// Greater than 0.
    pub market_cap: Option<f64>,
    #[oai(validator(max_length = 100))]
    pub sector: Option<String>,
    /// `YYYY`.
    #[oai(validator(pattern = r"^(19[0-9]{2}|2[01][0-9]{2}|2200)$"))]
    pub reporting_year: String,
    /// `Q1` to `Q4`, when the annual figures are as of a quarter.
    #[oai(validator(pattern = r"^Q[1-4]$"))]
    pub reporting_quarter: Option<String>,
    /// Percent; the models were fitted on 0 to 100: a value outside (above 100
    /// with negative equity) is scored, with a warning.
    #[oai(nullable)]
    pub long_term_debt_to_total_capital: Option<f64>,
    /// Multiple; the models were fitted on at least 0: a negative value
    /// (negative EBITDA) is scored, with a warning.
    #[oai(nullable)]
    pub total_debt_to_ebitda: Option<f64>,
    /// Percent; the models were fitted on -100 to 100: a value outside is
    /// scored, with a warning.
    #[oai(nullable)]
    pub net_income_margin: Option<f64>,
    /// Multiple; the models were fitted on at least 0: a negative value is
    /// scored, with a warning.
    #[oai(nullable)]
    pub ebit_to_interest_expense: Option<f64>,
    /// Percent; the models were fitted on -100 to 100: a value outside is
    /// scored, with a warning.
    #[oai(nullable)]
    pub return_on_assets: Option<f64>,
}

/// Scores a quarterly report and stores the prediction. The company is
/// created, or reused by symbol, in the caller's scope. A ratio that is `null`
/// or absent is scored as Missing. Any other finite number is scored; one
/// outside the range the model was fitted on comes back with a warning in
/// `warnings`.
#[derive(Debug, Clone, Object, Deserialize)]
#[oai(example)]
pub struct QuarterlyPredictionRequest {
    #[oai(validator(pattern = r"^[!-~]{1,20}$"))]
    pub company_symbol: String,
    #[oai(validator(
        max_length = 255,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"
    ))]
    pub company_name: String,
    pub market_cap: Option<f64>,
    #[oai(validator(max_length = 100))]
    pub sector: Option<String>,
    /// `YYYY`.
    #[oai(validator(pattern = r"^(19[0-9]{2}|2[01][0-9]{2}|2200)$"))]
    pub reporting_year: String,
    /// `Q1` to `Q4`.
    #[oai(validator(pattern = r"^Q[1-4]$"))]
    pub reporting_quarter: String,
    /// Multiple.
    #[oai(nullable)]
    pub total_debt_to_ebitda: Option<f64>,
    /// Percent.
    #[oai(nullable)]
    pub sga_margin: Option<f64>,
    /// Percent; the models were fitted on 0 to 100: a value outside (above 100
    /// with negative equity) is scored, with a warning.
    #[oai(nullable)]
    pub long_term_debt_to_total_capital: Option<f64>,
    /// Percent.
    #[oai(nullable)]
    pub return_on_capital: Option<f64>,
}

/// What scoring needs from either request kind.
pub trait PredictionRequest {
    const KIND: ModelKind;
    fn company(&self) -> (&str, &str, Option<f64>, Option<&str>);
    fn reporting_year(&self) -> &str;
    fn reporting_quarter(&self) -> Option<&str>;
    /// The ratios in the kind's standard order ([`predictions::ratio_names`]).
    fn ratios(&self) -> Vec<Option<f64>>;

    /// The request as the domain scores it; the request is validated already.
    fn input(&self) -> Result<NewPredictionInput, ApiError> {
        let (symbol, name, market_cap, sector) = self.company();
        Ok(NewPredictionInput {
            kind: Self::KIND,
            company: new_company(symbol, name, market_cap, sector),
            reporting_year: parse_year(self.reporting_year())
                .ok_or_else(|| ApiError::invalid_field("body.reporting_year", "must be YYYY"))?,
            reporting_quarter: self
                .reporting_quarter()
                .map(str::parse)
                .transpose()
                .map_err(|problem: String| {
                    ApiError::invalid_field("body.reporting_quarter", problem)
                })?,
            ratios: self.ratios(),
        })
    }
}

impl PredictionRequest for AnnualPredictionRequest {
    const KIND: ModelKind = ModelKind::Annual;
    fn company(&self) -> (&str, &str, Option<f64>, Option<&str>) {
        (
            &self.company_symbol,
            &self.company_name,
            self.market_cap,
            self.sector.as_deref(),
        )
    }
    fn reporting_year(&self) -> &str {
        &self.reporting_year
    }
    fn reporting_quarter(&self) -> Option<&str> {
        self.reporting_quarter.as_deref()
    }
    fn ratios(&self) -> Vec<Option<f64>> {
        vec![
            self.long_term_debt_to_total_capital,
            self.total_debt_to_ebitda,
            self.net_income_margin,
            self.ebit_to_interest_expense,
            self.return_on_assets,
        ]
    }
}

impl PredictionRequest for QuarterlyPredictionRequest {
    const KIND: ModelKind = ModelKind::Quarterly;
    fn company(&self) -> (&str, &str, Option<f64>, Option<&str>) {
        (
            &self.company_symbol,
            &self.company_name,
            self.market_cap,
            self.sector.as_deref(),
        )
    }
    fn reporting_year(&self) -> &str {
        &self.reporting_year
    }
    fn reporting_quarter(&self) -> Option<&str> {
        Some(&self.reporting_quarter)
    }
    fn ratios(&self) -> Vec<Option<f64>> {
        vec![
            self.total_debt_to_ebitda,
            self.sga_margin,
            self.long_term_debt_to_total_capital,
            self.return_on_capital,
        ]
    }
}

/// Checks every field but the ratios: every finite ratio is scored, and the
/// serving bundle warns about one outside the range it was fitted on.
fn check_request(request: &impl PredictionRequest, problems: &mut Problems) {
    let (symbol, name, market_cap, sector) = request.company();
    check_company(
        problems,
        ("company_symbol", "company_name"),
        symbol,
        name,
        market_cap,
        sector,
    );
    if parse_year(request.reporting_year()).is_none() {
        problems.add(
            "reporting_year",
            format!(
                "must be a year as YYYY between 1900 and 2200, got {:?}",
                request.reporting_year()
            ),
        );
    }
    if let Some(quarter) = request.reporting_quarter()
        && quarter.parse::<predictions::Quarter>().is_err()
    {
        problems.add(
            "reporting_quarter",
            format!("must be Q1, Q2, Q3 or Q4, got {quarter:?}"),
        );
    }
}

fn parse_year(text: &str) -> Option<i32> {
    if text.len() != 4 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse()
        .ok()
        .filter(|year| (1900..=2200).contains(year))
}

impl Validate for AnnualPredictionRequest {
    fn validate(&self, problems: &mut Problems) {
        check_request(self, problems);
    }
}

impl Validate for QuarterlyPredictionRequest {
    fn validate(&self, problems: &mut Problems) {
        check_request(self, problems);
    }
}

fn fields_of(prediction: &predictions::Prediction) -> PredictionFields {
    PredictionFields {
        id: prediction.id.into(),
        company: PredictionCompany {
            id: prediction.company.id.into(),
            symbol: prediction.company.symbol.clone(),
            name: prediction.company.name.clone(),
            sector: prediction.company.sector.clone(),
            market_cap: prediction.company.market_cap,
        },
        reporting_year: format!("{:04}", prediction.reporting_year),
        reporting_quarter: prediction
            .reporting_quarter
            .map(|quarter| quarter.as_str().to_owned()),
        probability: prediction.probability,
        risk_level: prediction.risk_level.as_str().to_owned(),
        confidence: prediction.confidence,
        components: prediction
            .components
            .iter()
            .map(|(name, probability)| ComponentProbability {
                name: name.clone(),
                probability: *probability,
            })
            .collect(),
        warnings: prediction.warnings.clone(),
        model: PredictionModel {
            id: prediction.model_id.clone(),
            version: prediction.model_version.clone(),
        },
        access_level: prediction.access_level.as_str().to_owned(),
        organization_id: prediction.organization_id.map(Uuid::from),
        created_by: prediction.created_by.map(Uuid::from),
        created_at: prediction.created_at,
        updated_at: prediction.updated_at,
    }
}

/// A response shape built from a stored prediction.
pub trait PredictionView: Sized + ToJSON + ParseFromJSON {
    const KIND: ModelKind;
    type Page;
    fn from_stored(prediction: &predictions::Prediction) -> Self;
    fn page(listed: Page<Self>) -> Self::Page;
}

impl PredictionView for AnnualPrediction {
    const KIND: ModelKind = ModelKind::Annual;
    type Page = AnnualPredictionPage;
    fn page(listed: Page<Self>) -> Self::Page {
        AnnualPredictionPage {
            paging: Paging::from(&listed),
            items: listed.items,
        }
    }
    fn from_stored(prediction: &predictions::Prediction) -> Self {
        let r = &prediction.ratios;
        Self {
            prediction: fields_of(prediction),
            ratios: AnnualRatios {
                long_term_debt_to_total_capital: r[0],
                total_debt_to_ebitda: r[1],
                net_income_margin: r[2],
                ebit_to_interest_expense: r[3],
                return_on_assets: r[4],
            },
        }
    }
}

impl PredictionView for QuarterlyPrediction {
    const KIND: ModelKind = ModelKind::Quarterly;
    type Page = QuarterlyPredictionPage;
    fn page(listed: Page<Self>) -> Self::Page {
        QuarterlyPredictionPage {
            paging: Paging::from(&listed),
            items: listed.items,
        }
    }
    fn from_stored(prediction: &predictions::Prediction) -> Self {
        let r = &prediction.ratios;
        Self {
            prediction: fields_of(prediction),
            ratios: QuarterlyRatios {
                total_debt_to_ebitda: r[0],
                sga_margin: r[1],
                long_term_debt_to_total_capital: r[2],
                return_on_capital: r[3],
            },
        }
    }
}

#[derive(Debug, Clone, Object)]
pub struct AnnualPredictionPage {
    pub items: Vec<AnnualPrediction>,
    #[oai(flatten)]
    pub paging: Paging,
}

#[derive(Debug, Clone, Object)]
pub struct QuarterlyPredictionPage {
    pub items: Vec<QuarterlyPrediction>,
    #[oai(flatten)]
    pub paging: Paging,
}

// No doc comments on these two: they would become the schemas' descriptions.
#[derive(Debug, Clone, Copy, Enum)]
#[oai(remote = "accunode_core::scoring::RiskLevel")]
pub enum RiskLevel {
    #[oai(rename = "LOW")]
    Low,
    #[oai(rename = "MEDIUM")]
    Medium,
    #[oai(rename = "HIGH")]
    High,
    #[oai(rename = "CRITICAL")]
    Critical,
}

#[derive(Debug, Clone, Copy, Enum)]
#[oai(remote = "accunode_core::domain::predictions::Quarter")]
pub enum Quarter {
    Q1,
    Q2,
    Q3,
    Q4,
}

#[derive(ApiResponse)]
pub enum CreatedAnnual {
    /// Scored and stored.
    #[oai(status = 201)]
    Created(Json<AnnualPrediction>),
}

#[derive(ApiResponse)]
pub enum CreatedQuarterly {
    /// Scored and stored.
    #[oai(status = 201)]
    Created(Json<QuarterlyPrediction>),
}

impl poem_openapi::types::Example for AnnualPredictionRequest {
    fn example() -> Self {
        Self {
            company_symbol: "ACME".into(),
            company_name: "Acme Corporation".into(),
            market_cap: Some(1.5e9),
            sector: Some("Industrials".into()),
            reporting_year: "2024".into(),
            reporting_quarter: None,
            long_term_debt_to_total_capital: Some(35.0),
            total_debt_to_ebitda: Some(2.5),
            net_income_margin: Some(8.0),
            ebit_to_interest_expense: Some(6.0),
            return_on_assets: Some(5.0),
        }
    }
}

impl poem_openapi::types::Example for QuarterlyPredictionRequest {
    fn example() -> Self {
        Self {
            company_symbol: "ACME".into(),
            company_name: "Acme Corporation".into(),
            market_cap: Some(1.5e9),
            sector: Some("Industrials".into()),
            reporting_year: "2024".into(),
            reporting_quarter: "Q2".into(),
            total_debt_to_ebitda: Some(3.0),
            sga_margin: Some(12.0),
            long_term_debt_to_total_capital: Some(40.0),
            return_on_capital: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body whose ratio named `ratio_names(kind)[i]` is `i`.
    fn numbered_ratios(kind: ModelKind, quarter: Option<&str>) -> serde_json::Value {
        let mut body = serde_json::json!({
            "company_symbol": "ACME",
            "company_name": "Acme",
            "reporting_year": "2024",
            "reporting_quarter": quarter,
        });
        for (index, name) in predictions::ratio_names(kind).into_iter().enumerate() {
            body[name] = serde_json::json!(index as f64);
        }
        body
    }

    fn numbered(count: usize) -> Vec<Option<f64>> {
        (0..count).map(|index| Some(index as f64)).collect()
    }

    #[test]
    fn requests_give_their_ratios_in_the_standard_order() {
        let annual: AnnualPredictionRequest =
            serde_json::from_value(numbered_ratios(ModelKind::Annual, None)).unwrap();
        assert_eq!(annual.input().unwrap().ratios, numbered(5));
        let quarterly: QuarterlyPredictionRequest =
            serde_json::from_value(numbered_ratios(ModelKind::Quarterly, Some("Q2"))).unwrap();
        let input = quarterly.input().unwrap();
        assert_eq!(input.ratios, numbered(4));
        assert_eq!(input.reporting_quarter, Some(predictions::Quarter::Q2));
    }
}
