//! The account life cycle as an attacker would probe it: registration that
//! answers alike whether or not an address has an account (and cannot squat
//! one for ever), password reset by a one-time mailed token that ends every
//! session, mail that keeps no token once sent, sign-in throttled per address
//! from any client address, refresh throttled per session, and a bounded
//! password hashing queue.

use std::time::{Duration, Instant};

use accunode_testkit::{RedisServer, TestDatabase};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::support::{Answer, PASSWORD, TestApp, smtp_server};

const NEW_PASSWORD: &str = "battery-staple-77";

/// The subjects of every mail to `email`, oldest first.
async fn subjects(app: &TestApp, email: &str) -> Vec<String> {
    sqlx::query_scalar("SELECT subject FROM email_outbox WHERE recipient = $1 ORDER BY created_at")
        .bind(email)
        .fetch_all(&app.pool)
        .await
        .unwrap()
}

/// The token after `prefix` in the newest mail to `email` that has one.
async fn token_in_outbox(app: &TestApp, email: &str, prefix: &str) -> Option<String> {
    let bodies: Vec<String> = sqlx::query_scalar(
        "SELECT body FROM email_outbox WHERE recipient = $1 ORDER BY created_at DESC",
    )
    .bind(email)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    bodies.iter().find_map(|body| {
        body.lines()
            .find_map(|line| line.strip_prefix(prefix))
            .map(|token| token.trim().to_owned())
    })
}

/// The reset token mailed to `email` (forgot-password mails after answering).
async fn mailed_reset_token(app: &TestApp, email: &str) -> String {
    accunode_testkit::wait_until(Duration::from_secs(10), "the reset mail", || async {
        token_in_outbox(app, email, "reset token: ").await.is_some()
    })
    .await;
    token_in_outbox(app, email, "reset token: ").await.unwrap()
}

async fn register(app: &TestApp, email: &str, password: &str) -> Answer {
    app.post(
        "/api/v1/auth/register",
        None,
        json!({"email": email, "password": password}),
    )
    .await
}

async fn login_status(app: &TestApp, email: &str, password: &str) -> u16 {
    app.post(
        "/api/v1/auth/login",
        None,
        json!({"email": email, "password": password}),
    )
    .await
    .status
}

#[tokio::test]
async fn registering_a_taken_address_answers_like_a_new_one_and_mails_its_owner() {
    let app = TestApp::start().await;
    let fresh = register(&app, "new@example.com", PASSWORD).await;
    assert_eq!(fresh.status, 202, "{}", fresh.body);
    app.signed_up("owner@example.com").await;

    let taken = register(&app, " Owner@Example.com ", "other-password-9").await;
    assert_eq!(taken.status, fresh.status);
    assert_eq!(taken.body, fresh.body);
    assert_eq!(
        subjects(&app, "owner@example.com").await,
        [
            "Verify your AccuNode email address",
            "Someone tried to register your AccuNode address"
        ]
    );
    // Nothing changed: the owner's password still works, the other does not.
    assert_eq!(login_status(&app, "owner@example.com", PASSWORD).await, 200);
    assert_eq!(
        login_status(&app, "owner@example.com", "other-password-9").await,
        401
    );
}

