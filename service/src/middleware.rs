//! Request ids and request logging.
//!
//! Every request runs inside a `request` span carrying its id, so every log line
//! it causes, in any module, names the request. The id is the caller's
//! `X-Request-Id` when that is sane (so a trace crosses the load balancer and
//! clients), otherwise a fresh UUID, and it is echoed in the response.

use std::time::Instant;

use poem::http::HeaderValue;
use poem::{Endpoint, IntoResponse, Request, Response, Result};
use tracing::Instrument;

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Longest caller-supplied request id we keep; longer ones are replaced.
const MAX_REQUEST_ID_LEN: usize = 128;

/// Wraps an endpoint with the request span, the id header and a completion log line.
pub async fn request_logging<E: Endpoint>(endpoint: E, request: Request) -> Result<Response> {
    let request_id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .filter(|id| {
            !id.is_empty()
                && id.len() <= MAX_REQUEST_ID_LEN
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        })
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        method = %request.method(),
        path = %request.uri().path(),
    );
    async move {
        let started = Instant::now();
        let mut response = match endpoint.call(request).await {
            Ok(response) => response.into_response(),
            Err(error) => crate::error::into_json_response(error),
        };
        let status = response.status();
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        if status.is_server_error() {
            tracing::error!(status = status.as_u16(), latency_ms, "request finished");
        } else {
            tracing::info!(status = status.as_u16(), latency_ms, "request finished");
        }
        if let Ok(value) = HeaderValue::from_str(&request_id) {
            response.headers_mut().insert(REQUEST_ID_HEADER, value);
        }
        Ok(response)
    }
    .instrument(span)
    .await
}
