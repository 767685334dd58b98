//! `/api/v1/companies`: list, read, create, change and delete companies within
//! the caller's scopes.

use accunode_core::domain::CompanyId;
use accunode_core::domain::companies::{self, CompanyChanges, CompanyQuery, CompanySort};
use accunode_core::scoring::ModelKind;
use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use serde::Deserialize;
use uuid::Uuid;

use super::ApiTags;
use super::shared::{
    NoContent, Paging, check_company, default_limit, new_company, non_blank, page_start,
};
use crate::auth::BearerAuth;
use crate::body::{JsonBody, Problems, Validate};
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Default)]
pub struct CompaniesApi;

#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Company {
    pub id: Uuid,
    /// Upper-case ticker, unique within its scope.
    pub symbol: String,
    pub name: String,
    pub market_cap: Option<f64>,
    pub sector: Option<String>,
    /// `personal`, `organization` or `system`.
    pub access_level: String,
    pub organization_id: Option<Uuid>,
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<companies::Company> for Company {
    fn from(company: companies::Company) -> Self {
        Self {
            id: company.id.into(),
            symbol: company.symbol,
            name: company.name,
            market_cap: company.market_cap,
            sector: company.sector,
            access_level: company.access_level.as_str().to_owned(),
            organization_id: company.organization_id.map(Uuid::from),
            created_by: company.created_by.map(Uuid::from),
            created_at: company.created_at,
            updated_at: company.updated_at,
        }
    }
}

#[derive(Debug, Clone, Object)]
pub struct CompanyPage {
    pub items: Vec<Company>,
    #[oai(flatten)]
    pub paging: Paging,
}

#[derive(Debug, Clone, Object, Deserialize)]
#[oai(example)]
pub struct CreateCompanyRequest {
    /// A ticker: 1 to 20 printable ASCII characters, no spaces; stored upper-case.
    #[oai(validator(pattern = r"^[!-~]{1,20}$"))]
    pub symbol: String,
    #[oai(validator(
        max_length = 255,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"
    ))]
    pub name: String,
    /// Greater than 0.
    pub market_cap: Option<f64>,
    #[oai(validator(max_length = 100))]
    pub sector: Option<String>,
}

impl Validate for CreateCompanyRequest {
    fn validate(&self, problems: &mut Problems) {
        check_company(
            problems,
            ("symbol", "name"),
            &self.symbol,
            &self.name,
            self.market_cap,
            self.sector.as_deref(),
        );
    }
}

/// Fields to change; absent ones stay as they are.
#[derive(Debug, Clone, Object, Deserialize)]
pub struct UpdateCompanyRequest {
    #[oai(validator(
        max_length = 255,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"
    ))]
    pub name: Option<String>,
    pub market_cap: Option<f64>,
    #[oai(validator(max_length = 100))]
    pub sector: Option<String>,
}

impl Validate for UpdateCompanyRequest {
    fn validate(&self, problems: &mut Problems) {
        if let Some(name) = &self.name {
            problems.text("name", name, 1, 255);
        }
        if let Some(cap) = self.market_cap
            && !(cap > 0.0 && cap.is_finite())
        {
            problems.add("market_cap", format!("must be greater than 0, got {cap}"));
        }
        if let Some(sector) = &self.sector {
            problems.text("sector", sector, 0, 100);
        }
    }
}

#[derive(Debug, Clone, Copy, Enum, Default)]
#[oai(rename_all = "snake_case")]
pub enum CompanySortField {
    Name,
    Symbol,
    MarketCap,
    #[default]
    CreatedAt,
}

#[derive(Debug, Clone, Copy, Enum, Default)]
#[oai(rename_all = "lowercase")]
pub enum SortOrder {
    Asc,
    #[default]
    Desc,
}

#[derive(ApiResponse)]
pub enum CreatedCompany {
    /// Created in the caller's scope.
    #[oai(status = 201)]
    Created(Json<Company>),
}

