//! `/api/v1/auth` and `/api/v1/users` against real PostgreSQL and Redis:
//! registration, verification, sign-in, refresh rotation and reuse, sign-out,
//! password change, token tampering, profiles, and what the database keeps
//! of each token (its SHA-256; the raw verification token only in the mail
//! outbox).

use std::collections::BTreeSet;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::support::{PASSWORD, TestApp};

/// The test settings' JWT secret (the development default).
const DEV_SECRET: &[u8] = b"accunode-development-secret-change-me";

#[tokio::test]
async fn register_verify_and_sign_in() {
    let app = TestApp::start().await;
    let registered = app
        .post(
            "/api/v1/auth/register",
            None,
            json!({"email": " Ada@Example.com ", "password": PASSWORD, "first_name": "Ada"}),
        )
        .await;
    assert_eq!(registered.status, 202, "{}", registered.body);
    let (stored, role, verified): (String, String, bool) = sqlx::query_as(
        "SELECT password_hash, role, email_verified_at IS NOT NULL FROM users \
         WHERE email = 'ada@example.com'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(stored.starts_with("$argon2id$"), "{stored}");
    assert_eq!((role.as_str(), verified), ("user", false));

    let duplicate = app
        .post(
            "/api/v1/auth/register",
            None,
            json!({"email": "ADA@example.com", "password": PASSWORD}),
        )
        .await;
    // The same answer as a new address: registering does not reveal accounts.
    assert_eq!(duplicate.status, 202, "{}", duplicate.body);
    assert_eq!(duplicate.body, registered.body);

    // Not verified yet: the right password is not enough.
    let early = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": "ada@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(early.status, 403, "{}", early.body);
    assert_eq!(early.body["error"], "email_not_verified");

    let token = app.mailed_token("ada@example.com").await;
    let verified = app
        .post("/api/v1/auth/verify-email", None, json!({"token": token}))
        .await;
    assert_eq!(verified.status, 200, "{}", verified.body);
    let again = app
        .post("/api/v1/auth/verify-email", None, json!({"token": token}))
        .await;
    assert_eq!(again.status, 422);
    assert_eq!(again.fields(), vec!["body.token"]);

    let user = app.login("ada@example.com", PASSWORD).await;
    let profile = app.get("/api/v1/users/profile", &user.token).await;
    assert_eq!(profile.status, 200);
    assert_eq!(profile.body["first_name"], "Ada");
    assert_eq!(profile.body["email_verified"], true);
    assert_eq!(profile.header("cache-control"), Some("private, no-cache"));

    let updated = app
        .put(
            "/api/v1/users/profile",
            &user.token,
            json!({"last_name": "Lovelace"}),
        )
        .await;
    assert_eq!(updated.status, 200, "{}", updated.body);
    assert_eq!(updated.body["first_name"], "Ada");
    assert_eq!(updated.body["last_name"], "Lovelace");
    let organizations = app.get("/api/v1/users/organizations", &user.token).await;
    assert_eq!(organizations.body, json!([]));
}

#[tokio::test]
async fn registration_names_each_invalid_field() {
    let app = TestApp::start().await;
    let answer = app
        .post(
            "/api/v1/auth/register",
            None,
            json!({"email": "not-an-email", "password": "short"}),
        )
        .await;
    assert_eq!(answer.status, 422, "{}", answer.body);
    assert_eq!(answer.body["error"], "validation_failed");
    assert_eq!(answer.fields(), vec!["body.email", "body.password"]);

    let letters_only = app
        .post(
            "/api/v1/auth/register",
            None,
            json!({"email": "a@example.com", "password": "abcdefghij"}),
        )
        .await;
    assert_eq!(letters_only.status, 422);
    assert_eq!(
        letters_only.body["details"][0]["problem"],
        "must contain at least one letter and one digit"
    );

    let missing = app
        .post(
            "/api/v1/auth/register",
            None,
            json!({"email": "a@example.com"}),
        )
        .await;
    assert_eq!(missing.status, 422);
    assert_eq!(missing.fields(), vec!["body.password"]);

    let mistyped = app
        .post(
            "/api/v1/auth/register",
            None,
            json!({"email": 12, "password": PASSWORD}),
        )
        .await;
    assert_eq!(mistyped.status, 422);
    assert_eq!(mistyped.fields(), vec!["body.email"]);

    let not_json = app
        .client
        .post(format!("{}/api/v1/auth/register", app.base))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status().as_u16(), 400);
    let body: serde_json::Value = not_json.json().await.unwrap();
    assert_eq!(body["error"], "bad_request");
}

