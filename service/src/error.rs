//! The one error body every failing request gets: `{error, message, details[]}`.
//!
//! Handlers return [`ApiError`], whose variants are the statuses the document
//! declares. Errors raised by poem or poem-openapi themselves (unknown route,
//! wrong method, a query parameter that does not parse, a missing bearer token)
//! pass through [`into_json_response`], so no client ever sees a plain-text or
//! HTML error, and a server fault never shows its internals.

use std::collections::HashMap;
use std::sync::LazyLock;

use accunode_core::domain::DomainError;
use poem::http::StatusCode;
use poem::{IntoResponse, Response};
use poem_openapi::error::{
    AuthorizationError, ContentTypeError, ParseParamError, ParsePathError, ParseRequestPayloadError,
};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object};
use serde::Serialize;

/// What went wrong, for clients: a stable code, a sentence, and per-field problems.
#[derive(Debug, Clone, Object, Serialize)]
#[oai(example)]
pub struct ErrorBody {
    /// A stable machine-readable code, e.g. `not_found` or `validation_failed`.
    pub error: String,
    /// A sentence for people.
    pub message: String,
    /// One entry per offending field, empty when the error is not about input.
    pub details: Vec<ErrorDetail>,
}

impl poem_openapi::types::Example for ErrorBody {
    fn example() -> Self {
        Self {
            error: "validation_failed".into(),
            message: "The request has 1 invalid field.".into(),
            details: vec![ErrorDetail {
                field: "body.long_term_debt_to_total_capital".into(),
                problem: "must be between 0 and 100, got 140".into(),
            }],
        }
    }
}

/// One problem with one input field.
#[derive(Debug, Clone, PartialEq, Object, Serialize)]
pub struct ErrorDetail {
    /// The field, as a dotted path into the request (`body.email`, `query.limit`).
    pub field: String,
    pub problem: String,
}

impl ErrorBody {
    pub fn new(error: &str, message: impl Into<String>) -> Self {
        Self {
            error: error.to_owned(),
            message: message.into(),
            details: Vec::new(),
        }
    }
}

/// Every error an operation can answer with; each carries an [`ErrorBody`].
#[derive(Debug, ApiResponse)]
pub enum ApiError {
    /// The request is not well-formed (e.g. its body is not JSON).
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// No valid access token, or wrong credentials.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    /// Signed in, but the role or state does not allow this.
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    /// No such object visible to the caller.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// The object exists already (duplicate).
    #[oai(status = 409)]
    Conflict(Json<ErrorBody>),
    /// The body is larger than this operation accepts.
    #[oai(status = 413)]
    PayloadTooLarge(Json<ErrorBody>),
    /// One or more fields are invalid; `details` names each.
    #[oai(status = 422)]
    Validation(Json<ErrorBody>),
    /// Too many requests; retry after `Retry-After` seconds.
    #[oai(status = 429)]
    RateLimited(
        Json<ErrorBody>,
        #[oai(header = "Retry-After")] u64,
        #[oai(header = "X-RateLimit-Limit")] u32,
        #[oai(header = "X-RateLimit-Remaining")] u32,
        #[oai(header = "X-RateLimit-Reset")] u64,
    ),
    /// The server failed; the body says no more than that.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// A dependency (PostgreSQL, Redis) is down or the feature is switched off.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::BadRequest(Json(ErrorBody::new("bad_request", message)))
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::Unauthorized(Json(ErrorBody::new("unauthorized", message)))
    }

    pub fn forbidden(code: &str, message: impl Into<String>) -> Self {
        Self::Forbidden(Json(ErrorBody::new(code, message)))
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::NotFound(Json(ErrorBody::new("not_found", message)))
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::Conflict(Json(ErrorBody::new("conflict", message)))
    }

    pub fn unavailable(code: &str, message: impl Into<String>) -> Self {
        Self::Unavailable(Json(ErrorBody::new(code, message)))
    }

    /// 422 naming each offending field.
    pub fn validation(details: Vec<ErrorDetail>) -> Self {
        let message = match details.len() {
            1 => "The request has 1 invalid field.".to_owned(),
            n => format!("The request has {n} invalid fields."),
        };
        Self::Validation(Json(ErrorBody {
            error: "validation_failed".into(),
            message,
            details,
        }))
    }

    /// 422 for one field.
    pub fn invalid_field(field: &str, problem: impl Into<String>) -> Self {
        Self::validation(vec![ErrorDetail {
            field: field.to_owned(),
            problem: problem.into(),
        }])
    }

    /// A server fault: logged in full here, answered without internals.
    pub fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(error = %error, "request failed");
        Self::Internal(Json(ErrorBody::new(
            "internal_error",
            "The server could not complete the request.",
        )))
    }
}

