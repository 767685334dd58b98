//! The one error body every failing request gets: `{error, message, details[]}`.
//!
//! Handlers return [`ApiError`], whose variants are the statuses the document
//! declares; domain errors map onto them here. Errors raised by poem or
//! poem-openapi themselves become the same body in `framework_errors`.

use accunode_core::domain::DomainError;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object};
use serde::Serialize;

use crate::auth::password::{PasswordError, SLOT_WAIT};

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
                field: "body.reporting_year".into(),
                problem: "must be a year as YYYY between 1900 and 2200, got \"20x4\"".into(),
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
    /// The body's media type is not one this operation takes.
    #[oai(status = 415)]
    UnsupportedMediaType(Json<ErrorBody>),
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
    /// A dependency (PostgreSQL, Redis) is down, the feature is switched off,
    /// or the server is too busy now (then retry after `Retry-After` seconds).
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>, #[oai(header = "Retry-After")] Option<u64>),
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
        Self::Unavailable(Json(ErrorBody::new(code, message)), None)
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
            DomainError::InsufficientRole(message) => Self::forbidden("insufficient_role", message),
            DomainError::NotWhitelisted => Self::forbidden(
                "not_whitelisted",
                "Your email address is not on this organization's whitelist.",
            ),
            DomainError::Conflict(message) => Self::conflict(message),
            DomainError::AlreadyMember => Self::conflict("You already belong to an organization."),
            DomainError::QuotaExceeded { .. } => {
                Self::forbidden("prediction_quota_exceeded", error.to_string())
            }
            DomainError::InvalidRatio { ratio, problem } => {
                Self::invalid_field(&format!("body.{ratio}"), problem)
            }
            DomainError::InvalidParameter { parameter, problem } => {
                Self::invalid_field(&format!("query.{parameter}"), problem)
            }
            DomainError::Unscorable(_) => Self::internal(error),
            DomainError::Database(error) => Self::internal(error),
        }
    }
}

impl From<PasswordError> for ApiError {
    fn from(error: PasswordError) -> Self {
        match error {
            PasswordError::Busy => Self::Unavailable(
                Json(ErrorBody::new(
                    "busy",
                    "The server is checking too many passwords right now; retry in a second.",
                )),
                Some(SLOT_WAIT.as_secs().max(1)),
            ),
            PasswordError::Failed(error) => Self::internal(error),
        }
    }
}

impl From<redis::RedisError> for ApiError {
    fn from(error: redis::RedisError) -> Self {
        Self::internal(error)
    }
}