#[tokio::test]
async fn wrong_passwords_and_unknown_emails_get_the_same_401() {
    let app = TestApp::start().await;
    app.signed_up("bob@example.com").await;
    let wrong = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": "bob@example.com", "password": "wrong-password-1"}),
        )
        .await;
    let unknown = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": "nobody@example.com", "password": "wrong-password-1"}),
        )
        .await;
    assert_eq!(wrong.status, 401);
    assert_eq!(unknown.status, 401);
    assert_eq!(wrong.body, unknown.body);
    assert_eq!(wrong.header("cache-control"), Some("no-store"));
}

#[tokio::test]
async fn refresh_tokens_rotate_and_a_reused_one_ends_the_session() {
    let app = TestApp::start().await;
    let user = app.signed_up("carol@example.com").await;

    let first = app
        .post(
            "/api/v1/auth/refresh-token",
            None,
            json!({"refresh_token": user.refresh_token}),
        )
        .await;
    assert_eq!(first.status, 200, "{}", first.body);
    let rotated = first.body["refresh_token"].as_str().unwrap().to_owned();
    let new_access = first.body["access_token"].as_str().unwrap().to_owned();
    assert_ne!(rotated, user.refresh_token);
    assert_eq!(first.body["token_type"], "bearer");
    assert_eq!(
        app.get("/api/v1/users/profile", &new_access).await.status,
        200
    );

    // The old token again: someone copied it. The whole family ends.
    let replay = app
        .post(
            "/api/v1/auth/refresh-token",
            None,
            json!({"refresh_token": user.refresh_token}),
        )
        .await;
    assert_eq!(replay.status, 401, "{}", replay.body);
    let after = app
        .post(
            "/api/v1/auth/refresh-token",
            None,
            json!({"refresh_token": rotated}),
        )
        .await;
    assert_eq!(after.status, 401, "{}", after.body);
    for token in [&user.token, &new_access] {
        assert_eq!(app.get("/api/v1/users/profile", token).await.status, 401);
    }
    let reason: String = sqlx::query_scalar("SELECT revoked_reason FROM sessions")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(reason, "refresh_token_reused");

    let garbage = app
        .post(
            "/api/v1/auth/refresh-token",
            None,
            json!({"refresh_token": "made-up"}),
        )
        .await;
    assert_eq!(garbage.status, 401);
}

#[tokio::test]
async fn logout_ends_the_session_and_its_tokens() {
    let app = TestApp::start().await;
    let user = app.signed_up("dan@example.com").await;
    let other = app.login("dan@example.com", PASSWORD).await;
    let logout = app
        .call(
            reqwest::Method::POST,
            "/api/v1/auth/logout",
            Some(&user.token),
            None,
        )
        .await;
    assert_eq!(logout.status, 204);
    assert_eq!(
        app.get("/api/v1/users/profile", &user.token).await.status,
        401
    );
    let refresh = app
        .post(
            "/api/v1/auth/refresh-token",
            None,
            json!({"refresh_token": user.refresh_token}),
        )
        .await;
    assert_eq!(refresh.status, 401);
    // Another sign-in of the same user is another session.
    assert_eq!(
        app.get("/api/v1/users/profile", &other.token).await.status,
        200
    );
}

#[tokio::test]
async fn changing_the_password_ends_the_other_sessions() {
    let app = TestApp::start().await;
    let here = app.signed_up("erin@example.com").await;
    let elsewhere = app.login("erin@example.com", PASSWORD).await;
    let wrong = app
        .post(
            "/api/v1/auth/change-password",
            Some(&here.token),
            json!({"current_password": "not-it-123", "new_password": "brand-new-99"}),
        )
        .await;
    assert_eq!(wrong.status, 422);
    assert_eq!(wrong.fields(), vec!["body.current_password"]);
    let weak = app
        .post(
            "/api/v1/auth/change-password",
            Some(&here.token),
            json!({"current_password": PASSWORD, "new_password": "short"}),
        )
        .await;
    assert_eq!(weak.fields(), vec!["body.new_password"]);

    let changed = app
        .post(
            "/api/v1/auth/change-password",
            Some(&here.token),
            json!({"current_password": PASSWORD, "new_password": "brand-new-99"}),
        )
        .await;
    assert_eq!(changed.status, 204, "{}", changed.body);
    assert_eq!(
        app.get("/api/v1/users/profile", &here.token).await.status,
        200
    );
    assert_eq!(
        app.get("/api/v1/users/profile", &elsewhere.token)
            .await
            .status,
        401
    );
    let old = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": "erin@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(old.status, 401);
    app.login("erin@example.com", "brand-new-99").await;
}

