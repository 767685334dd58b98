//! Outgoing mail through a transactional outbox.
//!
//! Every message is first a row of `email_outbox`, written in the transaction
//! of what caused it (a registration), so mail is never lost and a request
//! never waits on a mail server. Without `SMTP_URL` the rows stay there (tests
//! and operators read verification tokens from them). With it, an
//! [`OutboxSender`] on every API server delivers due rows over SMTP (lettre);
//! `FOR UPDATE SKIP LOCKED` gives each row to one server, a failure is
//! recorded and retried with exponential back-off, at most [`MAX_ATTEMPTS`] times.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

/// How often a message is tried before it is left for an operator.
pub const MAX_ATTEMPTS: i32 = 6;
/// Messages delivered per pass.
const BATCH: i64 = 20;

/// Queues a message to `recipient`.
pub async fn queue(
    connection: &mut PgConnection,
    recipient: &str,
    subject: &str,
    body: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO email_outbox (recipient, subject, body) VALUES ($1, $2, $3)")
        .bind(recipient)
        .bind(subject)
        .bind(body)
        .execute(connection)
        .await?;
    Ok(())
}

/// Delivers queued mail over SMTP.
pub struct OutboxSender {
    pool: PgPool,
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl OutboxSender {
    /// `smtp_url` in lettre's form: `smtp://user:pass@host:port` (add
    /// `?tls=required` for STARTTLS) or `smtps://…` for TLS from the start.
    pub fn new(pool: PgPool, smtp_url: &SecretString, from: &str) -> anyhow::Result<Self> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(smtp_url.expose_secret())
            .context("SMTP_URL is not a usable mail server URL")?
            .timeout(Some(Duration::from_secs(10)))
            .build();
        let from = Mailbox::from_str(from)
            .with_context(|| format!("EMAIL_FROM {from:?} is not a mail address"))?;
        Ok(Self {
            pool,
            transport,
            from,
        })
    }

    /// Sends the messages that are due; returns how many went out.
    pub async fn deliver_due(&self) -> anyhow::Result<usize> {
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(
            "SELECT id, recipient, subject, body, attempts FROM email_outbox \
             WHERE sent_at IS NULL AND attempts < $1 AND next_attempt_at <= now() \
             ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED",
        )
        .bind(MAX_ATTEMPTS)
        .bind(BATCH)
        .fetch_all(&mut *tx)
        .await?;
        let mut sent = 0;
        for row in rows {
            let id: Uuid = row.try_get("id")?;
            let attempts: i32 = row.try_get("attempts")?;
            match self
                .send(
                    row.try_get("recipient")?,
                    row.try_get("subject")?,
                    row.try_get("body")?,
                )
                .await
            {
                Ok(()) => {
                    sqlx::query(
                        "UPDATE email_outbox SET sent_at = now(), attempts = attempts + 1, \
                         last_error = NULL WHERE id = $1",
                    )
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                    sent += 1;
                }
                Err(error) => {
                    tracing::warn!(%id, error = %format!("{error:#}"), "mail not delivered");
                    // 30 s, 1 min, 2 min, … between attempts.
                    let wait = Duration::from_secs(30 << attempts.clamp(0, 10));
                    sqlx::query(
                        "UPDATE email_outbox SET attempts = attempts + 1, last_error = $2, \
                         next_attempt_at = now() + $3 WHERE id = $1",
                    )
                    .bind(id)
                    .bind(format!("{error:#}"))
                    .bind(wait)
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(sent)
    }

    async fn send(&self, recipient: String, subject: String, body: String) -> anyhow::Result<()> {
        let to = Mailbox::from_str(&recipient)
            .with_context(|| format!("{recipient:?} is not a mail address"))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .body(body)
            .context("building the message")?;
        self.transport
            .send(message)
            .await
            .context("the mail server refused the message")?;
        Ok(())
    }

    /// Delivers due mail every `interval` until the task is dropped.
    pub async fn run(self, interval: Duration) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if let Err(error) = self.deliver_due().await {
                tracing::warn!(error = %format!("{error:#}"), "mail delivery pass failed");
            }
        }
    }
}
