//! `POST /api/v1/predictions/bulk-upload`: a CSV or XLSX file of annual or
//! quarterly rows, accepted as a job that workers score (see `crate::bulk`).
//!
//! Who may call it: any signed-in user; the job's predictions go to the
//! caller's write scope, as single predictions do. What it costs us: uploads
//! have their own per-user hourly limit, the file its size and row limits,
//! and nothing is stored or queued until the whole file passed its checks.

use poem::web::Data;
use poem::{FromRequest, Request, RequestBody};
use poem_openapi::payload::{Json, ParsePayload, Payload};
use poem_openapi::registry::{MetaSchemaRef, Registry};
use poem_openapi::types::multipart::Upload;
use poem_openapi::{ApiResponse, Enum, Multipart, Object, OpenApi};
use uuid::Uuid;

use crate::api::ApiTags;
use crate::auth::BearerAuth;
use crate::bulk::upload::{self, ReceivedForm, UploadError};
use crate::bulk::{self, AcceptError};
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

#[derive(Default)]
pub struct BulkUploadApi;

/// Which kind of prediction the file's rows are.
#[derive(Debug, Clone, Copy, Enum)]
#[oai(rename_all = "lowercase")]
pub enum PredictionType {
    Annual,
    Quarterly,
}

/// The form, as documented: a `file` part (CSV, UTF-8 with or without a BOM,
/// or XLSX, first sheet) whose header row names the kind's columns (case and
/// surrounding spaces ignored; other columns are kept and echoed in the
/// results), and `prediction_type`.
// Only its schema is used (by `BulkUploadBody`'s documentation): poem-openapi
// would receive the whole file, however large, before any check, so the body
// is parsed by `crate::bulk::upload` instead and the fields are never read.
#[derive(Debug, Multipart)]
#[allow(dead_code)]
pub struct BulkUploadForm {
    file: Upload,
    prediction_type: PredictionType,
}

/// The form as parsed: streamed to disk within the size limit.
pub struct BulkUploadBody(ReceivedForm);

impl Payload for BulkUploadBody {
    const CONTENT_TYPE: &'static str = "multipart/form-data";

    fn check_content_type(content_type: &str) -> bool {
        content_type
            .parse::<mime::Mime>()
            .is_ok_and(|mime| mime.type_() == "multipart" && mime.subtype() == "form-data")
    }

    fn schema_ref() -> MetaSchemaRef {
        <BulkUploadForm as Payload>::schema_ref()
    }

    fn register(registry: &mut Registry) {
        <BulkUploadForm as Payload>::register(registry);
    }
}

impl ParsePayload for BulkUploadBody {
    const IS_REQUIRED: bool = true;

    async fn from_request(request: &Request, body: &mut RequestBody) -> poem::Result<Self> {
        let state = <Data<&AppState>>::from_request(request, body).await?;
        let max = state.settings.bulk.max_size_bytes;
        upload::receive(request, body, max)
            .await
            .map(Self)
            .map_err(|error| upload_error(error).into())
    }
}

poem_openapi::impl_apirequest_for_payload!(BulkUploadBody,);

/// What the API answers for an accepted upload.
#[derive(Debug, Object)]
pub struct BulkUploadAccepted {
    pub job_id: Uuid,
    /// `queued` for a new job; a retried upload (same `Idempotency-Key`) gets
    /// the earlier job as it is now.
    pub status: String,
    pub prediction_type: String,
    pub file_name: String,
    /// Data rows in the file (the header row not counted).
    pub total_rows: i32,
    /// Running jobs accepted before this one, across the service.
    pub queue_position: i64,
    /// The bundle that scores every row of the job.
    pub model_id: String,
    pub model_version: String,
    /// Where to follow the job: `GET` it.
    pub status_url: String,
}