fn sign(claims: &serde_json::Value, algorithm: Algorithm, secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &Header::new(algorithm),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap()
}

#[tokio::test]
async fn tampered_expired_and_foreign_tokens_are_401() {
    let app = TestApp::start().await;
    let user = app.signed_up("fay@example.com").await;
    let parts: Vec<&str> = user.token.split('.').collect();
    let mut claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    let now = claims["iat"].as_u64().unwrap();

    // The payload changed, the signature kept.
    let mut other_user = claims.clone();
    other_user["sub"] = json!(uuid::Uuid::new_v4());
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(other_user.to_string()),
        parts[2]
    );
    // Right claims, wrong key; other algorithms; none at all; expired; from the future.
    let wrong_key = sign(
        &claims,
        Algorithm::HS256,
        b"some-other-secret-some-other-secret",
    );
    let hs512 = sign(&claims, Algorithm::HS512, DEV_SECRET);
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        parts[1]
    );
    claims["iat"] = json!(now - 7200);
    claims["exp"] = json!(now - 3600);
    let expired = sign(&claims, Algorithm::HS256, DEV_SECRET);
    claims["iat"] = json!(now + 3600);
    claims["exp"] = json!(now + 7200);
    let future = sign(&claims, Algorithm::HS256, DEV_SECRET);

    for (what, token) in [
        ("tampered", tampered),
        ("wrong key", wrong_key),
        ("HS512", hs512),
        ("alg none", unsigned),
        ("expired", expired.clone()),
        ("issued in the future", future),
        ("not a JWT", "abc".to_owned()),
    ] {
        let answer = app.get("/api/v1/users/profile", &token).await;
        assert_eq!(answer.status, 401, "{what}: {}", answer.body);
        assert_eq!(answer.body["error"], "unauthorized", "{what}");
    }
    let expired_answer = app.get("/api/v1/users/profile", &expired).await;
    assert!(
        expired_answer.body["message"]
            .as_str()
            .unwrap()
            .contains("expired")
    );
    let missing = app
        .call(reqwest::Method::GET, "/api/v1/users/profile", None, None)
        .await;
    assert_eq!(missing.status, 401);
    assert_eq!(missing.body["error"], "unauthorized");
    // The genuine token still works.
    assert_eq!(
        app.get("/api/v1/users/profile", &user.token).await.status,
        200
    );
}

#[tokio::test]
async fn sessions_survive_a_cold_cache_and_revocation_beats_it() {
    let app = TestApp::start().await;
    let user = app.signed_up("gus@example.com").await;
    assert_eq!(
        app.get("/api/v1/users/profile", &user.token).await.status,
        200
    );
    let session: uuid::Uuid = sqlx::query_scalar("SELECT id FROM sessions")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let mut redis = accunode_core::cache::client(&accunode_testkit::redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let key = format!("accunode:session:{session}");
    let cached: Option<String> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(cached.unwrap().contains("gus@example.com"));

    // A cold cache reads PostgreSQL and fills it again.
    let _: () = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(
        app.get("/api/v1/users/profile", &user.token).await.status,
        200
    );

    // The marker alone ends a session: with it written and PostgreSQL still
    // calling the session live, the token is refused.
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("revoked")
        .arg("EX")
        .arg(60)
        .query_async(&mut redis)
        .await
        .unwrap();
    let live_in_postgres: bool =
        sqlx::query_scalar("SELECT revoked_at IS NULL FROM sessions WHERE id = $1")
            .bind(session)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(live_in_postgres);
    assert_eq!(
        app.get("/api/v1/users/profile", &user.token).await.status,
        401
    );
    // Without the marker the same token works again: the 401 was the marker's.
    let _: () = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(
        app.get("/api/v1/users/profile", &user.token).await.status,
        200
    );

    // A logout writes a marker, so even a cache miss after it stays signed out.
    let logout = app
        .call(
            reqwest::Method::POST,
            "/api/v1/auth/logout",
            Some(&user.token),
            None,
        )
        .await;
    assert_eq!(logout.status, 204);
    let marker: Option<String> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(marker.as_deref(), Some("revoked"));
    let _: () = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .unwrap();
    // Marker gone, cache empty: PostgreSQL's revocation alone refuses it.
    assert_eq!(
        app.get("/api/v1/users/profile", &user.token).await.status,
        401
    );
}

/// Every token a client is handed from registration to a refreshed session.
struct HandedOut {
    verification: String,
    access: [String; 2],
    refresh: [String; 2],
}

impl HandedOut {
    /// Each token with a name to report it by.
    fn named(&self) -> Vec<(&'static str, &str)> {
        vec![
            ("verification token", self.verification.as_str()),
            ("access token of the sign-in", self.access[0].as_str()),
            ("access token of the refresh", self.access[1].as_str()),
            ("refresh token of the sign-in", self.refresh[0].as_str()),
            ("refresh token of the refresh", self.refresh[1].as_str()),
        ]
    }
}

/// Registers, verifies and signs in `email`, then refreshes once.
async fn register_sign_in_and_refresh(app: &TestApp, email: &str) -> HandedOut {
    let user = app.signed_up(email).await;
    let verification = app.mailed_token(email).await;
    let refreshed = app
        .post(
            "/api/v1/auth/refresh-token",
            None,
            json!({"refresh_token": user.refresh_token}),
        )
        .await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.body);
    let issued = |field: &str| refreshed.body[field].as_str().unwrap().to_owned();
    HandedOut {
        verification,
        access: [user.token, issued("access_token")],
        refresh: [user.refresh_token, issued("refresh_token")],
    }
}

