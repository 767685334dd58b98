//! Sign-in sessions: token pairs, rotating refresh tokens with reuse
//! detection, revocation, and the caller behind an access token.
//!
//! PostgreSQL is the record (`sessions`, `refresh_tokens`); Redis caches the
//! [`Caller`] of each live session under `accunode:session:<id>` so a request
//! costs one Redis read, not a join. Revoking a session writes a `revoked`
//! marker there (not a delete), and the cache is filled only with `SET NX`, so
//! a request racing a sign-out cannot put the session back. A role or
//! organisation change deletes the user's entries; they refill from
//! PostgreSQL on the next request. When Redis is down, every request reads
//! PostgreSQL instead: slower, never wrong.

use std::time::Duration;

use accunode_core::domain::{Caller, Role};
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use sqlx::{PgPool, Row};
use uuid::Uuid;

use super::tokens::{self, TokenError, TokenKeys};
use crate::error::ApiError;

/// The most a cached caller can lag a role change that raced its cache fill.
const CALLER_CACHE_TTL: Duration = Duration::from_secs(300);
const REVOKED: &str = "revoked";

/// What a successful sign-in or refresh returns.
#[derive(Debug, Clone)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

/// Why a session ended, as recorded.
#[derive(Debug, Clone, Copy)]
pub enum RevokeReason {
    Logout,
    PasswordChanged,
    RefreshTokenReused,
}

impl RevokeReason {
    fn as_str(self) -> &'static str {
        match self {
            Self::Logout => "logout",
            Self::PasswordChanged => "password_changed",
            Self::RefreshTokenReused => "refresh_token_reused",
        }
    }
}

pub struct Sessions {
    pool: PgPool,
    redis: ConnectionManager,
    keys: TokenKeys,
    refresh_ttl: Duration,
}

/// Stores (the digest of) a new refresh token of `session` and returns it.
async fn new_refresh_token(
    connection: &mut sqlx::PgConnection,
    session: Uuid,
) -> Result<String, sqlx::Error> {
    let token = tokens::random_token();
    sqlx::query("INSERT INTO refresh_tokens (token_sha256, session_id) VALUES ($1, $2)")
        .bind(tokens::digest(&token))
        .bind(session)
        .execute(connection)
        .await?;
    Ok(token)
}