impl From<DomainError> for ApiError {
    fn from(error: DomainError) -> Self {
        match error {
            DomainError::NotFound { what } => Self::not_found(format!("No such {what}.")),
            DomainError::Forbidden(message) => Self::forbidden("forbidden", message),
            DomainError::Conflict(message) => Self::conflict(message),
            DomainError::QuotaExceeded { .. } => {
                Self::forbidden("prediction_quota_exceeded", error.to_string())
            }
            DomainError::Database(error) => Self::internal(error),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        Self::internal(error)
    }
}

impl From<redis::RedisError> for ApiError {
    fn from(error: redis::RedisError) -> Self {
        Self::internal(error)
    }
}

/// Turns any error that reached the top of the route tree into the JSON body.
pub fn into_json_response(error: poem::Error) -> Response {
    if error.is_from_response() {
        // An `ApiError` (or another response) that already is the JSON body.
        return error.into_response();
    }
    let status = error.status();
    let body = if let Some(param) = error.downcast_ref::<ParseParamError>() {
        return ApiError::invalid_field(&format!("query.{}", param.name), param.reason.clone())
            .into_response();
    } else if let Some(path) = error.downcast_ref::<ParsePathError>() {
        let pattern = error.data::<poem::PathPattern>().map(|p| p.0.as_ref());
        let name = path_parameter_name(pattern, path.name);
        return ApiError::invalid_field(&format!("path.{name}"), path.reason.clone())
            .into_response();
    } else if let Some(payload) = error.downcast_ref::<ParseRequestPayloadError>() {
        ErrorBody::new("bad_request", payload.to_string())
    } else if error.is::<AuthorizationError>() {
        ErrorBody::new(
            "unauthorized",
            "This operation needs an access token: Authorization: Bearer <token>.",
        )
    } else if let Some(content_type) = error.downcast_ref::<ContentTypeError>() {
        ErrorBody::new("unsupported_media_type", content_type.to_string())
    } else if status.is_server_error() {
        tracing::error!(error = %error, %status, "request failed");
        ErrorBody::new(
            "internal_error",
            "The server could not complete the request.",
        )
    } else {
        ErrorBody::new(code_for(status), error.to_string())
    };
    poem::web::Json(body).with_status(status).into_response()
}

/// poem-openapi routes path parameters as `:param0`, `:param1`, … in order;
/// the document keeps their names. Route pattern → names, from the document.
static PATH_PARAMETER_NAMES: LazyLock<HashMap<String, Vec<String>>> = LazyLock::new(|| {
    let spec: serde_json::Value =
        serde_json::from_str(&crate::api::service().spec()).unwrap_or_default();
    let mut names = HashMap::new();
    for path in spec["paths"]
        .as_object()
        .into_iter()
        .flat_map(|paths| paths.keys())
    {
        let mut pattern = String::new();
        let mut parameters = Vec::new();
        for segment in path.split('/').filter(|s| !s.is_empty()) {
            match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => {
                    pattern.push_str(&format!("/:param{}", parameters.len()));
                    parameters.push(name.to_owned());
                }
                None => {
                    pattern.push('/');
                    pattern.push_str(segment);
                }
            }
        }
        names.insert(pattern, parameters);
    }
    names
});

/// The document's name of a path parameter that poem-openapi calls `internal`.
fn path_parameter_name(pattern: Option<&str>, internal: &str) -> String {
    internal
        .strip_prefix("param")
        .and_then(|index| index.parse::<usize>().ok())
        .zip(pattern)
        .and_then(|(index, pattern)| PATH_PARAMETER_NAMES.get(pattern)?.get(index).cloned())
        .unwrap_or_else(|| internal.to_owned())
}

fn code_for(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::CONFLICT => "conflict",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "validation_failed",
        StatusCode::TOO_MANY_REQUESTS => "rate_limited",
        _ => "client_error",
    }
}
