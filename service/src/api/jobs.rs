//! `/api/v1/jobs`: bulk scoring jobs — list the caller's, read one, cancel it,
//! page through its row errors and download its results.
//!
//! A job is visible to its uploader and to the administrators of its scope;
//! to anyone else it does not exist (404). Reads are one indexed row: the
//! status stays fast while workers write the job's rows.

use accunode_core::domain::JobId;
use accunode_core::domain::bulk::{self, Job, JobQuery, JobStatus as DomainStatus, StoredRowError};
use accunode_core::scoring::ModelKind;
use chrono::{DateTime, Utc};
use poem::Body;
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::{Attachment, AttachmentType, Json};
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use uuid::Uuid;

use super::ApiTags;
use super::shared::{default_limit, default_page};
use crate::auth::BearerAuth;
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Default)]
pub struct JobsApi;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum JobStatus {
    Queued,
    Processing,
    Completed,
    Failed,
    Cancelled,
}

impl From<DomainStatus> for JobStatus {
    fn from(status: DomainStatus) -> Self {
        match status {
            DomainStatus::Queued => Self::Queued,
            DomainStatus::Processing => Self::Processing,
            DomainStatus::Completed => Self::Completed,
            DomainStatus::Failed => Self::Failed,
            DomainStatus::Cancelled => Self::Cancelled,
        }
    }
}

