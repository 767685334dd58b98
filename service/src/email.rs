//! Outgoing mail. Every message is written to the `email_outbox` table first,
//! in the caller's transaction, so mail is never lost when delivery fails; it
//! is where tests and operators read verification tokens.

use sqlx::PgConnection;

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