#[tokio::test]
async fn an_expired_unverified_registration_can_be_replaced_but_a_pending_one_cannot() {
    let app = TestApp::start().await;
    let squatter = "squatter-password-1";
    assert_eq!(
        register(&app, "mine@example.com", squatter).await.status,
        202
    );
    let first_token = token_in_outbox(&app, "mine@example.com", "verification token: ")
        .await
        .unwrap();

    // Pending: the registration is kept and the address is told so.
    let early = register(&app, "mine@example.com", PASSWORD).await;
    assert_eq!(early.status, 202);
    assert_eq!(
        subjects(&app, "mine@example.com").await.last().unwrap(),
        "Your AccuNode registration is pending"
    );
    assert_eq!(
        token_in_outbox(&app, "mine@example.com", "verification token: ").await,
        Some(first_token.clone())
    );

    // Expired: the next registration takes the address over.
    sqlx::query("UPDATE email_tokens SET expires_at = now() - interval '1 second'")
        .execute(&app.pool)
        .await
        .unwrap();
    let late = register(&app, "mine@example.com", PASSWORD).await;
    assert_eq!(late.status, 202);
    assert_eq!(late.body, early.body);
    let second_token = token_in_outbox(&app, "mine@example.com", "verification token: ")
        .await
        .unwrap();
    assert_ne!(second_token, first_token);
    let stale = app
        .post(
            "/api/v1/auth/verify-email",
            None,
            json!({"token": first_token}),
        )
        .await;
    assert_eq!(stale.status, 422);
    let verified = app
        .post(
            "/api/v1/auth/verify-email",
            None,
            json!({"token": second_token}),
        )
        .await;
    assert_eq!(verified.status, 200, "{}", verified.body);
    assert_eq!(login_status(&app, "mine@example.com", PASSWORD).await, 200);
    assert_eq!(login_status(&app, "mine@example.com", squatter).await, 401);
    let accounts: i64 =
        sqlx::query_scalar("SELECT count(*) FROM users WHERE email = 'mine@example.com'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(accounts, 1);
}

#[tokio::test]
async fn forgot_password_answers_202_alike_for_unknown_addresses() {
    let app = TestApp::start().await;
    app.signed_up("known@example.com").await;
    let unknown = app
        .post(
            "/api/v1/auth/forgot-password",
            None,
            json!({"email": "nobody@example.com"}),
        )
        .await;
    let known = app
        .post(
            "/api/v1/auth/forgot-password",
            None,
            json!({"email": " KNOWN@example.com"}),
        )
        .await;
    assert_eq!(unknown.status, 202, "{}", unknown.body);
    assert_eq!(known.status, 202, "{}", known.body);
    assert_eq!(unknown.body, known.body);
    mailed_reset_token(&app, "known@example.com").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(subjects(&app, "nobody@example.com").await.is_empty());

    let malformed = app
        .post(
            "/api/v1/auth/forgot-password",
            None,
            json!({"email": "not-an-address"}),
        )
        .await;
    assert_eq!(malformed.status, 422);
    assert_eq!(malformed.fields(), ["body.email"]);
}

#[tokio::test]
async fn a_reset_works_once_expires_and_ends_every_session() {
    let app = TestApp::start().await;
    let first = app.signed_up("reset@example.com").await;
    let second = app.login("reset@example.com", PASSWORD).await;
    for session in [&first, &second] {
        // Caches each session's caller, which the reset must drop.
        assert_eq!(
            app.get("/api/v1/users/profile", &session.token)
                .await
                .status,
            200
        );
    }
    app.post(
        "/api/v1/auth/forgot-password",
        None,
        json!({"email": "reset@example.com"}),
    )
    .await;
    let token = mailed_reset_token(&app, "reset@example.com").await;
    // 256 random bits, stored only as their SHA-256.
    assert_eq!(URL_SAFE_NO_PAD.decode(&token).unwrap().len(), 32);
    let stored: Vec<Vec<u8>> = sqlx::query_scalar(
        "SELECT token_sha256 FROM email_tokens WHERE purpose = 'reset_password'",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(stored, [Sha256::digest(token.as_bytes()).to_vec()]);

    let weak = app
        .post(
            "/api/v1/auth/reset-password",
            None,
            json!({"token": token, "new_password": "lettersonly"}),
        )
        .await;
    assert_eq!(weak.status, 422);
    assert_eq!(weak.fields(), ["body.new_password"]);

    let reset = app
        .post(
            "/api/v1/auth/reset-password",
            None,
            json!({"token": token, "new_password": NEW_PASSWORD}),
        )
        .await;
    assert_eq!(reset.status, 204, "{}", reset.body);
    for session in [&first, &second] {
        assert_eq!(
            app.get("/api/v1/users/profile", &session.token)
                .await
                .status,
            401
        );
        let refreshed = app
            .post(
                "/api/v1/auth/refresh-token",
                None,
                json!({"refresh_token": session.refresh_token}),
            )
            .await;
        assert_eq!(refreshed.status, 401);
    }
    assert_eq!(login_status(&app, "reset@example.com", PASSWORD).await, 401);
    assert_eq!(
        login_status(&app, "reset@example.com", NEW_PASSWORD).await,
        200
    );

    let again = app
        .post(
            "/api/v1/auth/reset-password",
            None,
            json!({"token": token, "new_password": "third-password-3"}),
        )
        .await;
    assert_eq!(again.status, 422);
    assert_eq!(again.fields(), ["body.token"]);

    app.post(
        "/api/v1/auth/forgot-password",
        None,
        json!({"email": "reset@example.com"}),
    )
    .await;
    accunode_testkit::wait_until(Duration::from_secs(10), "a second reset token", || async {
        token_in_outbox(&app, "reset@example.com", "reset token: ").await != Some(token.clone())
    })
    .await;
    let late_token = mailed_reset_token(&app, "reset@example.com").await;
    sqlx::query(
        "UPDATE email_tokens SET expires_at = now() - interval '1 second' \
         WHERE purpose = 'reset_password' AND used_at IS NULL",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let expired = app
        .post(
            "/api/v1/auth/reset-password",
            None,
            json!({"token": late_token, "new_password": "third-password-3"}),
        )
        .await;
    assert_eq!(expired.status, 422);
    assert_eq!(
        login_status(&app, "reset@example.com", NEW_PASSWORD).await,
        200
    );
}

/// Reads lines from aiosmtpd's output until one starts with `prefix`.
async fn next_token(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    prefix: &str,
) -> String {
    tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(token) = line.strip_prefix(prefix) {
                return token.trim().to_owned();
            }
        }
        panic!("aiosmtpd exited before the mail arrived");
    })
    .await
    .expect("the mail within 20 s")
}