impl From<JobStatus> for DomainStatus {
    fn from(status: JobStatus) -> Self {
        match status {
            JobStatus::Queued => Self::Queued,
            JobStatus::Processing => Self::Processing,
            JobStatus::Completed => Self::Completed,
            JobStatus::Failed => Self::Failed,
            JobStatus::Cancelled => Self::Cancelled,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum JobKind {
    Annual,
    Quarterly,
}

impl From<ModelKind> for JobKind {
    fn from(kind: ModelKind) -> Self {
        match kind {
            ModelKind::Annual => Self::Annual,
            ModelKind::Quarterly => Self::Quarterly,
        }
    }
}

impl From<JobKind> for ModelKind {
    fn from(kind: JobKind) -> Self {
        match kind {
            JobKind::Annual => Self::Annual,
            JobKind::Quarterly => Self::Quarterly,
        }
    }
}

/// A bulk scoring job. `processed = succeeded + failed` always holds.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct JobView {
    pub id: Uuid,
    pub kind: JobKind,
    pub status: JobStatus,
    pub file_name: String,
    pub total_rows: i32,
    pub processed_rows: i32,
    /// Scored and stored (including rows with fitted-range warnings).
    pub succeeded_rows: i32,
    /// Row errors: invalid values or duplicates (see `/errors`).
    pub failed_rows: i32,
    /// Scored rows with at least one value outside the fitted range.
    pub warned_rows: i32,
    /// Processed rows, percent of the total (0–100).
    pub progress_percent: f64,
    /// Rows processed per second since the job started.
    pub rows_per_second: Option<f64>,
    /// The bundle that scores every row of the job.
    pub model_id: String,
    pub model_version: String,
    /// Why the job failed or who cancelled it.
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl From<&Job> for JobView {
    fn from(job: &Job) -> Self {
        let progress = if job.total_rows > 0 {
            f64::from(job.processed_rows) * 100.0 / f64::from(job.total_rows)
        } else {
            0.0
        };
        let rows_per_second = job.started_at.map(|started| {
            let end = job.finished_at.unwrap_or_else(Utc::now);
            let seconds = (end - started).num_milliseconds().max(1) as f64 / 1000.0;
            f64::from(job.processed_rows) / seconds
        });
        Self {
            id: job.id.0,
            kind: job.kind.into(),
            status: job.status.into(),
            file_name: job.file_name.clone(),
            total_rows: job.total_rows,
            processed_rows: job.processed_rows,
            succeeded_rows: job.succeeded_rows,
            failed_rows: job.failed_rows,
            warned_rows: job.warned_rows,
            progress_percent: progress,
            rows_per_second,
            model_id: job.model_id.clone(),
            model_version: job.model_version.clone(),
            error: job.error.clone(),
            created_at: job.created_at,
            started_at: job.started_at,
            finished_at: job.finished_at,
        }
    }
}

#[derive(Debug, Clone, Object)]
pub struct JobPage {
    pub items: Vec<JobView>,
    pub total: i64,
    pub page: u32,
    pub limit: u32,
    pub pages: u32,
}

/// A row that was not scored.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct RowErrorView {
    /// Data row number: 1 is the first row after the header.
    pub row: i32,
    /// The column at fault, when one is.
    pub column: Option<String>,
    /// The value at fault (up to 200 characters).
    pub value: Option<String>,
    /// `invalid` or `duplicate`.
    pub code: String,
    pub message: String,
}

impl From<StoredRowError> for RowErrorView {
    fn from(error: StoredRowError) -> Self {
        Self {
            row: error.row_number,
            column: error.column,
            value: error.value,
            code: error.code,
            message: error.message,
        }
    }
}

#[derive(Debug, Clone, Object)]
pub struct RowErrorPage {
    pub items: Vec<RowErrorView>,
    pub total: i64,
    pub page: u32,
    pub limit: u32,
    pub pages: u32,
}

#[derive(ApiResponse)]
pub enum JobResponse {
    #[oai(status = 200)]
    Ok(Json<JobView>),
}

#[derive(ApiResponse)]
pub enum JobPageResponse {
    #[oai(status = 200)]
    Ok(Json<JobPage>),
}

#[derive(ApiResponse)]
pub enum RowErrorPageResponse {
    #[oai(status = 200)]
    Ok(Json<RowErrorPage>),
}

#[derive(ApiResponse)]
pub enum ResultsResponse {
    /// Every input row in input order with its outcome, as CSV.
    #[oai(status = 200, content_type = "text/csv; charset=utf-8")]
    Ok(Attachment<Body>),
}

#[OpenApi(prefix_path = "/api/v1/jobs", tag = "ApiTags::Jobs")]
impl JobsApi {
    /// The caller's jobs, newest first.
    #[oai(path = "/", method = "get", operation_id = "list_jobs")]
    async fn list(
        &self,
        auth: BearerAuth,
        state: Data<&AppState>,
        /// 1-based.
        #[oai(
            default = "default_page",
            validator(minimum(value = "1"), maximum(value = "1000000"))
        )]
        page: Query<u32>,
        #[oai(
            default = "default_limit",
            validator(minimum(value = "1"), maximum(value = "100"))
        )]
        limit: Query<u32>,
        status: Query<Option<JobStatus>>,
        kind: Query<Option<JobKind>>,
    ) -> Result<JobPageResponse, ApiError> {
        let query = JobQuery {
            page: page.0,
            limit: limit.0,
            status: status.0.map(Into::into),
            kind: kind.0.map(Into::into),
        };
        let listed = bulk::list(&state.dependencies.pool, &auth.0, &query).await?;
        let pages = listed.pages();
        Ok(JobPageResponse::Ok(Json(JobPage {
            items: listed.items.iter().map(JobView::from).collect(),
            total: listed.total,
            page: listed.page.unwrap_or(1),
            limit: listed.limit,
            pages,
        })))
    }

    /// One job: status, counts, progress and speed.
    #[oai(path = "/:id", method = "get", operation_id = "get_job")]
    async fn get(
        &self,
        auth: BearerAuth,
        state: Data<&AppState>,
        id: Path<Uuid>,
    ) -> Result<JobResponse, ApiError> {
        let job = bulk::get(&state.dependencies.pool, &auth.0, JobId(id.0)).await?;
        Ok(JobResponse::Ok(Json(JobView::from(&job))))
    }

    /// Cancels a queued or processing job: workers stop between chunks; what
    /// was written stays, and `processed_rows` says how much that is.
    #[oai(path = "/:id/cancel", method = "post", operation_id = "cancel_job")]
    async fn cancel(
        &self,
        auth: BearerAuth,
        state: Data<&AppState>,
        id: Path<Uuid>,
    ) -> Result<JobResponse, ApiError> {
        let job = bulk::cancel(&state.dependencies.pool, &auth.0, JobId(id.0)).await?;
        Ok(JobResponse::Ok(Json(JobView::from(&job))))
    }

    /// The job's row errors in row order.
    #[oai(path = "/:id/errors", method = "get", operation_id = "list_job_errors")]
    async fn errors(
        &self,
        auth: BearerAuth,
        state: Data<&AppState>,
        id: Path<Uuid>,
        #[oai(
            default = "default_page",
            validator(minimum(value = "1"), maximum(value = "1000000"))
        )]
        page: Query<u32>,
        #[oai(
            default = "default_limit",
            validator(minimum(value = "1"), maximum(value = "1000"))
        )]
        limit: Query<u32>,
    ) -> Result<RowErrorPageResponse, ApiError> {
        let listed = bulk::errors(
            &state.dependencies.pool,
            &auth.0,
            JobId(id.0),
            page.0,
            limit.0,
        )
        .await?;
        let pages = listed.pages();
        Ok(RowErrorPageResponse::Ok(Json(RowErrorPage {
            items: listed.items.into_iter().map(RowErrorView::from).collect(),
            total: listed.total,
            page: listed.page.unwrap_or(1),
            limit: listed.limit,
            pages,
        })))
    }

    /// The results file: every input row in input order, its columns as
    /// uploaded, then `probability` (full precision), `risk_level`,
    /// `confidence`, `<component>_probability` for each component,
    /// `model_id`, `model_version`, `warnings` and `error`. Streamed; rows not
    /// processed yet say so in `error`.
    #[oai(
        path = "/:id/results",
        method = "get",
        operation_id = "get_job_results"
    )]
    async fn results(
        &self,
        auth: BearerAuth,
        state: Data<&AppState>,
        id: Path<Uuid>,
    ) -> Result<ResultsResponse, ApiError> {
        let pool = &state.dependencies.pool;
        let job = bulk::get(pool, &auth.0, JobId(id.0)).await?;
        let Some(store) = state.uploads.clone() else {
            return Err(ApiError::unavailable(
                "feature_unavailable",
                "Bulk upload is not configured on this server (BULK_UPLOAD_PATH).",
            ));
        };
        let file_name = format!("{}-results.csv", job.id);
        let stream = crate::bulk::results::stream(pool.clone(), store, job)
            .await
            .map_err(ApiError::internal)?;
        let body = Body::from_bytes_stream(futures::TryStreamExt::map_err(stream, |error| {
            tracing::error!(%error, "the results stream stopped");
            std::io::Error::other(error.to_string())
        }));
        Ok(ResultsResponse::Ok(
            Attachment::new(body)
                .attachment_type(AttachmentType::Attachment)
                .filename(file_name),
        ))
    }
}
