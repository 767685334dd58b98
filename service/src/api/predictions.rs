//! `/api/v1/predictions`: score and store annual and quarterly predictions,
//! list, read and delete them within the caller's scopes.
//!
//! Both kinds run through the same generic helpers; only the request and
//! ratio shapes differ. A request is scored by the one bundle serving its kind
//! at that moment (taken once, so a model swap mid-request cannot mix
//! versions), and the answer names that bundle's id and version.

use accunode_core::domain::predictions::{self, NewPrediction, PredictionQuery};
use accunode_core::domain::{Caller, Page, scope_key};
use accunode_core::scoring::{ModelKind, ScoringError};
use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::types::{ParseFromJSON, ToJSON};
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use serde::Deserialize;
use uuid::Uuid;

use super::ApiTags;
use super::auth::NoContent;
use super::companies::{check_company, default_limit, default_page, new_company};
use crate::auth::BearerAuth;
use crate::body::{JsonBody, Problems, Validate};
use crate::cache::CachedPrediction;
use crate::error::ApiError;
use crate::startup::AppState;

#[derive(Default)]
pub struct PredictionsApi;

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
/// absent is scored as Missing.
#[derive(Debug, Clone, Object, Deserialize)]
#[oai(example)]
pub struct AnnualPredictionRequest {
    /// 1 to 20 characters; stored upper-case.
    #[oai(validator(min_length = 1, max_length = 20))]
    pub company_symbol: String,
    #[oai(validator(min_length = 1, max_length = 255))]
    pub company_name: String,
    /// Greater than 0.
    pub market_cap: Option<f64>,
    #[oai(validator(max_length = 100))]
    pub sector: Option<String>,
    /// `YYYY`.
    #[oai(validator(pattern = r"^\d{4}$"))]
    pub reporting_year: String,
    /// `Q1` to `Q4`, when the annual figures are as of a quarter.
    #[oai(validator(pattern = r"^Q[1-4]$"))]
    pub reporting_quarter: Option<String>,
    /// Percent, 0 to 100.
    #[oai(nullable)]
    pub long_term_debt_to_total_capital: Option<f64>,
    /// Multiple, at least 0.
    #[oai(nullable)]
    pub total_debt_to_ebitda: Option<f64>,
    /// Percent, -100 to 100.
    #[oai(nullable)]
    pub net_income_margin: Option<f64>,
    /// Multiple, at least 0.
    #[oai(nullable)]
    pub ebit_to_interest_expense: Option<f64>,
    /// Percent, -100 to 100.
    #[oai(nullable)]
    pub return_on_assets: Option<f64>,
}

/// Scores a quarterly report and stores the prediction. The company is
/// created, or reused by symbol, in the caller's scope. A ratio that is `null`
/// or absent is scored as Missing.
#[derive(Debug, Clone, Object, Deserialize)]
#[oai(example)]
pub struct QuarterlyPredictionRequest {
    #[oai(validator(min_length = 1, max_length = 20))]
    pub company_symbol: String,
    #[oai(validator(min_length = 1, max_length = 255))]
    pub company_name: String,
    pub market_cap: Option<f64>,
    #[oai(validator(max_length = 100))]
    pub sector: Option<String>,
    /// `YYYY`.
    #[oai(validator(pattern = r"^\d{4}$"))]
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
    /// Percent, 0 to 100.
    #[oai(nullable)]
    pub long_term_debt_to_total_capital: Option<f64>,
    /// Percent.
    #[oai(nullable)]
    pub return_on_capital: Option<f64>,
}