#[OpenApi(prefix_path = "/api/v1/companies", tag = "ApiTags::Companies")]
impl CompaniesApi {
    /// The companies the caller can see, filtered, sorted and paged.
    #[oai(path = "/", method = "get", operation_id = "list_companies")]
    #[allow(clippy::too_many_arguments)]
    async fn list(
        &self,
        auth: BearerAuth,
        state: Data<&AppState>,
        /// Page number, from 1 (1 when absent), within the first 10,000 rows;
        /// further on, page with `cursor`.
        #[oai(validator(minimum(value = "1")))]
        page: Query<Option<u32>>,
        /// The `next_cursor` of the page before; not with `page`.
        #[oai(validator(max_length = 2048))]
        cursor: Query<Option<String>>,
        /// Items per page, 1 to 100.
        #[oai(
            default = "default_limit",
            validator(minimum(value = "1"), maximum(value = "100"))
        )]
        limit: Query<u32>,
        /// Only this sector (case-insensitive).
        sector: Query<Option<String>>,
        /// Symbol or name contains this text (case-insensitive).
        search: Query<Option<String>>,
        /// Sort field; `created_at` when absent.
        sort: Query<Option<CompanySortField>>,
        /// Sort order; `desc` when absent.
        order: Query<Option<SortOrder>>,
    ) -> Result<Json<CompanyPage>, ApiError> {
        let query = CompanyQuery {
            start: page_start(page.0, cursor.0)?,
            limit: limit.0,
            sector: non_blank(sector.0),
            search: non_blank(search.0),
            sort: match sort.0.unwrap_or_default() {
                CompanySortField::Name => CompanySort::Name,
                CompanySortField::Symbol => CompanySort::Symbol,
                CompanySortField::MarketCap => CompanySort::MarketCap,
                CompanySortField::CreatedAt => CompanySort::CreatedAt,
            },
            descending: matches!(order.0.unwrap_or_default(), SortOrder::Desc),
        };
        let listed = companies::list(&state.dependencies.pool, &auth.0, &query).await?;
        Ok(Json(CompanyPage {
            paging: Paging::from(&listed),
            items: listed.items.into_iter().map(Company::from).collect(),
        }))
    }

    /// A company the caller can see.
    #[oai(path = "/:id", method = "get", operation_id = "get_company")]
    async fn get(
        &self,
        auth: BearerAuth,
        state: Data<&AppState>,
        id: Path<Uuid>,
    ) -> Result<Json<Company>, ApiError> {
        let company = companies::get(&state.dependencies.pool, &auth.0, CompanyId(id.0)).await?;
        Ok(Json(company.into()))
    }

    /// Creates a company in the caller's scope (personal, their organisation's,
    /// or system for super admins).
    #[oai(path = "/", method = "post", operation_id = "create_company")]
    async fn create(
        &self,
        auth: BearerAuth,
        state: Data<&AppState>,
        body: JsonBody<CreateCompanyRequest>,
    ) -> Result<CreatedCompany, ApiError> {
        let request = body.0;
        let company = companies::create(
            &state.dependencies.pool,
            &auth.0,
            &new_company(
                &request.symbol,
                &request.name,
                request.market_cap,
                request.sector.as_deref(),
            ),
        )
        .await?;
        Ok(CreatedCompany::Created(Json(company.into())))
    }

    /// Changes a company (its creator, its scope's admins).
    #[oai(path = "/:id", method = "put", operation_id = "update_company")]
    async fn update(
        &self,
        auth: BearerAuth,
        state: Data<&AppState>,
        id: Path<Uuid>,
        body: JsonBody<UpdateCompanyRequest>,
    ) -> Result<Json<Company>, ApiError> {
        let request = body.0;
        let changes = CompanyChanges {
            name: request.name.map(|n| n.trim().to_owned()),
            market_cap: request.market_cap,
            sector: request.sector.map(|s| s.trim().to_owned()),
        };
        let (company, predictions) =
            companies::update(&state.dependencies.pool, &auth.0, CompanyId(id.0), &changes).await?;
        let cache = &state.prediction_cache;
        cache.forget(ModelKind::Annual, &predictions.annual).await;
        cache
            .forget(ModelKind::Quarterly, &predictions.quarterly)
            .await;
        Ok(Json(company.into()))
    }

    /// Deletes a company and its predictions (its creator, its scope's admins).
    /// A company holding predictions of other users needs an admin of its
    /// scope (403 for its creator alone).
    #[oai(path = "/:id", method = "delete", operation_id = "delete_company")]
    async fn delete(
        &self,
        auth: BearerAuth,
        state: Data<&AppState>,
        id: Path<Uuid>,
    ) -> Result<NoContent, ApiError> {
        let deleted = companies::delete(&state.dependencies.pool, &auth.0, CompanyId(id.0)).await?;
        let cache = &state.prediction_cache;
        cache.forget(ModelKind::Annual, &deleted.annual).await;
        cache.forget(ModelKind::Quarterly, &deleted.quarterly).await;
        Ok(NoContent::Done)
    }
}

impl poem_openapi::types::Example for CreateCompanyRequest {
    fn example() -> Self {
        Self {
            symbol: "ACME".into(),
            name: "Acme Corporation".into(),
            market_cap: Some(1.5e9),
            sector: Some("Industrials".into()),
        }
    }
}
