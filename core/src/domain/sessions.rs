//! Sign-in sessions and their rotating refresh tokens, as PostgreSQL records them.
//!
//! A session is one sign-in, one refresh-token family. Each refresh uses up
//! the presented token and stores its successor; a used token presented again
//! means someone holds a copy, so the whole session is revoked. Tokens are
//! minted by the caller and stored here only as SHA-256 digests.

use std::time::Duration;

use sqlx::{PgConnection, PgPool, Row};

use super::{Caller, DomainError, OrganizationId, SessionId, UserId, parse_column};

/// Why a session ended, as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeReason {
    Logout,
    PasswordChanged,
    RefreshTokenReused,
    LeftOrganization,
    RemovedFromOrganization,
    Deactivated,
}

impl RevokeReason {
    fn as_str(self) -> &'static str {
        match self {
            Self::Logout => "logout",
            Self::PasswordChanged => "password_changed",
            Self::RefreshTokenReused => "refresh_token_reused",
            Self::LeftOrganization => "left_organization",
            Self::RemovedFromOrganization => "removed_from_organization",
            Self::Deactivated => "deactivated",
        }
    }
}

/// What presenting a refresh token did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresh {
    /// The token was live: it is used up and its successor stored.
    Rotated { session: SessionId, user: UserId },
    /// No such token.
    Unknown,
    /// Its session was revoked or has expired, or its user was deactivated.
    SessionEnded,
    /// The token was used before: its session is revoked now.
    Reused { session: SessionId, user: UserId },
}

async fn insert_refresh_token(
    connection: &mut PgConnection,
    session: SessionId,
    token_sha256: &[u8],
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO refresh_tokens (token_sha256, session_id) VALUES ($1, $2)")
        .bind(token_sha256)
        .bind(session)
        .execute(connection)
        .await?;
    Ok(())
}

/// Starts a session of `user` lasting `lifetime`, with its first refresh token.
pub async fn start(
    pool: &PgPool,
    user: UserId,
    lifetime: Duration,
    refresh_token_sha256: &[u8],
) -> Result<SessionId, DomainError> {
    let mut tx = pool.begin().await?;
    let session: SessionId = sqlx::query_scalar(
        "INSERT INTO sessions (user_id, expires_at) VALUES ($1, now() + $2) RETURNING id",
    )
    .bind(user)
    .bind(lifetime)
    .fetch_one(&mut *tx)
    .await?;
    insert_refresh_token(&mut tx, session, refresh_token_sha256).await?;
    tx.commit().await?;
    Ok(session)
}

/// Exchanges the refresh token of digest `presented_sha256` for the one of
/// `next_sha256`, or revokes the session when the presented token was used before.
pub async fn rotate(
    pool: &PgPool,
    presented_sha256: &[u8],
    next_sha256: &[u8],
) -> Result<Refresh, DomainError> {
    let mut tx = pool.begin().await?;
    let row = sqlx::query(
        "SELECT rt.session_id, rt.used_at IS NOT NULL AS used, s.user_id, \
                s.revoked_at IS NOT NULL AS revoked, s.expires_at <= now() AS expired, \
                u.is_active \
         FROM refresh_tokens rt JOIN sessions s ON s.id = rt.session_id \
         JOIN users u ON u.id = s.user_id \
         WHERE rt.token_sha256 = $1 FOR UPDATE OF rt, s",
    )
    .bind(presented_sha256)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        return Ok(Refresh::Unknown);
    };
    let session: SessionId = row.try_get("session_id")?;
    let user: UserId = row.try_get("user_id")?;
    if row.try_get::<bool, _>("revoked")?
        || row.try_get::<bool, _>("expired")?
        || !row.try_get::<bool, _>("is_active")?
    {
        return Ok(Refresh::SessionEnded);
    }
    if row.try_get::<bool, _>("used")? {
        // A used token presented again: end the session for both holders.
        sqlx::query("UPDATE sessions SET revoked_at = now(), revoked_reason = $2 WHERE id = $1")
            .bind(session)
            .bind(RevokeReason::RefreshTokenReused.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        return Ok(Refresh::Reused { session, user });
    }
    sqlx::query("UPDATE refresh_tokens SET used_at = now() WHERE token_sha256 = $1")
        .bind(presented_sha256)
        .execute(&mut *tx)
        .await?;
    insert_refresh_token(&mut tx, session, next_sha256).await?;
    tx.commit().await?;
    Ok(Refresh::Rotated { session, user })
}

