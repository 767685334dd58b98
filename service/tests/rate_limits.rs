//! Rate limits shared through Redis by two `accunode-api` processes: per user
//! for the API, per client address for `/auth`, with the headers clients need.

use std::path::Path;
use std::time::Duration;

use accunode_testkit::{RedisServer, SpawnedBinary, TestDatabase, test_env};
use serde_json::json;

const API: &str = env!("CARGO_BIN_EXE_accunode-api");

/// Waits until at least `needed` seconds remain in the current minute, so a
/// test's requests all fall into one fixed window.
async fn start_of_a_window(needed: u64) {
    let into_minute = accunode_service::auth::tokens::unix_now() % 60;
    if 60 - into_minute < needed {
        tokio::time::sleep(Duration::from_secs(60 - into_minute)).await;
    }
}

async fn spawn(env: &[(String, String)], workdir: &Path) -> (SpawnedBinary, String) {
    let mut api = SpawnedBinary::spawn(Path::new(API), &[], env, workdir);
    let listening = api
        .wait_for_log("API listening", Duration::from_secs(30))
        .await;
    let base = format!("http://{}", listening["address"].as_str().unwrap());
    (api, base)
}

async fn sign_up(client: &reqwest::Client, base: &str, pool: &sqlx::PgPool, email: &str) -> String {
    let password = "limits-are-fine-1";
    let registered = client
        .post(format!("{base}/api/v1/auth/register"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status().as_u16(), 201);
    sqlx::query("UPDATE users SET email_verified_at = now() WHERE email = $1")
        .bind(email)
        .execute(pool)
        .await
        .unwrap();
    let login: serde_json::Value = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    login["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn two_api_processes_share_one_limit_per_user() {
    let redis = RedisServer::start().await;
    let database = TestDatabase::create().await;
    let mut env = test_env(&database.url, &redis.url());
    env.extend(
        [
            ("ENABLE_RATE_LIMITING", "true"),
            ("RATE_LIMIT_PER_MINUTE", "5"),
            ("AUTH_RATE_LIMIT_PER_MINUTE", "50"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    let workdir = tempfile::tempdir().unwrap();
    let (_first, one) = spawn(&env, workdir.path()).await;
    let (_second, two) = spawn(&env, workdir.path()).await;
    let pool = sqlx::PgPool::connect(&database.url).await.unwrap();
    let client = reqwest::Client::new();
    let alice = sign_up(&client, &one, &pool, "alice@example.com").await;
    let bob = sign_up(&client, &two, &pool, "bob@example.com").await;

    start_of_a_window(20).await;
    for (n, base) in [&one, &two, &one, &two, &one].into_iter().enumerate() {
        let answer = client
            .get(format!("{base}/api/v1/companies"))
            .bearer_auth(&alice)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), 200, "request {n}");
        assert_eq!(answer.headers()["x-ratelimit-limit"], "5");
        assert_eq!(
            answer.headers()["x-ratelimit-remaining"],
            (4 - n).to_string().as_str()
        );
    }
    let limited = client
        .get(format!("{two}/api/v1/companies"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(limited.status().as_u16(), 429);
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(limited.headers()["x-ratelimit-remaining"], "0");
    let body: serde_json::Value = limited.json().await.unwrap();
    assert_eq!(body["error"], "rate_limited");

    // Bob has a budget of his own; health checks are never limited.
    let bobs = client
        .get(format!("{one}/api/v1/companies"))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_eq!(bobs.status().as_u16(), 200);
    for _ in 0..10 {
        let health = client.get(format!("{one}/health")).send().await.unwrap();
        assert_eq!(health.status().as_u16(), 200);
    }
}

#[tokio::test]
async fn auth_routes_are_limited_per_client_address() {
    let redis = RedisServer::start().await;
    let database = TestDatabase::create().await;
    let mut env = test_env(&database.url, &redis.url());
    env.extend(
        [
            ("ENABLE_RATE_LIMITING", "true"),
            ("AUTH_RATE_LIMIT_PER_MINUTE", "3"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    let workdir = tempfile::tempdir().unwrap();
    let (_api, base) = spawn(&env, workdir.path()).await;
    let client = reqwest::Client::new();
    start_of_a_window(20).await;
    let attempt = || {
        client
            .post(format!("{base}/api/v1/auth/login"))
            .json(&json!({"email": "x@example.com", "password": "guess-0000"}))
            .send()
    };
    for _ in 0..3 {
        assert_eq!(attempt().await.unwrap().status().as_u16(), 401);
    }
    let limited = attempt().await.unwrap();
    assert_eq!(limited.status().as_u16(), 429);
    assert!(limited.headers().contains_key("retry-after"));
}
