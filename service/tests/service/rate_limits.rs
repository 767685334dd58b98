//! Rate limits shared through Redis by two `accunode-api` processes: per user
//! for the API, per client address for `/auth`, with the headers clients need.

use std::path::Path;
use std::time::Duration;

use accunode_testkit::{RedisServer, SpawnedBinary, TestDatabase, test_env};
use serde_json::json;

const API: &str = env!("CARGO_BIN_EXE_accunode-api");

/// Waits until at least `needed` seconds remain in the current minute, so a
/// test's requests all fall into one fixed window.
pub(crate) async fn start_of_a_window(needed: u64) {
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
    assert_eq!(registered.status().as_u16(), 202);
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

/// Starts an API limiting `/auth` to 3 requests a minute per client address,
/// taking the address from `X-Forwarded-For` when `trust_forwarded_for`.
async fn spawn_with_auth_limit_of_3(
    trust_forwarded_for: bool,
    workdir: &Path,
) -> (SpawnedBinary, String, RedisServer) {
    let redis = RedisServer::start().await;
    let database = TestDatabase::create().await;
    let mut env = test_env(&database.url, &redis.url());
    env.extend(
        [
            ("ENABLE_RATE_LIMITING", "true"),
            ("AUTH_RATE_LIMIT_PER_MINUTE", "3"),
            (
                "TRUST_FORWARDED_FOR",
                if trust_forwarded_for { "true" } else { "false" },
            ),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    let (api, base) = spawn(&env, workdir).await;
    (api, base, redis)
}

/// A failing sign-in from a client whose `X-Forwarded-For` is `forwarded_for`.
async fn sign_in_attempt(
    client: &reqwest::Client,
    base: &str,
    forwarded_for: &str,
) -> reqwest::Response {
    client
        .post(format!("{base}/api/v1/auth/login"))
        .header("x-forwarded-for", forwarded_for)
        .json(&json!({"email": "x@example.com", "password": "guess-0000"}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn auth_routes_are_limited_per_client_address() {
    let workdir = tempfile::tempdir().unwrap();
    let (_api, base, _redis) = spawn_with_auth_limit_of_3(true, workdir.path()).await;
    let client = reqwest::Client::new();
    // Behind the load balancer every client's TCP peer is the balancer; the
    // last X-Forwarded-For entry, the one the balancer appended, tells them apart.
    let (first, second) = ("203.0.113.7", "198.51.100.9");
    start_of_a_window(20).await;
    for _ in 0..3 {
        assert_eq!(
            sign_in_attempt(&client, &base, first)
                .await
                .status()
                .as_u16(),
            401
        );
    }
    let limited = sign_in_attempt(&client, &base, first).await;
    assert_eq!(limited.status().as_u16(), 429);
    assert!(limited.headers().contains_key("retry-after"));

    // The first address used up its own budget, not the second's.
    let other = sign_in_attempt(&client, &base, second).await;
    assert_eq!(other.status().as_u16(), 401);
    assert_eq!(other.headers()["x-ratelimit-remaining"], "2");
    // An entry the client forged in front of the balancer's changes nothing.
    let forged = sign_in_attempt(&client, &base, &format!("{second}, {first}")).await;
    assert_eq!(forged.status().as_u16(), 429);
}

#[tokio::test]
async fn an_untrusted_forwarded_for_header_does_not_escape_the_auth_limit() {
    let workdir = tempfile::tempdir().unwrap();
    let (_api, base, _redis) = spawn_with_auth_limit_of_3(false, workdir.path()).await;
    let client = reqwest::Client::new();
    start_of_a_window(20).await;
    // Not behind a balancer, the header is the client's to write: every
    // request counts against the TCP peer, whatever address it claims.
    for claimed in ["203.0.113.1", "203.0.113.2", "203.0.113.3"] {
        assert_eq!(
            sign_in_attempt(&client, &base, claimed)
                .await
                .status()
                .as_u16(),
            401
        );
    }
    let limited = sign_in_attempt(&client, &base, "203.0.113.4").await;
    assert_eq!(limited.status().as_u16(), 429);
}
