//! The one error body every failing request gets: `{error, message, details[]}`.
//!
//! Errors raised by poem itself (unknown route, wrong method, unreadable body)
//! pass through [`into_json_response`], so no client ever sees a plain-text or
//! HTML error, and a server fault never shows its internals.

use poem::http::StatusCode;
use poem::{IntoResponse, Response};
use poem_openapi::Object;
use serde::Serialize;

/// What went wrong, for clients: a stable code, a sentence, and per-field problems.
#[derive(Debug, Clone, Object, Serialize)]
pub struct ErrorBody {
    /// A stable machine-readable code, e.g. `not_found` or `validation_failed`.
    pub error: String,
    /// A sentence for people.
    pub message: String,
    /// One entry per offending field, empty when the error is not about input.
    pub details: Vec<ErrorDetail>,
}

/// One problem with one input field.
#[derive(Debug, Clone, Object, Serialize)]
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

/// Turns any error that reached the top of the route tree into the JSON body.
pub fn into_json_response(error: poem::Error) -> Response {
    let status = error.status();
    let body = if status.is_server_error() {
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
