//! Sign-in sessions: token pairs, rotating refresh tokens with reuse
//! detection, revocation, and the caller behind an access token.
//!
//! PostgreSQL is the record (kept by `accunode_core::domain::sessions`; this
//! module mints the tokens and passes their digests); Redis caches the
//! [`Caller`] of each live session under `accunode:session:<id>` so a request
//! costs one Redis read, not a join. Revoking a session writes a `revoked`
//! marker there (not a delete), and the cache is filled only with `SET NX`, so
//! a request racing a sign-out cannot put the session back. Leaving or being
//! removed from an organisation and deactivation end the user's sessions the
//! same way. A role or organisation change overwrites the user's entries with
//! a short-lived `stale` marker: until it expires their callers come from
//! PostgreSQL and are not cached, so a fill that read the caller before the
//! change cannot bring the old role back. When Redis is down, every request
//! reads PostgreSQL instead: slower, never wrong.

use std::time::Duration;

use accunode_core::domain::sessions::{self, Refresh, RevokeReason};
use accunode_core::domain::{Caller, OrganizationId, SessionId, UserId};
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use sqlx::PgPool;

use super::tokens::{self, TokenError, TokenKeys};
use crate::error::ApiError;

/// How long a session's caller stays cached.
const CALLER_CACHE_TTL: Duration = Duration::from_secs(300);
const REVOKED: &str = "revoked";
/// Written over the cached callers of a user whose role or organisation
/// changed: while it lasts their callers are read from PostgreSQL and not
/// cached, so a request that read the old caller just before the change
/// cannot cache it (fills are `SET NX`). Only a fill stalled longer than this
/// between its read and its write could.
const STALE: &str = "stale";
const STALE_TTL: Duration = Duration::from_secs(30);

/// What a successful sign-in or refresh returns.
#[derive(Debug, Clone)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

pub struct Sessions {
    pool: PgPool,
    redis: ConnectionManager,
    keys: TokenKeys,
    refresh_ttl: Duration,
}

fn cache_key(session: SessionId) -> String {
    format!("accunode:session:{session}")
}

impl Sessions {
    pub fn new(
        pool: PgPool,
        redis: ConnectionManager,
        keys: TokenKeys,
        refresh_ttl: Duration,
    ) -> Self {
        Self {
            pool,
            redis,
            keys,
            refresh_ttl,
        }
    }

    /// Starts a session for `user` and returns its first token pair.
    pub async fn start(&self, user: UserId) -> Result<TokenPair, ApiError> {
        let refresh_token = tokens::random_token();
        let session = sessions::start(
            &self.pool,
            user,
            self.refresh_ttl,
            &tokens::digest(&refresh_token),
        )
        .await?;
        let (access_token, expires_in) = self.keys.issue(user, session);
        Ok(TokenPair {
            access_token,
            refresh_token,
            expires_in,
        })
    }

    /// Exchanges a refresh token for a new pair. The presented token is used
    /// up; presenting a used one again revokes its whole session.
    pub async fn refresh(&self, refresh_token: &str) -> Result<TokenPair, ApiError> {
        let next = tokens::random_token();
        let refreshed = sessions::rotate(
            &self.pool,
            &tokens::digest(refresh_token),
            &tokens::digest(&next),
        )
        .await?;
        match refreshed {
            Refresh::Rotated { session, user } => {
                let (access_token, expires_in) = self.keys.issue(user, session);
                Ok(TokenPair {
                    access_token,
                    refresh_token: next,
                    expires_in,
                })
            }
            Refresh::Unknown => Err(ApiError::unauthorized("The refresh token is not valid.")),
            Refresh::SessionEnded => Err(ApiError::unauthorized(
                "The session of this refresh token has ended; sign in again.",
            )),
            Refresh::Reused { session, user } => {
                self.mark_revoked(&[session]).await;
                tracing::warn!(%session, %user, "refresh token reused; session revoked");
                Err(ApiError::unauthorized(
                    "This refresh token was already used; the session is ended. Sign in again.",
                ))
            }
        }
    }

    /// Ends one session.
    pub async fn revoke(&self, session: SessionId, reason: RevokeReason) -> Result<(), ApiError> {
        sessions::revoke(&self.pool, session, reason).await?;
        self.mark_revoked(&[session]).await;
        Ok(())
    }

