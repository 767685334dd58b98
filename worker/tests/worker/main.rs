//! The `accunode-worker` binary against real PostgreSQL and Redis: health on
//! HTTP and as a Redis heartbeat, a dependency going away, configuration
//! errors, and a clean stop on SIGTERM.

mod bulk;

use std::path::Path;
use std::time::Duration;

use accunode_testkit::{RedisServer, SpawnedBinary, TestDatabase, redis_url, test_env, wait_until};
use accunode_worker::HEARTBEAT_KEY_PREFIX;
use serde_json::Value;

const WORKER: &str = env!("CARGO_BIN_EXE_accunode-worker");

async fn spawn_worker(env: &[(String, String)], workdir: &Path) -> (SpawnedBinary, String, String) {
    let mut worker = SpawnedBinary::spawn(Path::new(WORKER), &[], env, workdir);
    let started = worker
        .wait_for_log("worker started", Duration::from_secs(30))
        .await;
    let health = format!("http://{}/health", started["health"].as_str().unwrap());
    let id = started["worker_id"].as_str().unwrap().to_owned();
    (worker, health, id)
}

async fn get_json(url: &str) -> (u16, Value) {
    let response = reqwest::get(url).await.expect("request");
    (
        response.status().as_u16(),
        response.json().await.expect("JSON"),
    )
}

async fn heartbeat(redis_url: &str, worker_id: &str) -> Option<Value> {
    let client = accunode_core::cache::client(redis_url).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let raw: Option<String> = redis::cmd("GET")
        .arg(format!("{HEARTBEAT_KEY_PREFIX}{worker_id}"))
        .query_async(&mut connection)
        .await
        .unwrap();
    raw.map(|raw| serde_json::from_str(&raw).unwrap())
}

#[tokio::test]
async fn reports_health_and_a_heartbeat_then_stops_cleanly_on_sigterm() {
    let database = TestDatabase::create().await;
    let workdir = tempfile::tempdir().unwrap();
    let redis = redis_url();
    let (mut worker, health, id) =
        spawn_worker(&test_env(&database.url, &redis), workdir.path()).await;

    let (status, body) = get_json(&health).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok");
    assert_eq!(body["worker_id"], id.as_str());
    assert_eq!(body["checks"]["database"]["up"], true);
    assert_eq!(body["checks"]["redis"]["up"], true);

    wait_until(Duration::from_secs(10), "the heartbeat", || async {
        heartbeat(&redis, &id)
            .await
            .is_some_and(|beat| beat["status"] == "ok")
    })
    .await;

    worker.terminate();
    let status = worker.wait(Duration::from_secs(10)).await;
    assert!(status.success(), "{status}");
    assert_eq!(
        heartbeat(&redis, &id).await,
        None,
        "a stopped worker left its heartbeat"
    );
}

#[tokio::test]
async fn health_is_503_naming_redis_while_redis_is_stopped() {
    let database = TestDatabase::create().await;
    let mut redis = RedisServer::start().await;
    let workdir = tempfile::tempdir().unwrap();
    let (mut worker, health, _) =
        spawn_worker(&test_env(&database.url, &redis.url()), workdir.path()).await;
    assert_eq!(get_json(&health).await.0, 200);

    redis.stop().await;
    let (status, body) = get_json(&health).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["down"], serde_json::json!(["redis"]));
    worker
        .wait_for_log("dependencies down", Duration::from_secs(10))
        .await;

    // Still stops cleanly with Redis gone: the heartbeat simply expires.
    worker.terminate();
    assert!(worker.wait(Duration::from_secs(15)).await.success());
}

#[test]
fn a_config_error_is_one_line_on_stderr_and_exit_code_2() {
    let workdir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(WORKER)
        .env_clear()
        .env("WORKER_HEARTBEAT_SECS", "0")
        .current_dir(workdir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("invalid WORKER_HEARTBEAT_SECS"), "{stderr}");
}

#[test]
fn help_describes_the_job_flow() {
    let output = std::process::Command::new(WORKER)
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    for part in [
        "accunode:bulk:chunks",
        "WORKER_CONCURRENCY",
        "WORKER_MAX_DELIVERIES",
        "dead-letter",
    ] {
        assert!(help.contains(part), "{part}: {help}");
    }
}
