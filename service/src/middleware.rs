//! Request ids, request logging and HTTP metrics: the one layer around every route.
//!
//! Every request runs inside a `request` span carrying its id, so every log line
//! it causes, in any module, names the request. The id is the caller's
//! `X-Request-Id` when that is sane (so a trace crosses the load balancer and
//! clients), otherwise a fresh UUID, and it is echoed in the response.

use std::sync::Arc;
use std::time::Instant;

use poem::PathPattern;
use poem::http::HeaderValue;
use poem::{Endpoint, IntoResponse, Request, Response, Result};
use tracing::Instrument;

use crate::metrics::HttpMetrics;

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Longest caller-supplied request id we keep; longer ones are replaced.
const MAX_REQUEST_ID_LEN: usize = 128;

/// Wraps an endpoint with the request span, the id header, a completion log
/// line and the metrics; errors leave it as the JSON error body.
pub async fn observe<E: Endpoint>(
    endpoint: E,
    request: Request,
    metrics: Arc<HttpMetrics>,
) -> Result<Response> {
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
    let method = request.method().clone();
    async move {
        let started = Instant::now();
        let in_flight = metrics.start();
        // The router leaves the matched pattern on the response or the error.
        let (mut response, route) = match endpoint.call(request).await {
            Ok(response) => {
                let response = response.into_response();
                let route = response.data::<PathPattern>().map(|p| p.0.clone());
                (response, route)
            }
            Err(error) => {
                let route = error.data::<PathPattern>().map(|p| p.0.clone());
                (crate::framework_errors::into_json_response(error), route)
            }
        };
        drop(in_flight);
        let status = response.status();
        let elapsed = started.elapsed();
        metrics.record(&method, route.as_deref(), status, elapsed);
        let latency_ms = elapsed.as_secs_f64() * 1000.0;
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