    /// Ends every live session of the caller but the one they are using.
    pub async fn revoke_others(
        &self,
        caller: &Caller,
        reason: RevokeReason,
    ) -> Result<(), ApiError> {
        let ended = sessions::revoke_others(&self.pool, caller, reason).await?;
        self.mark_revoked(&ended).await;
        Ok(())
    }

    /// Drops the cached callers of these users' live sessions, after their
    /// role or organisation changed (see [`STALE`]).
    pub async fn forget_callers(&self, users: &[UserId]) -> Result<(), ApiError> {
        let live = sessions::live_sessions(&self.pool, users).await?;
        self.forget_sessions(live).await;
        Ok(())
    }

    /// Drops the cached callers of the live sessions of an organisation's
    /// members, after the organisation's settings changed.
    pub async fn forget_organization(&self, organization: OrganizationId) -> Result<(), ApiError> {
        let live = sessions::live_sessions_in_organization(&self.pool, organization).await?;
        self.forget_sessions(live).await;
        Ok(())
    }

    async fn forget_sessions(&self, live: Vec<SessionId>) {
        if live.is_empty() {
            return;
        }
        let mut stale = redis::pipe();
        for session in live {
            stale
                .set_ex(cache_key(session), STALE, STALE_TTL.as_secs())
                .ignore();
        }
        let mut redis = self.redis.clone();
        let marked: Result<(), _> = stale.query_async(&mut redis).await;
        if let Err(error) = marked {
            tracing::warn!(%error, "could not drop cached sessions; they expire by themselves");
        }
    }

    /// Marks sessions that a domain transaction ended (a password reset, a
    /// departure from an organisation, a deactivation) as revoked, so their
    /// cached callers stop at the very next request and a racing cache fill
    /// cannot bring them back.
    pub async fn mark_revoked(&self, ended: &[SessionId]) {
        let mut redis = self.redis.clone();
        // Access tokens of the session outlive it by at most their lifetime.
        let ttl = self.keys.access_ttl.as_secs() + 60;
        for session in ended {
            if let Err(error) = redis
                .set_ex::<_, _, ()>(cache_key(*session), REVOKED, ttl)
                .await
            {
                tracing::warn!(%error, %session, "could not mark the session revoked in Redis");
            }
        }
    }

    /// The user a validly signed, unexpired access token names, without
    /// asking whether its session is still live (enough to count a request).
    pub fn user_of(&self, access_token: &str) -> Option<UserId> {
        self.keys.verify(access_token).ok().map(|claims| claims.sub)
    }

    /// The caller behind an access token: a valid token of a live session of
    /// an active user.
    pub async fn caller(&self, access_token: &str) -> Result<Caller, ApiError> {
        let claims = self
            .keys
            .verify(access_token)
            .map_err(|error| match error {
                TokenError::Expired => {
                    ApiError::unauthorized("The access token has expired; refresh it.")
                }
                TokenError::Invalid => ApiError::unauthorized("The access token is not valid."),
            })?;
        let ended = || ApiError::unauthorized("The session has ended; sign in again.");
        let mut redis = self.redis.clone();
        let key = cache_key(claims.sid);
        let mut fill = true;
        match redis.get::<_, Option<String>>(&key).await {
            Ok(Some(cached)) if cached == REVOKED => return Err(ended()),
            Ok(Some(cached)) if cached == STALE => fill = false,
            Ok(Some(cached)) => match serde_json::from_str::<Caller>(&cached) {
                Ok(caller) if caller.user_id == claims.sub => return Ok(caller),
                _ => return Err(ended()),
            },
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(%error, "session cache unavailable; reading PostgreSQL");
            }
        }
        let Some(caller) = sessions::caller(&self.pool, claims.sid, claims.sub).await? else {
            return Err(ended());
        };
        if !fill {
            return Ok(caller);
        }
        let cached = serde_json::to_string(&caller).map_err(ApiError::internal)?;
        let filled: Result<(), _> = redis::cmd("SET")
            .arg(&key)
            .arg(cached)
            .arg("NX")
            .arg("EX")
            .arg(CALLER_CACHE_TTL.as_secs())
            .query_async(&mut redis)
            .await;
        if let Err(error) = filled {
            tracing::debug!(%error, "session not cached");
        }
        Ok(caller)
    }
}