/// Ends one session, if it is not ended already.
pub async fn revoke(
    pool: &PgPool,
    session: SessionId,
    reason: RevokeReason,
) -> Result<(), DomainError> {
    sqlx::query(
        "UPDATE sessions SET revoked_at = now(), revoked_reason = $2 \
         WHERE id = $1 AND revoked_at IS NULL",
    )
    .bind(session)
    .bind(reason.as_str())
    .execute(pool)
    .await?;
    Ok(())
}

/// Ends every live session of the caller but the one they are using; the
/// sessions it ended.
pub async fn revoke_others(
    pool: &PgPool,
    caller: &Caller,
    reason: RevokeReason,
) -> Result<Vec<SessionId>, DomainError> {
    Ok(sqlx::query_scalar(
        "UPDATE sessions SET revoked_at = now(), revoked_reason = $3 \
         WHERE user_id = $1 AND id <> $2 AND revoked_at IS NULL RETURNING id",
    )
    .bind(caller.user_id)
    .bind(caller.session_id)
    .bind(reason.as_str())
    .fetch_all(pool)
    .await?)
}

/// Ends every live session of `user`, within the transaction of the change
/// that calls for it; the sessions it ended.
pub(crate) async fn revoke_all(
    connection: &mut PgConnection,
    user: UserId,
    reason: RevokeReason,
) -> Result<Vec<SessionId>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE sessions SET revoked_at = now(), revoked_reason = $2 \
         WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > now() RETURNING id",
    )
    .bind(user)
    .bind(reason.as_str())
    .fetch_all(connection)
    .await
}

/// The session a refresh token (by its digest) belongs to, used or not, so
/// refreshes can be counted per session before one is attempted.
pub async fn session_of_refresh_token(
    pool: &PgPool,
    token_sha256: &[u8],
) -> Result<Option<SessionId>, DomainError> {
    Ok(
        sqlx::query_scalar("SELECT session_id FROM refresh_tokens WHERE token_sha256 = $1")
            .bind(token_sha256)
            .fetch_optional(pool)
            .await?,
    )
}

/// The live (unrevoked, unexpired) sessions of these users.
pub async fn live_sessions(pool: &PgPool, users: &[UserId]) -> Result<Vec<SessionId>, DomainError> {
    Ok(sqlx::query_scalar(
        "SELECT id FROM sessions WHERE user_id = ANY($1) AND revoked_at IS NULL \
         AND expires_at > now()",
    )
    .bind(users)
    .fetch_all(pool)
    .await?)
}

/// The live sessions of the members of an organisation.
pub async fn live_sessions_in_organization(
    pool: &PgPool,
    organization: OrganizationId,
) -> Result<Vec<SessionId>, DomainError> {
    Ok(sqlx::query_scalar(
        "SELECT s.id FROM sessions s JOIN users u ON u.id = s.user_id \
         WHERE u.organization_id = $1 AND s.revoked_at IS NULL AND s.expires_at > now()",
    )
    .bind(organization)
    .fetch_all(pool)
    .await?)
}

/// The caller of `session`, when it is a live session of `user` and the user
/// is active.
pub async fn caller(
    pool: &PgPool,
    session: SessionId,
    user: UserId,
) -> Result<Option<Caller>, DomainError> {
    let row = sqlx::query(
        "SELECT u.id, u.email, u.role, u.organization_id, \
                coalesce(o.allow_global_data_access, false) AS global_access \
         FROM sessions s JOIN users u ON u.id = s.user_id \
         LEFT JOIN organizations o ON o.id = u.organization_id \
         WHERE s.id = $1 AND s.user_id = $2 AND s.revoked_at IS NULL \
           AND s.expires_at > now() AND u.is_active",
    )
    .bind(session)
    .bind(user)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    Ok(Some(Caller {
        user_id: row.try_get("id")?,
        session_id: session,
        email: row.try_get("email")?,
        role: parse_column(&row, "role")?,
        organization_id: row.try_get("organization_id")?,
        organization_global_access: row.try_get("global_access")?,
    }))
}