fn cache_key(session: Uuid) -> String {
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
    pub async fn start(&self, user: Uuid) -> Result<TokenPair, ApiError> {
        let mut tx = self.pool.begin().await?;
        let session: Uuid = sqlx::query_scalar(
            "INSERT INTO sessions (user_id, expires_at) VALUES ($1, now() + $2) RETURNING id",
        )
        .bind(user)
        .bind(self.refresh_ttl)
        .fetch_one(&mut *tx)
        .await?;
        let refresh_token = new_refresh_token(&mut tx, session).await?;
        tx.commit().await?;
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
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "SELECT rt.session_id, rt.used_at IS NOT NULL AS used, s.user_id, \
                    s.revoked_at IS NOT NULL AS revoked, s.expires_at <= now() AS expired, \
                    u.is_active \
             FROM refresh_tokens rt JOIN sessions s ON s.id = rt.session_id \
             JOIN users u ON u.id = s.user_id \
             WHERE rt.token_sha256 = $1 FOR UPDATE OF rt, s",
        )
        .bind(tokens::digest(refresh_token))
        .fetch_optional(&mut *tx)
        .await?;
        let invalid = || ApiError::unauthorized("The refresh token is not valid.");
        let Some(row) = row else {
            return Err(invalid());
        };
        let session: Uuid = row.try_get("session_id")?;
        let user: Uuid = row.try_get("user_id")?;
        if row.try_get::<bool, _>("revoked")?
            || row.try_get::<bool, _>("expired")?
            || !row.try_get::<bool, _>("is_active")?
        {
            return Err(ApiError::unauthorized(
                "The session of this refresh token has ended; sign in again.",
            ));
        }
        if row.try_get::<bool, _>("used")? {
            // A used token presented again: someone holds a copy. End the session
            // for both holders.
            sqlx::query(
                "UPDATE sessions SET revoked_at = now(), revoked_reason = $2 WHERE id = $1",
            )
            .bind(session)
            .bind(RevokeReason::RefreshTokenReused.as_str())
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            self.mark_revoked(&[session]).await;
            tracing::warn!(%session, %user, "refresh token reused; session revoked");
            return Err(ApiError::unauthorized(
                "This refresh token was already used; the session is ended. Sign in again.",
            ));
        }
        sqlx::query("UPDATE refresh_tokens SET used_at = now() WHERE token_sha256 = $1")
            .bind(tokens::digest(refresh_token))
            .execute(&mut *tx)
            .await?;
        let next = new_refresh_token(&mut tx, session).await?;
        tx.commit().await?;
        let (access_token, expires_in) = self.keys.issue(user, session);
        Ok(TokenPair {
            access_token,
            refresh_token: next,
            expires_in,
        })
    }

    /// Ends one session.
    pub async fn revoke(&self, session: Uuid, reason: RevokeReason) -> Result<(), ApiError> {
        sqlx::query(
            "UPDATE sessions SET revoked_at = now(), revoked_reason = $2 \
             WHERE id = $1 AND revoked_at IS NULL",
        )
        .bind(session)
        .bind(reason.as_str())
        .execute(&self.pool)
        .await?;
        self.mark_revoked(&[session]).await;
        Ok(())
    }

    /// Ends every live session of `user` but `keep`.
    pub async fn revoke_others(
        &self,
        user: Uuid,
        keep: Uuid,
        reason: RevokeReason,
    ) -> Result<(), ApiError> {
        let ended: Vec<Uuid> = sqlx::query_scalar(
            "UPDATE sessions SET revoked_at = now(), revoked_reason = $3 \
             WHERE user_id = $1 AND id <> $2 AND revoked_at IS NULL RETURNING id",
        )
        .bind(user)
        .bind(keep)
        .bind(reason.as_str())
        .fetch_all(&self.pool)
        .await?;
        self.mark_revoked(&ended).await;
        Ok(())
    }

    /// Drops the cached callers of these users' live sessions, after their
    /// role, organisation or organisation settings changed.
    pub async fn forget_callers(&self, users: &[Uuid]) -> Result<(), ApiError> {
        let live: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM sessions WHERE user_id = ANY($1) AND revoked_at IS NULL \
             AND expires_at > now()",
        )
        .bind(users)
        .fetch_all(&self.pool)
        .await?;
        if live.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = live.into_iter().map(cache_key).collect();
        let mut redis = self.redis.clone();
        if let Err(error) = redis.del::<_, ()>(keys).await {
            tracing::warn!(%error, "could not drop cached sessions; they expire by themselves");
        }
        Ok(())
    }

    async fn mark_revoked(&self, sessions: &[Uuid]) {
        let mut redis = self.redis.clone();
        // Access tokens of the session outlive it by at most their lifetime.
        let ttl = self.keys.access_ttl.as_secs() + 60;
        for session in sessions {
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
    pub fn user_of(&self, access_token: &str) -> Option<Uuid> {
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
        match redis.get::<_, Option<String>>(&key).await {
            Ok(Some(cached)) if cached == REVOKED => return Err(ended()),
            Ok(Some(cached)) => match serde_json::from_str::<Caller>(&cached) {
                Ok(caller) if caller.user_id == claims.sub => return Ok(caller),
                _ => return Err(ended()),
            },
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(%error, "session cache unavailable; reading PostgreSQL");
            }
        }
        let row = sqlx::query(
            "SELECT u.id, u.email, u.role, u.organization_id, \
                    coalesce(o.allow_global_data_access, false) AS global_access \
             FROM sessions s JOIN users u ON u.id = s.user_id \
             LEFT JOIN organizations o ON o.id = u.organization_id \
             WHERE s.id = $1 AND s.user_id = $2 AND s.revoked_at IS NULL \
               AND s.expires_at > now() AND u.is_active",
        )
        .bind(claims.sid)
        .bind(claims.sub)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Err(ended());
        };
        let role: String = row.try_get("role")?;
        let caller = Caller {
            user_id: row.try_get("id")?,
            session_id: claims.sid,
            email: row.try_get("email")?,
            role: role.parse::<Role>().map_err(ApiError::internal)?,
            organization_id: row.try_get("organization_id")?,
            organization_global_access: row.try_get("global_access")?,
        };
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