/// Waits until every mail to `email` is sent; their bodies then.
async fn sent_bodies(app: &TestApp, email: &str, count: i64) -> Vec<(String, String)> {
    accunode_testkit::wait_until(Duration::from_secs(20), "the mail sent", || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM email_outbox WHERE recipient = $1 AND sent_at IS NOT NULL",
        )
        .bind(email)
        .fetch_one(&app.pool)
        .await
        .unwrap()
            == count
    })
    .await;
    sqlx::query_as(
        "SELECT subject, body FROM email_outbox WHERE recipient = $1 ORDER BY created_at",
    )
    .bind(email)
    .fetch_all(&app.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn sent_mail_keeps_no_token_in_the_outbox() {
    let (mut server, smtp_url) = smtp_server().await;
    let app = TestApp::start_with(&[("SMTP_URL", smtp_url.as_str())]).await;
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let email = "sealed@example.com";

    assert_eq!(register(&app, email, PASSWORD).await.status, 202);
    let verification = next_token(&mut lines, "verification token: ").await;
    let bodies = sent_bodies(&app, email, 1).await;
    assert!(!bodies[0].1.contains(&verification), "{}", bodies[0].1);
    let verified = app
        .post(
            "/api/v1/auth/verify-email",
            None,
            json!({"token": verification}),
        )
        .await;
    assert_eq!(verified.status, 200, "{}", verified.body);

    app.post(
        "/api/v1/auth/forgot-password",
        None,
        json!({"email": email}),
    )
    .await;
    let reset_token = next_token(&mut lines, "reset token: ").await;
    // A mail without a token keeps its text.
    assert_eq!(register(&app, email, PASSWORD).await.status, 202);
    let bodies = sent_bodies(&app, email, 3).await;
    for (subject, body) in &bodies {
        assert!(
            !body.contains(&verification) && !body.contains(&reset_token),
            "{body}"
        );
        if subject.starts_with("Someone tried") {
            assert!(body.contains("already has an account"), "{body}");
        } else {
            assert!(body.contains("removed once it was sent"), "{body}");
        }
    }
    let reset = app
        .post(
            "/api/v1/auth/reset-password",
            None,
            json!({"token": reset_token, "new_password": NEW_PASSWORD}),
        )
        .await;
    assert_eq!(reset.status, 204, "{}", reset.body);
}

/// An API with rate limits on, its own Redis (budgets outlive a test run),
/// client addresses taken from `X-Forwarded-For`, and `extra` settings.
async fn limited_app(extra: &[(&str, &str)]) -> (TestApp, RedisServer) {
    let redis = RedisServer::start().await;
    let mut settings = vec![
        ("ENABLE_RATE_LIMITING", "true"),
        ("TRUST_FORWARDED_FOR", "true"),
        ("AUTH_RATE_LIMIT_PER_MINUTE", "1000"),
    ];
    settings.extend_from_slice(extra);
    let app = TestApp::start_on(TestDatabase::create().await, &redis.url(), &settings).await;
    (app, redis)
}

async fn login_from(app: &TestApp, email: &str, password: &str, client: &str) -> Answer {
    app.call_with(
        reqwest::Method::POST,
        "/api/v1/auth/login",
        None,
        Some(json!({"email": email, "password": password})),
        &[("x-forwarded-for", client)],
    )
    .await
}

#[tokio::test]
async fn failed_sign_ins_are_limited_per_address_and_client_and_never_lock_the_owner_out() {
    let (app, _redis) = limited_app(&[("LOGIN_RATE_LIMIT_PER_EMAIL", "2")]).await;
    app.signed_up("victim@example.com").await;
    // Guessing from one client address: two failures, then that client is refused.
    for n in 1..=2 {
        let guess = login_from(&app, "victim@example.com", "guess-0000", "203.0.113.1").await;
        assert_eq!(guess.status, 401, "attempt {n}: {}", guess.body);
    }
    let limited = login_from(&app, " Victim@EXAMPLE.com", PASSWORD, "203.0.113.1").await;
    assert_eq!(limited.status, 429, "{}", limited.body);
    let retry_after: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=900).contains(&retry_after), "{retry_after}");
    assert_eq!(limited.body["error"], "rate_limited");
    // The owner, elsewhere, signs in: nobody's guesses lock them out.
    let owner = login_from(&app, "victim@example.com", PASSWORD, "198.51.100.5").await;
    assert_eq!(owner.status, 200, "{}", owner.body);
    // A successful sign-in is not counted.
    for _ in 0..3 {
        let again = login_from(&app, "victim@example.com", PASSWORD, "198.51.100.5").await;
        assert_eq!(again.status, 200, "{}", again.body);
    }

    // Guessing from many client addresses stops at ten times the limit.
    for n in 2..=19 {
        let guess = login_from(
            &app,
            "victim@example.com",
            "guess-0000",
            &format!("203.0.113.{n}"),
        )
        .await;
        assert_eq!(guess.status, 401, "attempt from client {n}: {}", guess.body);
    }
    let everywhere = login_from(&app, "victim@example.com", "guess-0000", "192.0.2.200").await;
    assert_eq!(everywhere.status, 429, "{}", everywhere.body);

    // An address without an account is counted and answered the same way.
    let mut unknown: Option<Answer> = None;
    for _ in 1..=3 {
        unknown = Some(login_from(&app, "ghost@example.com", "guess-0000", "203.0.113.1").await);
    }
    let unknown = unknown.unwrap();
    assert_eq!(unknown.status, 429);
    // The same answer but for the seconds left, which depend on the clock.
    let without_seconds = |body: &Value| {
        let message = body["message"].as_str().unwrap();
        json!([body["error"], message[..message.find("Retry in").unwrap()]])
    };
    assert_eq!(
        without_seconds(&unknown.body),
        without_seconds(&limited.body)
    );
}