#[derive(ApiResponse)]
pub enum UploadAccepted {
    /// Accepted and queued; follow it at `Location`.
    #[oai(status = 202)]
    Accepted(Json<BulkUploadAccepted>, #[oai(header = "Location")] String),
}

/// A client error for each way an upload can be refused.
fn upload_error(error: UploadError) -> ApiError {
    match error {
        UploadError::TooLarge { .. } => ApiError::PayloadTooLarge(Json(ErrorBody::new(
            "payload_too_large",
            format!("{error} (BULK_UPLOAD_MAX_SIZE_MB)."),
        ))),
        UploadError::UnsupportedType(_) => ApiError::UnsupportedMediaType(Json(ErrorBody::new(
            "unsupported_media_type",
            error.to_string(),
        ))),
        UploadError::MissingPart(part) => {
            ApiError::invalid_field(&format!("body.{part}"), "is required")
        }
        UploadError::Field { field, problem } => {
            ApiError::invalid_field(&format!("body.{field}"), problem)
        }
        UploadError::Io(error) => ApiError::internal(error),
        UploadError::Empty
        | UploadError::NoRows
        | UploadError::TooManyRows { .. }
        | UploadError::Header(_)
        | UploadError::Malformed(_) => ApiError::invalid_field("body.file", error.to_string()),
    }
}

fn accept_error(error: AcceptError) -> ApiError {
    match error {
        AcceptError::Upload(error) => upload_error(error),
        AcceptError::Domain(error) => error.into(),
        AcceptError::Store(error) => ApiError::unavailable("upload_storage_unavailable", {
            tracing::error!(%error, "the uploads bucket refused a file");
            "The uploaded file could not be stored; nothing was queued. Try again later."
        }),
        AcceptError::Join(error) => ApiError::internal(error),
    }
}

/// Counts the caller's uploads this hour in Redis; past the limit, 429.
async fn check_upload_rate(
    state: &AppState,
    caller: &accunode_core::domain::Caller,
) -> Result<(), ApiError> {
    let limit = state.settings.bulk.uploads_per_hour;
    let now = chrono::Utc::now().timestamp();
    let window = now / 3600;
    let key = format!("accunode:rate:bulk-upload:{}:{window}", caller.user_id);
    let mut redis = state.dependencies.redis.clone();
    let (count,): (u32,) = redis::pipe()
        .atomic()
        .incr(&key, 1)
        .expire(&key, 3600)
        .ignore()
        .query_async(&mut redis)
        .await?;
    if count > limit {
        let reset = u64::try_from((window + 1) * 3600 - now).unwrap_or(3600);
        return Err(ApiError::RateLimited(
            Json(ErrorBody::new(
                "rate_limited",
                format!(
                    "At most {limit} bulk uploads per hour (BULK_UPLOADS_PER_HOUR); try again in {reset} s."
                ),
            )),
            reset,
            limit,
            0,
            reset,
        ));
    }
    Ok(())
}

#[OpenApi(prefix_path = "/api/v1/predictions", tag = "ApiTags::Predictions")]
impl BulkUploadApi {
    /// Uploads a file of rows to score as a job.
    ///
    /// The header row must name the kind's columns: `company_symbol`,
    /// `company_name`, `reporting_year`, the kind's ratios, and for quarterly
    /// files `reporting_quarter`; `market_cap`, `sector` and (annual)
    /// `reporting_quarter` are optional. Blank, `NaN`, `NM` and `N/A` ratios are
    /// Missing. Rows are checked one by one by the workers: a bad row is a row
    /// error of the job, never its failure. Send an `Idempotency-Key` header to
    /// make a retried upload return the same job.
    #[oai(path = "/bulk-upload", method = "post", operation_id = "bulk_upload")]
    async fn bulk_upload(
        &self,
        auth: BearerAuth,
        state: Data<&AppState>,
        /// Any text up to 255 characters; the same key returns the same job.
        #[oai(name = "Idempotency-Key", validator(min_length = 1, max_length = 255))]
        idempotency_key: poem_openapi::param::Header<Option<String>>,
        body: BulkUploadBody,
    ) -> Result<UploadAccepted, ApiError> {
        if !state.settings.bulk.enabled {
            return Err(ApiError::unavailable(
                "feature_disabled",
                "Bulk upload is switched off on this server (ENABLE_BULK_UPLOAD).",
            ));
        }
        let Some(store) = &state.uploads else {
            return Err(ApiError::unavailable(
                "feature_unavailable",
                "Bulk upload is not configured on this server (BULK_UPLOAD_PATH).",
            ));
        };
        let key = idempotency_key.0.filter(|key| !key.trim().is_empty());
        if key
            .as_deref()
            .is_some_and(|key| key.chars().any(char::is_control))
        {
            return Err(ApiError::invalid_field(
                "header.Idempotency-Key",
                "must not contain control characters",
            ));
        }
        check_upload_rate(&state, &auth.0).await?;
        let accepted = bulk::accept(&state, store, &auth.0, body.0, key)
            .await
            .map_err(accept_error)?;
        let job = accepted.job;
        let location = format!("/api/v1/jobs/{}", job.id);
        Ok(UploadAccepted::Accepted(
            Json(BulkUploadAccepted {
                job_id: job.id.0,
                status: job.status.to_string(),
                prediction_type: job.kind.to_string(),
                file_name: job.file_name,
                total_rows: job.total_rows,
                queue_position: accepted.queue_position,
                model_id: job.model_id,
                model_version: job.model_version,
                status_url: location.clone(),
            }),
            location,
        ))
    }
}
