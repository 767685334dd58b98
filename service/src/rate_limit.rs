//! Request rate limits, counted in Redis so every API server shares them.
//!
//! Fixed one-minute windows: `INCR accunode:ratelimit:<class>:<subject>:<minute>`
//! with an expiry, one round trip per request. Classes: `auth` (every
//! `/api/v1/auth` route, per client address) and `user` (everything else, per
//! signed-in user, or per client address without a valid token). Health,
//! metrics, the document and Swagger UI are not limited, so load balancers and
//! scrapers never see 429. Every limited answer carries `X-RateLimit-Limit`,
//! `-Remaining` and `-Reset` (seconds until the window ends); a 429 also
//! `Retry-After`. When Redis does not answer, requests pass (availability over
//! strictness) and a warning is logged.
//!
//! [`Throttle`] adds budgets that only a handler can key, because their
//! subject is in the body: sign-in attempts per e-mail address (so guessing
//! one account's password from many client addresses is bounded) and
//! refreshes per session. Each of its windows starts at the subject's first
//! counted request.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use accunode_core::config::RateLimitSettings;
use poem::http::HeaderValue;
use poem::web::RemoteAddr;
use poem::{Endpoint, IntoResponse, Request, Response, Result};
use poem_openapi::auth::{Bearer, BearerAuthorization};
use poem_openapi::payload::Json;
use redis::aio::ConnectionManager;

use crate::auth::sessions::Sessions;
use crate::error::{ApiError, ErrorBody};

const WINDOW_SECS: u64 = 60;

/// The window of a [`Throttle`] budget.
pub const THROTTLE_WINDOW: Duration = Duration::from_secs(15 * 60);

pub struct RateLimiter {
    pub settings: RateLimitSettings,
    pub redis: ConnectionManager,
    pub sessions: Arc<Sessions>,
    pub trust_forwarded_for: bool,
}

/// What a request counts against.
struct Bucket {
    class: &'static str,
    subject: String,
    limit: u32,
}

/// The client's address: the last `X-Forwarded-For` entry (the one the load
/// balancer appended) when trusted, else the TCP peer.
pub fn client_address(request: &Request, trust_forwarded_for: bool) -> String {
    if trust_forwarded_for
        && let Some(forwarded) = request
            .headers()
            .get("x-forwarded-for")
            .and_then(|value| value.to_str().ok())
        && let Some(last) = forwarded.rsplit(',').next()
        && let Ok(address) = last.trim().parse::<IpAddr>()
    {
        return address.to_string();
    }
    match request.remote_addr() {
        RemoteAddr(poem::Addr::SocketAddr(address)) => address.ip().to_string(),
        other => other.to_string(),
    }
}

impl RateLimiter {
    fn bucket(&self, request: &Request) -> Option<Bucket> {
        let path = request.uri().path();
        if request.method() == poem::http::Method::OPTIONS || !path.starts_with("/api/v1/") {
            return None;
        }
        if path == "/api/v1/health" {
            return None;
        }
        if path.starts_with("/api/v1/auth/") {
            return Some(Bucket {
                class: "auth",
                subject: client_address(request, self.trust_forwarded_for),
                limit: self.settings.auth_per_ip_per_minute,
            });
        }
        // The security scheme's own parser: any spelling it accepts
        // (`bearer`, `BEARER`, extra spaces) counts against the user.
        let user = Bearer::from_request(request)
            .ok()
            .and_then(|bearer| self.sessions.user_of(&bearer.token));
        Some(Bucket {
            class: "user",
            subject: match user {
                Some(user) => user.to_string(),
                None => format!("ip:{}", client_address(request, self.trust_forwarded_for)),
            },
            limit: self.settings.per_user_per_minute,
        })
    }

    /// The count of this request in its window, or `None` when Redis failed.
    async fn count(&self, bucket: &Bucket, window: u64) -> Option<u64> {
        let key = format!(
            "accunode:ratelimit:{}:{}:{window}",
            bucket.class, bucket.subject
        );
        let mut redis = self.redis.clone();
        let counted: redis::RedisResult<(u64,)> = redis::pipe()
            .atomic()
            .incr(&key, 1)
            .expire(&key, (WINDOW_SECS * 2) as i64)
            .ignore()
            .query_async(&mut redis)
            .await;
        match counted {
            Ok((count,)) => Some(count),
            Err(error) => {
                tracing::warn!(%error, "rate limit not counted: Redis did not answer");
                None
            }
        }
    }

    /// Counts the request, answers 429 over the limit, else calls `next`.
    pub async fn check<E: Endpoint>(&self, next: E, request: Request) -> Result<Response> {
        if !self.settings.enabled {
            return next.call(request).await.map(IntoResponse::into_response);
        }
        let Some(bucket) = self.bucket(&request) else {
            return next.call(request).await.map(IntoResponse::into_response);
        };
        let now = crate::auth::tokens::unix_now();
        let window = now / WINDOW_SECS;
        let reset = (window + 1) * WINDOW_SECS - now;
        let Some(count) = self.count(&bucket, window).await else {
            return next.call(request).await.map(IntoResponse::into_response);
        };
        let remaining = u64::from(bucket.limit).saturating_sub(count) as u32;
        let mut response = if count > u64::from(bucket.limit) {
            ApiError::RateLimited(
                Json(ErrorBody::new(
                    "rate_limited",
                    format!(
                        "Too many requests: the limit is {} per minute. Retry in {reset} s.",
                        bucket.limit
                    ),
                )),
                reset,
                bucket.limit,
                0,
                reset,
            )
            .into_response()
        } else {
            match next.call(request).await {
                Ok(response) => response.into_response(),
                Err(error) => crate::framework_errors::into_json_response(error),
            }
        };
        let headers = response.headers_mut();
        // A handler's own budget (a `Throttle`) that answered 429 keeps its headers.
        if !headers.contains_key("x-ratelimit-limit") {
            headers.insert("x-ratelimit-limit", HeaderValue::from(bucket.limit));
            headers.insert("x-ratelimit-remaining", HeaderValue::from(remaining));
            headers.insert("x-ratelimit-reset", HeaderValue::from(reset));
        }
        Ok(response)
    }
}