#[tokio::test]
async fn stored_digests_are_the_sha256_of_the_tokens_handed_out() {
    let app = TestApp::start().await;
    let tokens = register_sign_in_and_refresh(&app, "hal@example.com").await;
    let sha256 = |token: &str| Sha256::digest(token.as_bytes()).to_vec();

    let mut stored_refresh: Vec<Vec<u8>> =
        sqlx::query_scalar("SELECT token_sha256 FROM refresh_tokens")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    stored_refresh.sort();
    let mut expected_refresh: Vec<Vec<u8>> = tokens.refresh.iter().map(|t| sha256(t)).collect();
    expected_refresh.sort();
    assert_eq!(stored_refresh, expected_refresh);

    let stored_verification: Vec<Vec<u8>> =
        sqlx::query_scalar("SELECT token_sha256 FROM email_tokens WHERE purpose = 'verify_email'")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(stored_verification, vec![sha256(&tokens.verification)]);
}

/// How many leading or trailing characters of a token count as leaking it:
/// a stored prefix (a truncated "digest", say) gives most of its bits away.
const LEAKED_PIECE: usize = 24;

#[tokio::test]
async fn no_token_is_stored_in_the_clear() {
    let app = TestApp::start().await;
    let tokens = register_sign_in_and_refresh(&app, "ivy@example.com").await;
    // Each token's first and last characters: a stored token holds both, a
    // truncated one at least one of them.
    let pieces: Vec<(&str, &str)> = tokens
        .named()
        .into_iter()
        .flat_map(|(name, token)| {
            [
                (name, &token[..LEAKED_PIECE]),
                (name, &token[token.len() - LEAKED_PIECE..]),
            ]
        })
        .collect();
    let texts: Vec<&str> = pieces.iter().map(|(_, piece)| *piece).collect();

    let columns: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text, data_type::text \
         FROM information_schema.columns WHERE table_schema = 'public'",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert!(
        columns
            .iter()
            .any(|(table, _, _)| table == "refresh_tokens"),
        "the scan sees the schema: {columns:?}"
    );
    let mut found = BTreeSet::new();
    for (table, column, data_type) in &columns {
        // bytea is searched for the token's bytes, everything else as text.
        let contains = if data_type == "bytea" {
            format!(r#"position(convert_to(piece, 'UTF8') IN t."{column}") > 0"#)
        } else {
            format!(r#"strpos(t."{column}"::text, piece) > 0"#)
        };
        let matched: Vec<String> = sqlx::query_scalar(&format!(
            r#"SELECT DISTINCT piece FROM "{table}" t, unnest($1::text[]) AS piece WHERE {contains}"#
        ))
        .bind(&texts)
        .fetch_all(&app.pool)
        .await
        .unwrap_or_else(|error| panic!("scanning {table}.{column}: {error}"));
        for (name, piece) in &pieces {
            if matched.iter().any(|m| m == piece) {
                found.insert((format!("{table}.{column}"), *name));
            }
        }
    }
    // The outbox keeps the verification mail, token and all, until it is
    // delivered; nothing else may hold any token.
    assert_eq!(
        found,
        BTreeSet::from([("email_outbox.body".to_owned(), "verification token")])
    );
}
