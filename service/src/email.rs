//! Outgoing mail: what the API writes, and its delivery over SMTP (lettre).
//!
//! Every message is first a row of the outbox (see
//! `accunode_core::domain::email`), written in the transaction of what caused
//! it, so mail is never lost and a request never waits on a mail server.
//! Without `SMTP_URL` the rows stay there (tests and operators read
//! verification and reset tokens from them); once a row is sent, a mail that
//! carried a token keeps no readable body. With it, an [`OutboxSender`] on every API
//! server delivers due rows; the domain gives each row to one server and
//! retries failures with back-off.

use std::str::FromStr;
use std::time::Duration;

use accunode_core::domain::email::{self, MailTransport, OutgoingMail, QueuedMail};
use anyhow::Context;
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;

/// Messages delivered per pass.
const BATCH: i64 = 20;

/// The mail that carries a new account's verification token.
pub fn verification_mail(recipient: &str, token: &str, valid_for_hours: i32) -> OutgoingMail {
    OutgoingMail {
        recipient: recipient.to_owned(),
        subject: "Verify your AccuNode email address".into(),
        body: format!(
            "Welcome to AccuNode.\n\nVerify your address with this token (valid {valid_for_hours} hours):\n\n\
             verification token: {token}\n\nPOST /api/v1/auth/verify-email {{\"token\": \"{token}\"}}\n"
        ),
        carries_token: true,
    }
}

/// The mail to the owner of a verified account when someone registers their
/// address again (the registration itself answers as if it were new).
pub fn already_registered_mail(recipient: &str) -> OutgoingMail {
    OutgoingMail {
        recipient: recipient.to_owned(),
        subject: "Someone tried to register your AccuNode address".into(),
        body: "Someone tried to register a new AccuNode account with your email address, \
               which already has an account. Nothing was changed.\n\n\
               If it was you, sign in (POST /api/v1/auth/login), or reset your password if you \
               forgot it (POST /api/v1/auth/forgot-password).\n\
               If it was not you, you can ignore this mail.\n"
            .into(),
        carries_token: false,
    }
}

/// The mail to an address whose unverified registration is still pending
/// when someone registers it again.
pub fn registration_pending_mail(recipient: &str) -> OutgoingMail {
    OutgoingMail {
        recipient: recipient.to_owned(),
        subject: "Your AccuNode registration is pending".into(),
        body: "Someone tried to register an AccuNode account with your email address, \
               which has a registration waiting for verification. Nothing was changed.\n\n\
               If you started that registration, verify it with the token of its mail.\n\
               If you did not, or lost its password, reset the password \
               (POST /api/v1/auth/forgot-password): the mailed token sets a password of yours \
               and ends every session of the account.\n"
            .into(),
        carries_token: false,
    }
}

/// The mail that carries a password reset token.
pub fn password_reset_mail(recipient: &str, token: &str, valid_for_minutes: u64) -> OutgoingMail {
    OutgoingMail {
        recipient: recipient.to_owned(),
        subject: "Reset your AccuNode password".into(),
        body: format!(
            "Someone asked to reset the password of your AccuNode account. If it was not you, \
             ignore this mail; your password stays as it is.\n\n\
             Set a new password with this token (valid {valid_for_minutes} minutes, once):\n\n\
             reset token: {token}\n\n\
             POST /api/v1/auth/reset-password {{\"token\": \"{token}\", \"new_password\": \"…\"}}\n\n\
             This signs out every session of the account.\n"
        ),
        carries_token: true,
    }
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
        Ok(email::deliver_due(&self.pool, self, BATCH).await?)
    }

    async fn send_now(&self, mail: &QueuedMail) -> anyhow::Result<()> {
        let to = Mailbox::from_str(&mail.recipient)
            .with_context(|| format!("{:?} is not a mail address", mail.recipient))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject.clone())
            .body(mail.body.clone())
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

impl MailTransport for OutboxSender {
    async fn send(&self, mail: &QueuedMail) -> Result<(), String> {
        self.send_now(mail).await.map_err(|error| {
            let error = format!("{error:#}");
            tracing::warn!(id = %mail.id, %error, "mail not delivered");
            error
        })
    }
}
