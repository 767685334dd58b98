//! Annual and quarterly predictions: scored and stored with their inputs, score
//! and model, listed and read within the caller's scopes.
//!
//! Both kinds share one code path: the table and its ratio columns follow from
//! [`ModelKind`] (the ratio columns are the kind's standard feature names, in
//! the models' order). [`score_and_store`] is the one way a prediction is made,
//! for a request of the API and for a row of an uploaded file alike.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Postgres, QueryBuilder, Row};

use super::companies::{self, NewCompany};
use super::listing::{KeyKind, ListStatements, Walk};
use super::{
    AccessLevel, Caller, CompanyId, DomainError, OrganizationId, Page, PageStart, PredictionId,
    UserId, is_unique_violation, parse_column, parse_optional_column,
};
use crate::scoring::features::standard_features;
use crate::scoring::{Bundle, DetailedScore, ModelKind, RiskLevel, ScoringError};

/// The table of a kind.
pub(crate) fn table(kind: ModelKind) -> &'static str {
    match kind {
        ModelKind::Annual => "annual_predictions",
        ModelKind::Quarterly => "quarterly_predictions",
    }
}

/// The ratio column names of a kind, in the models' feature order.
pub fn ratio_names(kind: ModelKind) -> Vec<String> {
    standard_features(kind)
        .into_iter()
        .map(|feature| feature.name)
        .collect()
}

/// A quarter of a reporting year.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Quarter {
    Q1,
    Q2,
    Q3,
    Q4,
}

impl Quarter {
    pub const ALL: [Quarter; 4] = [Quarter::Q1, Quarter::Q2, Quarter::Q3, Quarter::Q4];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Q1 => "Q1",
            Self::Q2 => "Q2",
            Self::Q3 => "Q3",
            Self::Q4 => "Q4",
        }
    }
}

impl fmt::Display for Quarter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Quarter {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|quarter| quarter.as_str() == text)
            .ok_or_else(|| format!("expected Q1, Q2, Q3 or Q4, got {text:?}"))
    }
}

/// A stored prediction with its company.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    pub id: PredictionId,
    pub kind: ModelKind,
    pub company: CompanySummary,
    pub reporting_year: i32,
    pub reporting_quarter: Option<Quarter>,
    /// In [`ratio_names`] order; `None` was scored as Missing.
    pub ratios: Vec<Option<f64>>,
    pub probability: f64,
    pub risk_level: RiskLevel,
    pub confidence: f64,
    /// Each component's probability, by component name.
    pub components: Vec<(String, f64)>,
    /// One [`RangeWarning`](crate::scoring::RangeWarning) text per ratio
    /// outside the range the model was fitted on (scored all the same).
    pub warnings: Vec<String>,
    pub model_id: String,
    pub model_version: String,
    pub access_level: AccessLevel,
    pub organization_id: Option<OrganizationId>,
    pub created_by: Option<UserId>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CompanySummary {
    pub id: CompanyId,
    pub symbol: String,
    pub name: String,
    pub sector: Option<String>,
    pub market_cap: Option<f64>,
}

/// What a new prediction is scored from: the company it is for, the period
/// and the ratios.
#[derive(Debug, Clone, PartialEq)]
pub struct NewPredictionInput {
    pub kind: ModelKind,
    pub company: NewCompany,
    pub reporting_year: i32,
    /// Required for a quarterly prediction; for an annual one, the quarter the
    /// figures are as of, if not the year's end.
    pub reporting_quarter: Option<Quarter>,
    /// In [`ratio_names`] order; `None` is scored as Missing.
    pub ratios: Vec<Option<f64>>,
}

/// What a new prediction stores: its input and what the model answered.
struct NewPrediction<'a> {
    input: &'a NewPredictionInput,
    scored: DetailedScore,
    warnings: Vec<String>,
    model_id: &'a str,
    model_version: &'a str,
}

/// Filters of a prediction list; every one optional.
#[derive(Debug, Clone, Default)]
pub struct PredictionQuery {
    pub start: PageStart,
    pub limit: u32,
    pub company_symbol: Option<String>,
    pub reporting_year: Option<i32>,
    pub reporting_quarter: Option<Quarter>,
    pub sector: Option<String>,
    pub risk_level: Option<RiskLevel>,
}

