//! Security headers on every answer, and `ETag` / `If-None-Match` on GETs.
//!
//! Every answer gets HSTS, `nosniff`, `X-Frame-Options: DENY` and
//! `Referrer-Policy: no-referrer`; `/api/v1/auth` answers (tokens) get
//! `Cache-Control: no-store`, other API answers `private, no-cache` so that
//! caches revalidate with the ETag. A successful GET under `/api/v1` gets a
//! strong ETag (SHA-256 of the body); when the request's `If-None-Match`
//! names it, the answer is 304 with no body.

use poem::http::{HeaderValue, Method, StatusCode, header};
use poem::{Endpoint, IntoResponse, Request, Response, Result};
use sha2::{Digest, Sha256};

pub async fn secure<E: Endpoint>(next: E, request: Request) -> Result<Response> {
    let path = request.uri().path().to_owned();
    let is_get = request.method() == Method::GET;
    let if_none_match = request
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let mut response = match next.call(request).await {
        Ok(response) => response.into_response(),
        Err(error) => crate::framework_errors::into_json_response(error),
    };
    if is_get && path.starts_with("/api/v1/") && response.status() == StatusCode::OK {
        response = with_etag(response, if_none_match.as_deref()).await;
    }
    let headers = response.headers_mut();
    headers.insert(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static("max-age=31536000; includeSubDomains"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if path.starts_with("/api/v1/auth/") {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    } else if path.starts_with("/api/v1/") {
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("private, no-cache"),
        );
    }
    Ok(response)
}

async fn with_etag(mut response: Response, if_none_match: Option<&str>) -> Response {
    let body = match response.take_body().into_bytes().await {
        Ok(body) => body,
        Err(error) => {
            tracing::error!(%error, "could not read a response body for its ETag");
            return crate::framework_errors::into_json_response(poem::Error::from_status(
                StatusCode::INTERNAL_SERVER_ERROR,
            ));
        }
    };
    let digest = Sha256::digest(&body);
    let etag = format!("\"{}\"", hex(&digest[..16]));
    let matches = if_none_match.is_some_and(|tags| {
        tags.split(',')
            .map(|tag| tag.trim().trim_start_matches("W/"))
            .any(|tag| tag == etag || tag == "*")
    });
    let value = HeaderValue::from_str(&etag).expect("hex in quotes is a valid header value");
    response.headers_mut().insert(header::ETAG, value);
    if matches {
        // Same headers (rate limits, ids), no body.
        response.set_status(StatusCode::NOT_MODIFIED);
        response.headers_mut().remove(header::CONTENT_TYPE);
        response.set_body(());
    } else {
        response.set_body(body);
    }
    response
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