/// What scoring needs from either request kind.
trait PredictionRequest {
    const KIND: ModelKind;
    fn company(&self) -> (&str, &str, Option<f64>, Option<&str>);
    fn reporting_year(&self) -> &str;
    fn reporting_quarter(&self) -> Option<&str>;
    /// The ratios by name, in the kind's standard order.
    fn ratios(&self) -> Vec<(&'static str, Option<f64>)>;
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
    fn ratios(&self) -> Vec<(&'static str, Option<f64>)> {
        vec![
            (
                "long_term_debt_to_total_capital",
                self.long_term_debt_to_total_capital,
            ),
            ("total_debt_to_ebitda", self.total_debt_to_ebitda),
            ("net_income_margin", self.net_income_margin),
            ("ebit_to_interest_expense", self.ebit_to_interest_expense),
            ("return_on_assets", self.return_on_assets),
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
    fn ratios(&self) -> Vec<(&'static str, Option<f64>)> {
        vec![
            ("total_debt_to_ebitda", self.total_debt_to_ebitda),
            ("sga_margin", self.sga_margin),
            (
                "long_term_debt_to_total_capital",
                self.long_term_debt_to_total_capital,
            ),
            ("return_on_capital", self.return_on_capital),
        ]
    }
}

/// Checks every field but the ratio ranges, which the serving bundle decides.
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
        && !matches!(quarter, "Q1" | "Q2" | "Q3" | "Q4")
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
        id: prediction.id,
        company: PredictionCompany {
            id: prediction.company.id,
            symbol: prediction.company.symbol.clone(),
            name: prediction.company.name.clone(),
            sector: prediction.company.sector.clone(),
            market_cap: prediction.company.market_cap,
        },
        reporting_year: format!("{:04}", prediction.reporting_year),
        reporting_quarter: prediction.reporting_quarter.clone(),
        probability: prediction.probability,
        risk_level: prediction.risk_level.clone(),
        confidence: prediction.confidence,
        components: prediction
            .components
            .iter()
            .map(|(name, probability)| ComponentProbability {
                name: name.clone(),
                probability: *probability,
            })
            .collect(),
        model: PredictionModel {
            id: prediction.model_id.clone(),
            version: prediction.model_version.clone(),
        },
        access_level: prediction.access_level.as_str().to_owned(),
        organization_id: prediction.organization_id,
        created_by: prediction.created_by,
        created_at: prediction.created_at,
        updated_at: prediction.updated_at,
    }
}

/// A response shape built from a stored prediction.
trait PredictionView: Sized + ToJSON + ParseFromJSON {
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
            pages: listed.pages(),
            total: listed.total,
            page: listed.page,
            limit: listed.limit,
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
            pages: listed.pages(),
            total: listed.total,
            page: listed.page,
            limit: listed.limit,
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

/// Scores `request` with the bundle serving its kind and stores the result.
async fn create<R, V>(state: &AppState, caller: &Caller, request: &R) -> Result<V, ApiError>
where
    R: PredictionRequest,
    V: PredictionView,
{
    let bundle = state.models.get(R::KIND);
    let given = request.ratios();
    let mut row = Vec::with_capacity(bundle.feature_count());
    for feature in &bundle.manifest().features {
        let value = given
            .iter()
            .find(|(name, _)| *name == feature.name)
            .ok_or_else(|| {
                ApiError::internal(format!(
                    "bundle {} takes {}, which the API does not collect",
                    bundle.id(),
                    feature.name
                ))
            })?
            .1;
        if value.is_some_and(|v| !v.is_finite()) {
            return Err(ApiError::invalid_field(
                &format!("body.{}", feature.name),
                "must be a finite number",
            ));
        }
        row.push(value.unwrap_or(f64::NAN));
    }
    let scored = bundle.score(&row).map_err(|error| match &error {
        ScoringError::OutOfRange { feature, .. } => {
            ApiError::invalid_field(&format!("body.{feature}"), strip_feature(&error, feature))
        }
        _ => ApiError::internal(error),
    })?;
    // Store in the standard column order, whatever order the bundle takes.
    let ratios = predictions::ratio_names(R::KIND)
        .iter()
        .map(|name| {
            given
                .iter()
                .find(|(given_name, _)| given_name == name)
                .and_then(|(_, value)| *value)
        })
        .collect();
    let (symbol, name, market_cap, sector) = request.company();
    let new = NewPrediction {
        kind: R::KIND,
        company: new_company(symbol, name, market_cap, sector),
        reporting_year: parse_year(request.reporting_year())
            .ok_or_else(|| ApiError::invalid_field("body.reporting_year", "must be YYYY"))?,
        reporting_quarter: request.reporting_quarter().map(str::to_owned),
        ratios,
        probability: scored.score.probability,
        risk_level: scored.score.risk_level.as_str().to_owned(),
        confidence: scored.score.confidence,
        components: scored.components,
        model_id: bundle.id().to_owned(),
        model_version: bundle.version().to_owned(),
    };
    let stored = predictions::create(
        &state.dependencies.pool,
        caller,
        &new,
        state.settings.api.features.max_predictions_per_user,
    )
    .await?;
    Ok(V::from_stored(&stored))
}

/// "long_term_debt_to_total_capital must be between 0 and 100, got 140" → "must be …".
fn strip_feature(error: &ScoringError, feature: &str) -> String {
    let text = error.to_string();
    text.strip_prefix(feature)
        .map_or(text.clone(), |rest| rest.trim_start().to_owned())
}

/// A prediction the caller can see, from the cache when it is there.
async fn read<V: PredictionView>(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
) -> Result<V, ApiError> {
    let cache = &state.prediction_cache;
    if let Some(entry) = cache.get(V::KIND, id).await {
        if !caller.visible_scope_keys().contains(&entry.scope_key) {
            return Err(ApiError::not_found("No such prediction."));
        }
        if let Ok(view) = V::parse_from_json(Some(entry.body)) {
            return Ok(view);
        }
    }
    let stored = predictions::get(&state.dependencies.pool, caller, V::KIND, id).await?;
    let view = V::from_stored(&stored);
    cache
        .put(
            V::KIND,
            id,
            &CachedPrediction {
                scope_key: scope_key(
                    stored.access_level,
                    stored.organization_id,
                    stored.created_by,
                ),
                body: view.to_json().unwrap_or_default(),
            },
        )
        .await;
    Ok(view)
}

async fn list<V: PredictionView>(
    state: &AppState,
    caller: &Caller,
    query: PredictionQuery,
) -> Result<V::Page, ApiError> {
    let listed = predictions::list(&state.dependencies.pool, caller, V::KIND, &query).await?;
    Ok(V::page(
        listed.map(|prediction| V::from_stored(&prediction)),
    ))
}

async fn delete(
    state: &AppState,
    caller: &Caller,
    kind: ModelKind,
    id: Uuid,
) -> Result<(), ApiError> {
    predictions::delete(&state.dependencies.pool, caller, kind, id).await?;
    state.prediction_cache.forget(kind, &[id]).await;
    Ok(())
}

#[derive(Debug, Clone, Object)]
pub struct AnnualPredictionPage {
    pub items: Vec<AnnualPrediction>,
    pub total: i64,
    pub page: u32,
    pub limit: u32,
    pub pages: u32,
}

#[derive(Debug, Clone, Object)]
pub struct QuarterlyPredictionPage {
    pub items: Vec<QuarterlyPrediction>,
    pub total: i64,
    pub page: u32,
    pub limit: u32,
    pub pages: u32,
}

#[derive(Debug, Clone, Copy, Enum)]
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

impl RiskLevel {
    fn as_str(self) -> &'static str {
        match self {
            Self::Low => "LOW",
            Self::Medium => "MEDIUM",
            Self::High => "HIGH",
            Self::Critical => "CRITICAL",
        }
    }
}

#[derive(Debug, Clone, Copy, Enum)]
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

fn quarterly_enabled(state: &AppState) -> Result<(), ApiError> {
    if state.settings.api.features.quarterly_predictions {
        Ok(())
    } else {
        Err(ApiError::unavailable(
            "feature_disabled",
            "Quarterly predictions are switched off on this server (ENABLE_QUARTERLY_PREDICTIONS).",
        ))
    }
}

#[allow(clippy::too_many_arguments)]
fn prediction_query(
    page: u32,
    limit: u32,
    company_symbol: Option<String>,
    reporting_year: Option<i32>,
    reporting_quarter: Option<Quarter>,
    sector: Option<String>,
    risk_level: Option<RiskLevel>,
) -> PredictionQuery {
    PredictionQuery {
        page,
        limit,
        company_symbol: company_symbol.filter(|s| !s.trim().is_empty()),
        reporting_year,
        reporting_quarter: reporting_quarter.map(|q| format!("{q:?}")),
        sector: sector.filter(|s| !s.trim().is_empty()),
        risk_level: risk_level.map(|level| level.as_str().to_owned()),
    }
}

#[OpenApi(prefix_path = "/api/v1/predictions", tag = "ApiTags::Predictions")]
impl PredictionsApi {
    /// Scores an annual report and stores the prediction.
    #[oai(
        path = "/annual",
        method = "post",
        operation_id = "create_annual_prediction"
    )]
    async fn create_annual(
        &self,
        auth: BearerAuth,
        state: Data<&AppState>,
        body: JsonBody<AnnualPredictionRequest>,
    ) -> Result<CreatedAnnual, ApiError> {
        let created = create(&state, &auth.0, &body.0).await?;
        Ok(CreatedAnnual::Created(Json(created)))
    }

    /// The annual predictions the caller can see, newest first.
    #[oai(
        path = "/annual",
        method = "get",
        operation_id = "list_annual_predictions"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn list_annual(
        &self,
        auth: BearerAuth,
        state: Data<&AppState>,
        #[oai(default = "default_page", validator(minimum(value = "1")))] page: Query<u32>,
        #[oai(
            default = "default_limit",
            validator(minimum(value = "1"), maximum(value = "100"))
        )]
        limit: Query<u32>,
        company_symbol: Query<Option<String>>,
        #[oai(validator(minimum(value = "1900"), maximum(value = "2200")))] reporting_year: Query<
            Option<i32>,
        >,
        reporting_quarter: Query<Option<Quarter>>,
        sector: Query<Option<String>>,
        risk_level: Query<Option<RiskLevel>>,
    ) -> Result<Json<AnnualPredictionPage>, ApiError> {
        let query = prediction_query(
            page.0,
            limit.0,
            company_symbol.0,
            reporting_year.0,
            reporting_quarter.0,
            sector.0,
            risk_level.0,
        );
        Ok(Json(
            list::<AnnualPrediction>(&state, &auth.0, query).await?,
        ))
    }

    /// An annual prediction the caller can see.
    #[oai(
        path = "/annual/:id",
        method = "get",
        operation_id = "get_annual_prediction"
    )]
    async fn get_annual(
        &self,
        auth: BearerAuth,
        state: Data<&AppState>,
        id: Path<Uuid>,
    ) -> Result<Json<AnnualPrediction>, ApiError> {
        Ok(Json(read(&state, &auth.0, id.0).await?))
    }

    /// Deletes an annual prediction (its creator, its scope's admins).
    #[oai(
        path = "/annual/:id",
        method = "delete",
        operation_id = "delete_annual_prediction"
    )]
    async fn delete_annual(
        &self,
        auth: BearerAuth,
        state: Data<&AppState>,
        id: Path<Uuid>,
    ) -> Result<NoContent, ApiError> {
        delete(&state, &auth.0, ModelKind::Annual, id.0).await?;
        Ok(NoContent::Done)
    }

    /// Scores a quarterly report and stores the prediction.
    #[oai(
        path = "/quarterly",
        method = "post",
        operation_id = "create_quarterly_prediction"
    )]
    async fn create_quarterly(
        &self,
        auth: BearerAuth,
        state: Data<&AppState>,
        body: JsonBody<QuarterlyPredictionRequest>,
    ) -> Result<CreatedQuarterly, ApiError> {
        quarterly_enabled(&state)?;
        let created = create(&state, &auth.0, &body.0).await?;
        Ok(CreatedQuarterly::Created(Json(created)))
    }

    /// The quarterly predictions the caller can see, newest first.
    #[oai(
        path = "/quarterly",
        method = "get",
        operation_id = "list_quarterly_predictions"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn list_quarterly(
        &self,
        auth: BearerAuth,
        state: Data<&AppState>,
        #[oai(default = "default_page", validator(minimum(value = "1")))] page: Query<u32>,
        #[oai(
            default = "default_limit",
            validator(minimum(value = "1"), maximum(value = "100"))
        )]
        limit: Query<u32>,
        company_symbol: Query<Option<String>>,
        #[oai(validator(minimum(value = "1900"), maximum(value = "2200")))] reporting_year: Query<
            Option<i32>,
        >,
        reporting_quarter: Query<Option<Quarter>>,
        sector: Query<Option<String>>,
        risk_level: Query<Option<RiskLevel>>,
    ) -> Result<Json<QuarterlyPredictionPage>, ApiError> {
        quarterly_enabled(&state)?;
        let query = prediction_query(
            page.0,
            limit.0,
            company_symbol.0,
            reporting_year.0,
            reporting_quarter.0,
            sector.0,
            risk_level.0,
        );
        Ok(Json(
            list::<QuarterlyPrediction>(&state, &auth.0, query).await?,
        ))
    }

    /// A quarterly prediction the caller can see.
    #[oai(
        path = "/quarterly/:id",
        method = "get",
        operation_id = "get_quarterly_prediction"
    )]
    async fn get_quarterly(
        &self,
        auth: BearerAuth,
        state: Data<&AppState>,
        id: Path<Uuid>,
    ) -> Result<Json<QuarterlyPrediction>, ApiError> {
        quarterly_enabled(&state)?;
        Ok(Json(read(&state, &auth.0, id.0).await?))
    }

    /// Deletes a quarterly prediction (its creator, its scope's admins).
    #[oai(
        path = "/quarterly/:id",
        method = "delete",
        operation_id = "delete_quarterly_prediction"
    )]
    async fn delete_quarterly(
        &self,
        auth: BearerAuth,
        state: Data<&AppState>,
        id: Path<Uuid>,
    ) -> Result<NoContent, ApiError> {
        quarterly_enabled(&state)?;
        delete(&state, &auth.0, ModelKind::Quarterly, id.0).await?;
        Ok(NoContent::Done)
    }
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