#[tokio::test]
async fn refreshes_are_limited_per_session() {
    let (app, _redis) = limited_app(&[("REFRESH_RATE_LIMIT_PER_SESSION", "2")]).await;
    let user = app.signed_up("refresher@example.com").await;
    let mut refresh_token = user.refresh_token.clone();
    for n in 1..=2 {
        let refreshed = app
            .post(
                "/api/v1/auth/refresh-token",
                None,
                json!({"refresh_token": refresh_token}),
            )
            .await;
        assert_eq!(refreshed.status, 200, "refresh {n}: {}", refreshed.body);
        refresh_token = refreshed.body["refresh_token"].as_str().unwrap().to_owned();
    }
    let limited = app
        .post(
            "/api/v1/auth/refresh-token",
            None,
            json!({"refresh_token": refresh_token}),
        )
        .await;
    assert_eq!(limited.status, 429, "{}", limited.body);
    assert!(limited.header("retry-after").is_some());
    assert_eq!(limited.body["error"], "rate_limited");

    // Another session of the same user has its own budget.
    let other = app.login("refresher@example.com", PASSWORD).await;
    let refreshed = app
        .post(
            "/api/v1/auth/refresh-token",
            None,
            json!({"refresh_token": other.refresh_token}),
        )
        .await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.body);
}

