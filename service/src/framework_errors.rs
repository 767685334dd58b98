//! Errors raised by poem or poem-openapi themselves (unknown route, wrong
//! method, a query parameter that does not parse, a missing bearer token) as
//! the JSON error body of [`crate::error`], so no client ever sees a plain-text
//! or HTML error, and a server fault never shows its internals. A 405 says in
//! `Allow` which methods the route has.
//!
//! Apart from `error` because it reads the OpenAPI document, which is built
//! from the handlers, which use `error`.

use std::collections::HashMap;
use std::sync::LazyLock;

use poem::http::{HeaderValue, StatusCode, header};
use poem::{IntoResponse, Response};
use poem_openapi::error::{
    AuthorizationError, ContentTypeError, ParseParamError, ParsePathError, ParseRequestPayloadError,
};

use crate::error::{ApiError, ErrorBody};

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
    let allow = (status == StatusCode::METHOD_NOT_ALLOWED)
        .then(|| allowed_methods(error.data::<poem::PathPattern>().map(|p| p.0.as_ref())))
        .flatten();
    let mut response = poem::web::Json(body).with_status(status).into_response();
    if let Some(allow) = allow {
        response.headers_mut().insert(header::ALLOW, allow);
    }
    response
}

/// What the document says of one route: its path parameters' names in order
/// (poem-openapi routes them as `:param0`, `:param1`, …) and its methods.
struct DocumentedRoute {
    parameters: Vec<String>,
    methods: Vec<String>,
}

/// Route pattern (poem-openapi's) → what the document says of it.
static DOCUMENTED_ROUTES: LazyLock<HashMap<String, DocumentedRoute>> = LazyLock::new(|| {
    let spec: serde_json::Value =
        serde_json::from_str(&crate::api::service().spec()).unwrap_or_default();
    let mut routes = HashMap::new();
    for (path, operations) in spec["paths"].as_object().into_iter().flatten() {
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
        let methods = operations
            .as_object()
            .into_iter()
            .flat_map(|operations| operations.keys())
            .map(|method| method.to_uppercase())
            .collect();
        routes.insert(
            pattern,
            DocumentedRoute {
                parameters,
                methods,
            },
        );
    }
    routes
});

/// The document's name of a path parameter that poem-openapi calls `internal`.
fn path_parameter_name(pattern: Option<&str>, internal: &str) -> String {
    internal
        .strip_prefix("param")
        .and_then(|index| index.parse::<usize>().ok())
        .zip(pattern)
        .and_then(|(index, pattern)| {
            DOCUMENTED_ROUTES
                .get(pattern)?
                .parameters
                .get(index)
                .cloned()
        })
        .unwrap_or_else(|| internal.to_owned())
}

/// The `Allow` header of a 405 on this route: the methods the document gives it.
fn allowed_methods(pattern: Option<&str>) -> Option<HeaderValue> {
    let route = DOCUMENTED_ROUTES.get(pattern?)?;
    HeaderValue::from_str(&route.methods.join(", ")).ok()
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