/// Budgets counted by handlers, per subject, in windows of [`THROTTLE_WINDOW`]
/// from a subject's first counted request; shared by every API server.
#[derive(Clone)]
pub struct Throttle {
    redis: ConnectionManager,
    enabled: bool,
}

/// What a [`Throttle`] budget counts.
#[derive(Debug, Clone, Copy)]
pub enum Budget {
    /// Failed sign-ins per normalised e-mail address and client address
    /// (password guessing from one place).
    LoginFailuresPerEmailAndClient,
    /// Failed sign-ins per normalised e-mail address from anywhere, with a
    /// cap ten times the one above: guessing from many places stays bounded,
    /// and one client cannot lock an account's owner out.
    LoginFailuresPerEmail,
    /// Refreshes per sign-in session.
    RefreshPerSession,
    /// Password reset mails per normalised e-mail address.
    ResetMailPerEmail,
    /// Registrations per normalised e-mail address: past the budget, an
    /// address that has an account gets no more notices of them.
    RegistrationPerEmail,
}

impl Budget {
    fn class(self) -> &'static str {
        match self {
            Self::LoginFailuresPerEmailAndClient => "login-failures-email-client",
            Self::LoginFailuresPerEmail => "login-failures-email",
            Self::RefreshPerSession => "refresh-session",
            Self::ResetMailPerEmail => "reset-mail-email",
            Self::RegistrationPerEmail => "registration-email",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Self::LoginFailuresPerEmailAndClient | Self::LoginFailuresPerEmail => {
                "failed sign-ins for this email address"
            }
            Self::RefreshPerSession => "token refreshes in this session",
            Self::ResetMailPerEmail => "password reset mails for this email address",
            Self::RegistrationPerEmail => "registrations of this email address",
        }
    }
}

impl Throttle {
    /// Counting only when `enabled` (`ENABLE_RATE_LIMITING`).
    pub fn new(redis: ConnectionManager, enabled: bool) -> Self {
        Self { redis, enabled }
    }

    /// 429 with `Retry-After` when `subject` has already used `limit` of
    /// `budget`; counts nothing (see [`Throttle::hit`]).
    pub async fn check(&self, budget: Budget, subject: &str, limit: u32) -> Result<(), ApiError> {
        if !self.enabled {
            return Ok(());
        }
        let key = format!("accunode:throttle:{}:{subject}", budget.class());
        let mut redis = self.redis.clone();
        let counted: redis::RedisResult<(Option<u64>, i64)> = redis::pipe()
            .get(&key)
            .ttl(&key)
            .query_async(&mut redis)
            .await;
        match counted {
            Ok((Some(count), ttl)) if count >= u64::from(limit) => Err(limited(budget, limit, ttl)),
            Ok(_) => Ok(()),
            Err(error) => {
                tracing::warn!(%error, budget = budget.class(), "not checked: Redis did not answer");
                Ok(())
            }
        }
    }

    /// Counts one request of `subject` against `budget`; 429 with
    /// `Retry-After` (the rest of the window) once more than `limit` were
    /// counted. `subject` is used as a key only; pass a digest, not a secret
    /// or an address.
    pub async fn hit(&self, budget: Budget, subject: &str, limit: u32) -> Result<(), ApiError> {
        if !self.enabled {
            return Ok(());
        }
        let key = format!("accunode:throttle:{}:{subject}", budget.class());
        let mut redis = self.redis.clone();
        let counted: redis::RedisResult<(u64, i64)> = redis::pipe()
            .atomic()
            .cmd("SET")
            .arg(&key)
            .arg(0)
            .arg("NX")
            .arg("EX")
            .arg(THROTTLE_WINDOW.as_secs())
            .ignore()
            .incr(&key, 1)
            .ttl(&key)
            .query_async(&mut redis)
            .await;
        let (count, ttl) = match counted {
            Ok(counted) => counted,
            Err(error) => {
                tracing::warn!(%error, budget = budget.class(), "not counted: Redis did not answer");
                return Ok(());
            }
        };
        if count <= u64::from(limit) {
            return Ok(());
        }
        Err(limited(budget, limit, ttl))
    }
}

/// The 429 of a used-up budget whose window ends in `ttl` seconds.
fn limited(budget: Budget, limit: u32, ttl: i64) -> ApiError {
    let retry_after = u64::try_from(ttl).unwrap_or(1).max(1);
    ApiError::RateLimited(
        Json(ErrorBody::new(
            "rate_limited",
            format!(
                "Too many {}: the limit is {limit} per {} minutes. Retry in {retry_after} s.",
                budget.what(),
                THROTTLE_WINDOW.as_secs() / 60
            ),
        )),
        retry_after,
        limit,
        0,
        retry_after,
    )
}