#[tokio::test]
async fn a_sign_in_without_a_free_hashing_slot_answers_503_with_retry_after() {
    let app = TestApp::start_with(&[("PASSWORD_HASHING_SLOTS", "1")]).await;
    app.signed_up("busy@example.com").await;
    let held = app.passwords.slot().await.unwrap();
    let started = Instant::now();
    let busy = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": "busy@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(busy.status, 503, "{}", busy.body);
    assert_eq!(busy.header("retry-after"), Some("1"));
    assert_eq!(busy.body["error"], "busy");
    assert!(started.elapsed() >= Duration::from_secs(1));
    let registering = register(&app, "later@example.com", PASSWORD).await;
    assert_eq!(registering.status, 503);
    assert_eq!(registering.header("retry-after"), Some("1"));
    drop(held);
    assert_eq!(login_status(&app, "busy@example.com", PASSWORD).await, 200);
}

#[tokio::test]
async fn an_address_gets_at_most_three_reset_mails_per_window() {
    let (app, _redis) = limited_app(&[]).await;
    app.signed_up("flooded@example.com").await;
    for n in 1..=5 {
        let asked = app
            .post(
                "/api/v1/auth/forgot-password",
                None,
                json!({"email": "flooded@example.com"}),
            )
            .await;
        assert_eq!(asked.status, 202, "request {n}: {}", asked.body);
    }
    let resets = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM email_outbox WHERE recipient = 'flooded@example.com' \
             AND subject = 'Reset your AccuNode password'",
        )
        .fetch_one(&app.pool)
        .await
        .unwrap()
    };
    accunode_testkit::wait_until(Duration::from_secs(10), "three reset mails", || async {
        resets().await == 3
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(resets().await, 3);
}

#[tokio::test]
async fn registering_a_taken_address_again_and_again_mails_its_owner_a_bounded_number_of_times() {
    let (app, _redis) = limited_app(&[]).await;
    // The account's own registration is the first of three in the window.
    app.signed_up("popular@example.com").await;
    for n in 1..=5 {
        let again = app
            .post(
                "/api/v1/auth/register",
                None,
                json!({"email": "popular@example.com", "password": "another-pass-1"}),
            )
            .await;
        assert_eq!(again.status, 202, "registration {n}: {}", again.body);
    }
    let notices: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM email_outbox WHERE recipient = 'popular@example.com' \
         AND subject = 'Someone tried to register your AccuNode address'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(notices, 2);
}
