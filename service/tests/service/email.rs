//! Verification mail delivered over SMTP to a real mail server (aiosmtpd, a
//! Python SMTP server that `scripts/test` installs beside the client
//! generator): the outbox row is marked sent and the mailed token verifies.

use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::support::{PASSWORD, TestApp, smtp_server};

#[tokio::test]
async fn verification_mail_goes_out_over_smtp() {
    let (mut server, smtp_url) = smtp_server().await;
    let app = TestApp::start_with(&[
        ("SMTP_URL", smtp_url.as_str()),
        ("EMAIL_FROM", "AccuNode <no-reply@example.com>"),
    ])
    .await;
    let registered = app
        .post(
            "/api/v1/auth/register",
            None,
            json!({"email": "mail@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(registered.status, 202);

    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let token = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(token) = line.strip_prefix("verification token: ") {
                return token.trim().to_owned();
            }
        }
        panic!("aiosmtpd exited before the mail arrived");
    })
    .await
    .expect("the verification mail within 20 s");
    // The row is marked once the server accepted the message.
    accunode_testkit::wait_until(
        Duration::from_secs(10),
        "the outbox row marked sent",
        || async {
            sqlx::query_scalar::<_, bool>(
            "SELECT sent_at IS NOT NULL AND attempts = 1 FROM email_outbox WHERE recipient = $1",
        )
        .bind("mail@example.com")
        .fetch_one(&app.pool)
        .await
        .unwrap()
        },
    )
    .await;
    let verified = app
        .post("/api/v1/auth/verify-email", None, json!({"token": token}))
        .await;
    assert_eq!(verified.status, 200, "{}", verified.body);
    app.login("mail@example.com", PASSWORD).await;
}

#[tokio::test]
async fn undeliverable_mail_is_kept_and_retried_later() {
    // Nothing listens on this port: delivery fails, the row records why.
    let port = accunode_testkit::free_port();
    let smtp_url = format!("smtp://127.0.0.1:{port}");
    let app = TestApp::start_with(&[("SMTP_URL", smtp_url.as_str())]).await;
    app.post(
        "/api/v1/auth/register",
        None,
        json!({"email": "later@example.com", "password": PASSWORD}),
    )
    .await;
    accunode_testkit::wait_until(Duration::from_secs(20), "a failed attempt", || async {
        sqlx::query_scalar::<_, bool>(
            "SELECT attempts = 1 AND last_error IS NOT NULL AND sent_at IS NULL \
                    AND next_attempt_at > now() FROM email_outbox",
        )
        .fetch_one(&app.pool)
        .await
        .unwrap()
    })
    .await;
}