/// The columns of a prediction and its company, and `extra` columns of `p`,
/// from `source` (the table, or a page of it) as `p`.
fn select_from(kind: ModelKind, source: &str, extra: &str) -> String {
    let ratios = ratio_names(kind)
        .iter()
        .map(|name| format!("p.{name}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "SELECT p.id, p.reporting_year, p.reporting_quarter, {ratios}, p.probability, p.risk_level, \
         p.confidence, p.component_probabilities, p.warnings, p.model_id, p.model_version, \
         p.access_level, p.organization_id, p.created_by, p.created_at, p.updated_at, \
         c.id AS company_id, c.symbol AS company_symbol, c.name AS company_name, \
         c.sector AS company_sector, c.market_cap AS company_market_cap{extra} \
         FROM {source} p JOIN companies c ON c.id = p.company_id"
    )
}

fn select(kind: ModelKind) -> String {
    select_from(kind, table(kind), "")
}

impl Prediction {
    fn from_row(kind: ModelKind, row: &PgRow) -> Result<Self, sqlx::Error> {
        let ratios = ratio_names(kind)
            .iter()
            .map(|name| row.try_get::<Option<f64>, _>(name.as_str()))
            .collect::<Result<_, _>>()?;
        // Stored as an object by component name (jsonb keeps no key order).
        let components: sqlx::types::Json<std::collections::BTreeMap<String, f64>> =
            row.try_get("component_probabilities")?;
        Ok(Self {
            id: row.try_get("id")?,
            kind,
            company: CompanySummary {
                id: row.try_get("company_id")?,
                symbol: row.try_get("company_symbol")?,
                name: row.try_get("company_name")?,
                sector: row.try_get("company_sector")?,
                market_cap: row.try_get("company_market_cap")?,
            },
            reporting_year: row.try_get("reporting_year")?,
            reporting_quarter: parse_optional_column(row, "reporting_quarter")?,
            ratios,
            probability: row.try_get("probability")?,
            risk_level: parse_column(row, "risk_level")?,
            confidence: row.try_get("confidence")?,
            components: components.0.into_iter().collect(),
            warnings: row.try_get("warnings")?,
            model_id: row.try_get("model_id")?,
            model_version: row.try_get("model_version")?,
            access_level: parse_column(row, "access_level")?,
            organization_id: row.try_get("organization_id")?,
            created_by: row.try_get("created_by")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }
}

/// Scores `input` with `bundle` and stores the prediction in the caller's
/// write scope (see [`store`]): ratios are checked to be finite, a ratio
/// outside its fitted range is scored and stored with its warning, the bundle's
/// id and version are stored with the score.
/// `max_per_user` bounds how many predictions one user may have created.
pub async fn score_and_store(
    pool: &PgPool,
    caller: &Caller,
    bundle: &Bundle,
    input: &NewPredictionInput,
    max_per_user: i64,
) -> Result<Prediction, DomainError> {
    let (scored, warnings) = score(bundle, input)?;
    let prediction = NewPrediction {
        input,
        scored,
        warnings,
        model_id: bundle.id(),
        model_version: bundle.version(),
    };
    store(pool, caller, &prediction, max_per_user).await
}

/// Scores `input` with `bundle`, taking its ratios in the bundle's feature
/// order; also the texts of its fitted-range warnings. Every finite ratio is
/// scored; only a non-finite one is refused.
fn score(
    bundle: &Bundle,
    input: &NewPredictionInput,
) -> Result<(DetailedScore, Vec<String>), DomainError> {
    let kind = input.kind;
    if bundle.manifest().kind != kind {
        return Err(DomainError::Unscorable(format!(
            "bundle {} does not score {} predictions",
            bundle.id(),
            kind.as_str()
        )));
    }
    let names = ratio_names(kind);
    if input.ratios.len() != names.len() {
        return Err(DomainError::Unscorable(format!(
            "a {} prediction has {} ratios, got {}",
            kind.as_str(),
            names.len(),
            input.ratios.len()
        )));
    }
    let mut row = Vec::with_capacity(bundle.feature_count());
    for feature in &bundle.manifest().features {
        let value = names
            .iter()
            .position(|name| *name == feature.name)
            .map(|index| input.ratios[index])
            .ok_or_else(|| {
                DomainError::Unscorable(format!(
                    "bundle {} takes {}, which a {} prediction does not have",
                    bundle.id(),
                    feature.name,
                    kind.as_str()
                ))
            })?;
        if value.is_some_and(|v| !v.is_finite()) {
            return Err(DomainError::InvalidRatio {
                ratio: feature.name.clone(),
                problem: "must be a finite number".into(),
            });
        }
        row.push(value.unwrap_or(f64::NAN));
    }
    let scored = bundle.score(&row).map_err(|error| match error {
        ScoringError::NotFinite { feature, .. } => DomainError::InvalidRatio {
            ratio: feature,
            problem: "must be a finite number".into(),
        },
        other => DomainError::Unscorable(other.to_string()),
    })?;
    let warnings = bundle
        .range_warnings(&row)
        .iter()
        .map(ToString::to_string)
        .collect();
    Ok((scored, warnings))
}

/// Stores a scored prediction in the caller's write scope, creating or reusing
/// the company there, in one transaction. A second prediction for the same
/// company, period and scope is a conflict (a unique index decides, so
/// concurrent requests cannot both succeed). `max_per_user` bounds the
/// caller's single predictions, counted in `prediction_usage` (see
/// [`take_quota`]).
async fn store(
    pool: &PgPool,
    caller: &Caller,
    prediction: &NewPrediction<'_>,
    max_per_user: i64,
) -> Result<Prediction, DomainError> {
    if !take_quota(pool, caller.user_id, max_per_user).await? {
        return Err(DomainError::QuotaExceeded {
            limit: max_per_user,
        });
    }
    let stored = insert(pool, caller, prediction).await;
    if stored.is_err() {
        release_quota(pool, caller.user_id).await;
    }
    stored
}

/// Takes one of the user's `max_per_user` places in one statement of its own,
/// so its row lock ends with it: one user's concurrent creates pass each
/// other, and at the edge no more than `max_per_user` get a place. A place
/// taken by a process that stops before its insert commits stays taken (the
/// count errs on the safe side) until one of the user's predictions is deleted.
async fn take_quota(pool: &PgPool, user: UserId, max_per_user: i64) -> Result<bool, DomainError> {
    if max_per_user <= 0 {
        return Ok(false);
    }
    let taken = sqlx::query(
        "INSERT INTO prediction_usage (user_id, single_predictions) VALUES ($1, 1) \
         ON CONFLICT (user_id) DO UPDATE \
         SET single_predictions = prediction_usage.single_predictions + 1 \
         WHERE prediction_usage.single_predictions < $2",
    )
    .bind(user)
    .bind(max_per_user)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(taken == 1)
}

/// Gives back a place taken for an insert that failed.
async fn release_quota(pool: &PgPool, user: UserId) {
    let released = sqlx::query(
        "UPDATE prediction_usage SET single_predictions = single_predictions - 1 \
         WHERE user_id = $1 AND single_predictions > 0",
    )
    .bind(user)
    .execute(pool)
    .await;
    if let Err(error) = released {
        tracing::warn!(%error, %user, "a quota place of a failed create stays taken");
    }
}

/// The insert of [`store`], in one transaction.
async fn insert(
    pool: &PgPool,
    caller: &Caller,
    prediction: &NewPrediction<'_>,
) -> Result<Prediction, DomainError> {
    let input = prediction.input;
    let kind = input.kind;
    let mut tx = pool.begin().await?;
    let company = companies::find_or_create(&mut tx, caller, &input.company).await?;
    let scope = caller.write_scope();
    let names = ratio_names(kind);
    let placeholders = (0..names.len())
        .map(|i| format!("${}", i + 15))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "INSERT INTO {} (company_id, reporting_year, reporting_quarter, probability, risk_level, \
         confidence, component_probabilities, model_id, model_version, access_level, \
         organization_id, created_by, warnings, company_sector, {}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, lower($14), \
         {placeholders}) RETURNING id",
        table(kind),
        names.join(", ")
    );
    let score = &prediction.scored.score;
    let mut insert = sqlx::query_scalar::<_, PredictionId>(&sql)
        .bind(company.id)
        .bind(input.reporting_year)
        .bind(input.reporting_quarter.map(Quarter::as_str))
        .bind(score.probability)
        .bind(score.risk_level.as_str())
        .bind(score.confidence)
        .bind(sqlx::types::Json(
            prediction
                .scored
                .components
                .iter()
                .cloned()
                .collect::<std::collections::BTreeMap<_, _>>(),
        ))
        .bind(prediction.model_id)
        .bind(prediction.model_version)
        .bind(scope.access_level.as_str())
        .bind(scope.organization_id)
        .bind(caller.user_id)
        .bind(&prediction.warnings)
        .bind(&company.sector);
    for ratio in &input.ratios {
        insert = insert.bind(*ratio);
    }
    let id = insert.fetch_one(&mut *tx).await.map_err(|error| {
        if is_unique_violation(&error) {
            DomainError::Conflict(format!(
                "a {} prediction for {} {}{} already exists in this scope",
                kind.as_str(),
                company.symbol,
                input.reporting_year,
                input
                    .reporting_quarter
                    .map(|quarter| format!(" {quarter}"))
                    .unwrap_or_default()
            ))
        } else {
            error.into()
        }
    })?;
    let row = sqlx::query(&format!("{} WHERE p.id = $1", select(kind)))
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
    let created = Prediction::from_row(kind, &row)?;
    tx.commit().await?;
    Ok(created)
}

/// One prediction, when the caller can see it.
pub async fn get(
    pool: &PgPool,
    caller: &Caller,
    kind: ModelKind,
    id: PredictionId,
) -> Result<Prediction, DomainError> {
    let row = sqlx::query(&format!(
        "{} WHERE p.id = $1 AND p.scope_key = ANY($2)",
        select(kind)
    ))
    .bind(id)
    .bind(caller.visible_scope_keys())
    .fetch_optional(pool)
    .await?;
    match row {
        Some(row) => Ok(Prediction::from_row(kind, &row)?),
        None => Err(DomainError::NotFound { what: "prediction" }),
    }
}

/// The predictions the caller can see, newest first, filtered and paged (see
/// [`listing`](super::listing)): each filter walks its own index of the
/// predictions, then the page's companies are joined.
pub async fn list(
    pool: &PgPool,
    caller: &Caller,
    kind: ModelKind,
    query: &PredictionQuery,
) -> Result<Page<Prediction>, DomainError> {
    let statements = list_statements("", caller, kind, query)?;
    newest_first(kind)
        .read_page(pool, statements, (&query.start, query.limit), |row| {
            Prediction::from_row(kind, row)
        })
        .await
}

/// The walk of a prediction list.
fn newest_first(kind: ModelKind) -> Walk<'static> {
    Walk {
        table: table(kind),
        alias: "p",
        sort: "created_at",
        key: "p.created_at",
        key_kind: KeyKind::Time,
        descending: true,
    }
}

/// The statements [`list`] runs, after `prefix` (`EXPLAIN …` to see their plans).
pub fn list_statements(
    prefix: &str,
    caller: &Caller,
    kind: ModelKind,
    query: &PredictionQuery,
) -> Result<ListStatements, DomainError> {
    let filter = query.clone();
    let filters = move |sql: &mut QueryBuilder<'_, Postgres>| {
        if let Some(year) = filter.reporting_year {
            sql.push(" AND p.reporting_year = ").push_bind(year);
        }
        if let Some(quarter) = filter.reporting_quarter {
            sql.push(" AND p.reporting_quarter = ")
                .push_bind(quarter.as_str());
        }
        if let Some(risk_level) = filter.risk_level {
            sql.push(" AND p.risk_level = ")
                .push_bind(risk_level.as_str());
        }
        if let Some(sector) = &filter.sector {
            sql.push(" AND p.company_sector = lower(")
                .push_bind(sector.clone())
                .push(")");
        }
        // A prediction's company is in the prediction's scope.
        if let Some(symbol) = &filter.company_symbol {
            sql.push(
                " AND p.company_id IN (SELECT c.id FROM companies c \
                 WHERE c.scope_key = scope.key AND c.symbol = upper(",
            )
            .push_bind(symbol.clone())
            .push("))");
        }
    };
    let join_companies = format!(
        ") {} ORDER BY p.sort_key DESC, p.id DESC",
        select_from(kind, "page", ", p.sort_key")
    );
    let filter_key = format!(
        "{:?} {:?} {:?} {:?} {:?}",
        query.company_symbol,
        query.reporting_year,
        query.reporting_quarter,
        query.sector,
        query.risk_level
    );
    newest_first(kind).statements(
        prefix,
        &caller.visible_scope_keys(),
        (&filters, filter_key),
        (&query.start, query.limit),
        ("WITH page AS (", &join_companies),
    )
}

/// Deletes a prediction the caller may modify (see [`Caller::may_modify`]).
pub async fn delete(
    pool: &PgPool,
    caller: &Caller,
    kind: ModelKind,
    id: PredictionId,
) -> Result<(), DomainError> {
    let existing = get(pool, caller, kind, id).await?;
    if !caller.may_modify(
        existing.access_level,
        existing.organization_id,
        existing.created_by,
    ) {
        return Err(DomainError::Forbidden(
            "only the prediction's creator or an administrator of its scope may delete it".into(),
        ));
    }
    sqlx::query(&format!("DELETE FROM {} WHERE id = $1", table(kind)))
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}
