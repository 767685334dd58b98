//! `/api/v1/predictions`: score and store annual and quarterly predictions,
//! list, read and delete them within the caller's scopes.
//!
//! Both kinds run through the same generic helpers; only the request and
//! ratio shapes differ (see [`wire`]). A request is scored by the one bundle
//! serving its kind at that moment (taken once, so a model swap mid-request
//! cannot mix versions), and the answer names that bundle's id and version.
//! Every finite ratio is scored: one outside the range the bundle was fitted
//! on is not refused but named in the prediction's `warnings`, which are
//! stored with it.

mod bulk;
mod wire;

pub use self::bulk::BulkUploadApi;

use accunode_core::domain::predictions::{self, PredictionQuery};
use accunode_core::domain::{Caller, PredictionId, scope_key};
use accunode_core::scoring::ModelKind;
use poem::web::Data;
use poem_openapi::OpenApi;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use uuid::Uuid;

use self::wire::{
    AnnualPrediction, AnnualPredictionPage, AnnualPredictionRequest, CreatedAnnual,
    CreatedQuarterly, PredictionRequest, PredictionView, Quarter, QuarterlyPrediction,
    QuarterlyPredictionPage, QuarterlyPredictionRequest, RiskLevel,
};
use super::ApiTags;
use super::shared::{NoContent, default_limit, non_blank, page_start};
use crate::auth::BearerAuth;
use crate::body::JsonBody;
use crate::cache::CachedPrediction;
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Default)]
pub struct PredictionsApi;

/// Scores `request` with the bundle serving its kind and stores the result.
async fn create<R, V>(state: &AppState, caller: &Caller, request: &R) -> Result<V, ApiError>
where
    R: PredictionRequest,
    V: PredictionView,
{
    let input = request.input()?;
    let bundle = state.models.get(R::KIND);
    let stored = predictions::score_and_store(
        &state.dependencies.pool,
        caller,
        &bundle,
        &input,
        state.settings.api.features.max_predictions_per_user,
    )
    .await?;
    Ok(V::from_stored(&stored))
}

/// A prediction the caller can see, from the cache when it is there.
async fn read<V: PredictionView>(
    state: &AppState,
    caller: &Caller,
    id: PredictionId,
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
    id: PredictionId,
) -> Result<(), ApiError> {
    predictions::delete(&state.dependencies.pool, caller, kind, id).await?;
    state.prediction_cache.forget(kind, &[id]).await;
    Ok(())
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

#[OpenApi(prefix_path = "/api/v1/predictions", tag = "ApiTags::Predictions")]
impl PredictionsApi {
    /// Scores an annual report and stores the prediction.
    ///
    /// A ratio outside the range the model was fitted on is scored, and named
    /// in `warnings`.
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
        /// Page number, from 1 (1 when absent), within the first 10,000 rows;
        /// further on, page with `cursor`.
        #[oai(validator(minimum(value = "1")))]
        page: Query<Option<u32>>,
        /// The `next_cursor` of the page before; not with `page`.
        #[oai(validator(max_length = 2048))]
        cursor: Query<Option<String>>,
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
        let query = PredictionQuery {
            start: page_start(page.0, cursor.0)?,
            limit: limit.0,
            company_symbol: non_blank(company_symbol.0),
            reporting_year: reporting_year.0,
            reporting_quarter: reporting_quarter.0.map(Into::into),
            sector: non_blank(sector.0),
            risk_level: risk_level.0.map(Into::into),
        };
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
        Ok(Json(read(&state, &auth.0, PredictionId(id.0)).await?))
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
        delete(&state, &auth.0, ModelKind::Annual, PredictionId(id.0)).await?;
        Ok(NoContent::Done)
    }

    /// Scores a quarterly report and stores the prediction.
    ///
    /// A ratio outside the range the model was fitted on is scored, and named
    /// in `warnings`.
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
        /// Page number, from 1 (1 when absent), within the first 10,000 rows;
        /// further on, page with `cursor`.
        #[oai(validator(minimum(value = "1")))]
        page: Query<Option<u32>>,
        /// The `next_cursor` of the page before; not with `page`.
        #[oai(validator(max_length = 2048))]
        cursor: Query<Option<String>>,
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
        let query = PredictionQuery {
            start: page_start(page.0, cursor.0)?,
            limit: limit.0,
            company_symbol: non_blank(company_symbol.0),
            reporting_year: reporting_year.0,
            reporting_quarter: reporting_quarter.0.map(Into::into),
            sector: non_blank(sector.0),
            risk_level: risk_level.0.map(Into::into),
        };
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
        Ok(Json(read(&state, &auth.0, PredictionId(id.0)).await?))
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
        delete(&state, &auth.0, ModelKind::Quarterly, PredictionId(id.0)).await?;
        Ok(NoContent::Done)
    }
}
