//! One-time e-mail tokens and the outbox of mail to send.
//!
//! Tokens are stored as SHA-256 digests only (callers mint the token and pass
//! its digest), so a database leak gives no usable token. Mail is first a row
//! of `email_outbox`, written in the transaction of what caused it, so it is
//! never lost and a request never waits on a mail server; [`deliver_due`]
//! hands due rows to a [`MailTransport`] and records what happened. `FOR
//! UPDATE SKIP LOCKED` gives each row to one sender when several run, and a
//! failure is retried with exponential back-off, at most [`MAX_ATTEMPTS`] times.
//! A mail that carries a one-time token loses its body when it is recorded
//! sent, so the outbox keeps no usable token of delivered mail.

use std::time::Duration;

use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use super::{DomainError, UserId};

/// How often a message is tried before it is left for an operator.
pub const MAX_ATTEMPTS: i32 = 6;

/// What a delivered mail that carried a token keeps of its body.
pub const REDACTED_BODY: &str =
    "This message carried a one-time token; its text was removed once it was sent.";

/// A message to queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMail {
    pub recipient: String,
    pub subject: String,
    pub body: String,
    /// The body holds a one-time token: replace it once the mail is sent.
    pub carries_token: bool,
}

/// A queued message, due to be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedMail {
    pub id: Uuid,
    pub recipient: String,
    pub subject: String,
    pub body: String,
    /// How often sending it failed before.
    pub attempts: i32,
}

/// Sends one message; an error is recorded on the message, which is retried later.
pub trait MailTransport {
    fn send(&self, mail: &QueuedMail) -> impl Future<Output = Result<(), String>> + Send;
}

/// An e-mail verification token as stored: its digest and how long it is valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerificationToken {
    pub token_sha256: Vec<u8>,
    pub valid_for_hours: i32,
}

/// A password reset token as stored: its digest and how long it is valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetToken {
    pub token_sha256: Vec<u8>,
    pub valid_for: Duration,
}

/// Queues `mail` in the transaction of what caused it.
pub(crate) async fn queue(
    connection: &mut PgConnection,
    mail: &OutgoingMail,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO email_outbox (recipient, subject, body, carries_token) VALUES ($1, $2, $3, $4)",
    )
    .bind(&mail.recipient)
    .bind(&mail.subject)
    .bind(&mail.body)
    .bind(mail.carries_token)
    .execute(connection)
    .await?;
    Ok(())
}

/// Stores a new e-mail verification token of `user`.
pub(crate) async fn create_verification_token(
    connection: &mut PgConnection,
    user: UserId,
    token: &VerificationToken,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO email_tokens (token_sha256, user_id, purpose, expires_at) \
         VALUES ($1, $2, 'verify_email', now() + make_interval(hours => $3))",
    )
    .bind(&token.token_sha256)
    .bind(user)
    .bind(token.valid_for_hours)
    .execute(connection)
    .await?;
    Ok(())
}

/// Uses up an unused, unexpired e-mail verification token; the user it was
/// for, or `None` when there is no such token.
pub(crate) async fn use_verification_token(
    connection: &mut PgConnection,
    token_sha256: &[u8],
) -> Result<Option<UserId>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE email_tokens SET used_at = now() \
         WHERE token_sha256 = $1 AND purpose = 'verify_email' AND used_at IS NULL \
           AND expires_at > now() RETURNING user_id",
    )
    .bind(token_sha256)
    .fetch_optional(connection)
    .await
}

/// Stores a new password reset token of `user`.
pub(crate) async fn create_reset_token(
    connection: &mut PgConnection,
    user: UserId,
    token: &ResetToken,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO email_tokens (token_sha256, user_id, purpose, expires_at) \
         VALUES ($1, $2, 'reset_password', now() + $3)",
    )
    .bind(&token.token_sha256)
    .bind(user)
    .bind(token.valid_for)
    .execute(connection)
    .await?;
    Ok(())
}

/// Uses up an unused, unexpired password reset token, and every other reset
/// token of its user with it (one reset ends them all); the user it was for,
/// or `None` when there is no such token. The user's row is locked first:
/// two resets of one user with different tokens take their turns instead of
/// each holding its token while waiting for the other's (a deadlock).
pub(crate) async fn use_reset_token(
    connection: &mut PgConnection,
    token_sha256: &[u8],
) -> Result<Option<UserId>, sqlx::Error> {
    sqlx::query(
        "SELECT u.id FROM users u JOIN email_tokens t ON t.user_id = u.id \
         WHERE t.token_sha256 = $1 AND t.purpose = 'reset_password' FOR UPDATE OF u",
    )
    .bind(token_sha256)
    .fetch_optional(&mut *connection)
    .await?;
    let user: Option<UserId> = sqlx::query_scalar(
        "UPDATE email_tokens SET used_at = now() \
         WHERE token_sha256 = $1 AND purpose = 'reset_password' AND used_at IS NULL \
           AND expires_at > now() RETURNING user_id",
    )
    .bind(token_sha256)
    .fetch_optional(&mut *connection)
    .await?;
    if let Some(user) = user {
        sqlx::query(
            "UPDATE email_tokens SET used_at = now() \
             WHERE user_id = $1 AND purpose = 'reset_password' AND used_at IS NULL",
        )
        .bind(user)
        .execute(connection)
        .await?;
    }
    Ok(user)
}

/// Sends up to `batch` due messages through `transport` and records each
/// outcome; returns how many went out. The rows stay locked while they are
/// sent, so no other sender takes them meanwhile.
pub async fn deliver_due(
    pool: &PgPool,
    transport: &impl MailTransport,
    batch: i64,
) -> Result<usize, DomainError> {
    let mut tx = pool.begin().await?;
    let rows = sqlx::query(
        "SELECT id, recipient, subject, body, attempts FROM email_outbox \
         WHERE sent_at IS NULL AND attempts < $1 AND next_attempt_at <= now() \
         ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED",
    )
    .bind(MAX_ATTEMPTS)
    .bind(batch)
    .fetch_all(&mut *tx)
    .await?;
    let mut sent = 0;
    for row in rows {
        let mail = QueuedMail {
            id: row.try_get("id")?,
            recipient: row.try_get("recipient")?,
            subject: row.try_get("subject")?,
            body: row.try_get("body")?,
            attempts: row.try_get("attempts")?,
        };
        match transport.send(&mail).await {
            Ok(()) => {
                sqlx::query(
                    "UPDATE email_outbox SET sent_at = now(), attempts = attempts + 1, \
                     last_error = NULL, \
                     body = CASE WHEN carries_token THEN $2 ELSE body END WHERE id = $1",
                )
                .bind(mail.id)
                .bind(REDACTED_BODY)
                .execute(&mut *tx)
                .await?;
                sent += 1;
            }
            Err(error) => {
                // 30 s, 1 min, 2 min, … between attempts.
                let wait = Duration::from_secs(30 << mail.attempts.clamp(0, 10));
                sqlx::query(
                    "UPDATE email_outbox SET attempts = attempts + 1, last_error = $2, \
                     next_attempt_at = now() + $3 WHERE id = $1",
                )
                .bind(mail.id)
                .bind(error)
                .bind(wait)
                .execute(&mut *tx)
                .await?;
            }
        }
    }
    tx.commit().await?;
    Ok(sent)
}
