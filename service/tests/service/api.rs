//! The `accunode-api` binary and application against real PostgreSQL and Redis:
//! health, stopping a dependency, configuration errors, migrations, shutdown,
//! request ids, error bodies and the committed OpenAPI document.

use std::path::Path;
use std::process::Command as StdCommand;
use std::time::Duration;

use accunode_service::startup::Application;
use accunode_testkit::{
    RedisServer, SpawnedBinary, TestDatabase, redis_url, test_env, test_settings, wait_until,
};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::support::TestApp;

const API: &str = env!("CARGO_BIN_EXE_accunode-api");
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Starts the binary and returns it with its base URL and its operations
/// listener's, read from its "API listening" log line.
async fn spawn_api(env: &[(String, String)], workdir: &Path) -> (SpawnedBinary, String, String) {
    let mut api = SpawnedBinary::spawn(Path::new(API), &[], env, workdir);
    let listening = api.wait_for_log("API listening", START_TIMEOUT).await;
    let url = |field: &str| {
        format!(
            "http://{}",
            listening[field].as_str().expect("an address field")
        )
    };
    let (base, ops) = (url("address"), url("ops_address"));
    (api, base, ops)
}

/// Starts an in-process application and returns its base URL, its operations
/// listener's and a stopper.
async fn start_in_process(
    database_url: &str,
    redis_url: &str,
) -> (
    String,
    String,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let application = Application::build(test_settings(database_url, redis_url))
        .await
        .expect("build the application");
    let base = format!("http://{}", application.address());
    let ops = format!("http://{}", application.ops_address());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        application
            .run_until_stopped(async {
                let _ = stopped.await;
            })
            .await
            .expect("serve");
    });
    (base, ops, stop, server)
}

async fn get_json(url: &str) -> (u16, Value) {
    let response = reqwest::get(url).await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON body"))
}

#[tokio::test]
async fn health_is_200_when_postgres_and_redis_are_up() {
    let database = TestDatabase::create().await;
    let workdir = tempfile::tempdir().unwrap();
    let (_api, base, _) = spawn_api(&test_env(&database.url, &redis_url()), workdir.path()).await;

    for path in ["/health", "/api/v1/health"] {
        let (status, body) = get_json(&format!("{base}{path}")).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert_eq!(body["status"], "ok");
        assert_eq!(body["down"], serde_json::json!([]));
        assert_eq!(body["checks"]["database"]["status"], "up");
        assert_eq!(body["checks"]["redis"]["status"], "up");
        assert!(body["checks"]["redis"].get("error").is_none(), "{body}");
        assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    }
}

#[tokio::test]
async fn health_is_503_naming_redis_while_redis_is_stopped_and_recovers_after() {
    let database = TestDatabase::create().await;
    let mut redis = RedisServer::start().await;
    let workdir = tempfile::tempdir().unwrap();
    let (_api, base, ops) = spawn_api(&test_env(&database.url, &redis.url()), workdir.path()).await;
    let health = format!("{base}/health");
    assert_eq!(get_json(&health).await.0, 200);

    redis.stop().await;
    // A probe answers for a second; the next one sees Redis down.
    accunode_testkit::wait_until(Duration::from_secs(5), "health to say 503", || async {
        get_json(&health).await.0 == 503
    })
    .await;
    let (status, body) = get_json(&health).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "unavailable");
    assert_eq!(body["down"], serde_json::json!(["redis"]));
    assert_eq!(body["checks"]["database"]["status"], "up");
    assert_eq!(body["checks"]["redis"]["status"], "down");
    // Anyone sees up or down; why, and how fast, only on 127.0.0.1's listener.
    assert!(body["checks"]["redis"].get("error").is_none(), "{body}");
    assert!(
        body["checks"]["redis"].get("latency_ms").is_none(),
        "{body}"
    );
    let (status, detailed) = get_json(&format!("{ops}/health")).await;
    assert_eq!(status, 503, "{detailed}");
    assert!(
        detailed["checks"]["redis"]["error"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "{detailed}"
    );
    assert!(
        detailed["checks"]["database"]["latency_ms"].is_number(),
        "{detailed}"
    );

    // The same port again: the API reconnects by itself, no restart needed.
    let _redis_again = RedisServer::start_on(redis.port).await;
    accunode_testkit::wait_until(Duration::from_secs(15), "health to recover", || async {
        get_json(&health).await.0 == 200
    })
    .await;
}

#[tokio::test]
async fn health_is_503_naming_the_database_when_postgres_refuses_connections() {
    let database = TestDatabase::create().await;
    let (base, _, stop, server) = start_in_process(&database.url, &redis_url()).await;
    assert_eq!(get_json(&format!("{base}/health")).await.0, 200);

    database.refuse_connections().await;
    accunode_testkit::wait_until(Duration::from_secs(5), "health to say 503", || async {
        get_json(&format!("{base}/api/v1/health")).await.0 == 503
    })
    .await;
    let (status, body) = get_json(&format!("{base}/api/v1/health")).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["down"], serde_json::json!(["database"]));
    assert_eq!(body["checks"]["redis"]["status"], "up");

    stop.send(()).unwrap();
    server.await.unwrap();
}

/// Runs the binary to completion with `env` and returns (exit code, stderr).
fn run_to_exit(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let workdir = tempfile::tempdir().unwrap();
    let output = StdCommand::new(API)
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .current_dir(workdir.path())
        .output()
        .expect("run accunode-api");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_config_error_is_one_line_on_stderr_and_exit_code_2() {
    let (code, stderr) = run_to_exit(&[], &[("APP_PORT", "eighty")]);
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr
            .starts_with("accunode-api: configuration error: invalid APP_PORT (from environment):"),
        "{stderr}"
    );
}

#[test]
fn production_refuses_to_start_with_the_default_jwt_secret() {
    let (code, stderr) = run_to_exit(
        &[],
        &[
            ("APP_ENV", "production"),
            ("DATABASE_URL", "postgres://app@127.0.0.1:1/accunode"),
            ("REDIS_URL", "redis://127.0.0.1:1"),
        ],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(
        stderr.trim_end(),
        "accunode-api: configuration error: JWT_SECRET_KEY is required in production but not set"
    );

    let (code, stderr) = run_to_exit(
        &[],
        &[
            ("APP_ENV", "production"),
            ("DATABASE_URL", "postgres://app@127.0.0.1:1/accunode"),
            ("REDIS_URL", "redis://127.0.0.1:1"),
            ("JWT_SECRET_KEY", "short-secret"),
        ],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("at least 32 characters"), "{stderr}");
    assert!(
        !stderr.contains("short-secret"),
        "the secret leaked: {stderr}"
    );
}

#[test]
fn config_lists_every_key_with_secrets_redacted() {
    let (code, _) = run_to_exit(&["config"], &[("JWT_SECRET_KEY", "not-shown-anywhere")]);
    assert_eq!(code, Some(0));
    let workdir = tempfile::tempdir().unwrap();
    let output = StdCommand::new(API)
        .arg("config")
        .env_clear()
        .env("JWT_SECRET_KEY", "not-shown-anywhere")
        .env("DATABASE_URL", "postgres://app:db-password@db/accunode")
        .current_dir(workdir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(!stdout.contains("not-shown-anywhere"), "{stdout}");
    assert!(!stdout.contains("db-password"), "{stdout}");
    assert!(
        stdout.contains("JWT_SECRET_KEY=[redacted]\t# environment"),
        "{stdout}"
    );
    assert!(stdout.contains("APP_PORT=8000\t# default"), "{stdout}");
}

#[tokio::test]
async fn migrate_applies_the_schema_and_is_idempotent() {
    let database = TestDatabase::create().await;
    let env = test_env(&database.url, &redis_url());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    for _ in 0..2 {
        let (code, stderr) = run_to_exit(&["migrate"], &env);
        assert_eq!(code, Some(0), "{stderr}");
    }
    let pool = sqlx::PgPool::connect(&database.url).await.unwrap();
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(applied as usize, accunode_core::db::MIGRATOR.iter().count());
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    for table in [
        "annual_predictions",
        "companies",
        "organizations",
        "quarterly_predictions",
        "users",
    ] {
        assert!(
            tables.iter().any(|t| t == table),
            "{table} missing from {tables:?}"
        );
    }
}

/// Whether a query on the test's database is waiting for a lock.
async fn a_query_waits_on_a_lock(pool: &PgPool) -> bool {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_stat_activity \
         WHERE datname = current_database() AND wait_event_type = 'Lock')",
    )
    .fetch_one(pool)
    .await
    .expect("read pg_stat_activity")
}

#[tokio::test]
async fn sigterm_finishes_the_request_in_flight_refuses_new_ones_and_exits_0() {
    let database = TestDatabase::create().await;
    let workdir = tempfile::tempdir().unwrap();
    let (mut api, base, _) =
        spawn_api(&test_env(&database.url, &redis_url()), workdir.path()).await;
    let client = reqwest::Client::new();
    let credentials = json!({"email": "drain@example.com", "password": "drain-me-42"});
    let registered = client
        .post(format!("{base}/api/v1/auth/register"))
        .json(&credentials)
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status().as_u16(), 202);
    let pool = PgPool::connect(&database.url).await.unwrap();
    sqlx::query("UPDATE users SET email_verified_at = now()")
        .execute(&pool)
        .await
        .unwrap();

    // A sign-in reads `users`; with the table locked here it waits in
    // PostgreSQL for as long as the test holds the lock: a slow request
    // without a route made for tests.
    let mut lock = pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    let sign_in = tokio::spawn(
        client
            .post(format!("{base}/api/v1/auth/login"))
            .json(&credentials)
            .send(),
    );
    wait_until(
        Duration::from_secs(10),
        "the sign-in to wait on the lock",
        || a_query_waits_on_a_lock(&pool),
    )
    .await;

    api.terminate();
    api.wait_for_log("SIGTERM received, stopping", Duration::from_secs(10))
        .await;
    // The listener closes at once: a new client is refused, so the load
    // balancer tries another server instead of queueing behind the drain.
    let address = base.trim_start_matches("http://");
    wait_until(
        Duration::from_secs(5),
        "new connections to be refused",
        move || async move {
            tokio::net::TcpStream::connect(address)
                .await
                .is_err_and(|error| error.kind() == std::io::ErrorKind::ConnectionRefused)
        },
    )
    .await;
    // Draining waits for the blocked request however long it takes (up to
    // the 30 s limit), rather than cutting it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    if sign_in.is_finished() {
        panic!(
            "the sign-in ended while its query was still blocked: {:?}",
            sign_in.await.unwrap()
        );
    }

    lock.rollback().await.unwrap();
    let response = sign_in
        .await
        .unwrap()
        .expect("the sign-in in flight at SIGTERM gets its answer");
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().await.expect("a JSON body");
    assert!(
        body["access_token"].as_str().is_some_and(|t| !t.is_empty()),
        "{body}"
    );
    api.wait_for_log("API stopped", Duration::from_secs(10))
        .await;
    let status = api.wait(Duration::from_secs(10)).await;
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn every_line_a_request_logs_carries_its_request_id() {
    let database = TestDatabase::create().await;
    let workdir = tempfile::tempdir().unwrap();
    let (mut api, base, _) =
        spawn_api(&test_env(&database.url, &redis_url()), workdir.path()).await;

    let response = reqwest::Client::new()
        .get(format!("{base}/health"))
        .header("x-request-id", "trace-abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "trace-abc-123");
    let finished = api
        .wait_for_log("request finished", Duration::from_secs(5))
        .await;
    assert_eq!(
        finished["spans"][0]["request_id"], "trace-abc-123",
        "{finished}"
    );
    assert_eq!(finished["status"], 200);

    // A request without an id, or with an unusable one, gets a fresh UUID.
    let response = reqwest::Client::new()
        .get(format!("{base}/health"))
        .header("x-request-id", "bad id with spaces")
        .send()
        .await
        .unwrap();
    let generated = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(generated.len(), 36, "{generated}");
    let finished = api
        .wait_for_log("request finished", Duration::from_secs(5))
        .await;
    assert_eq!(finished["spans"][0]["request_id"], generated.as_str());
}

#[tokio::test]
async fn errors_are_json_bodies_never_plain_text() {
    let database = TestDatabase::create().await;
    let (base, _, stop, server) = start_in_process(&database.url, &redis_url()).await;

    let (status, body) = get_json(&format!("{base}/api/v1/no-such-route")).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"], "not_found");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert_eq!(body["details"], serde_json::json!([]));

    let response = reqwest::Client::new()
        .post(format!("{base}/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 405);
    assert_eq!(response.headers()["allow"], "GET");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "method_not_allowed");
    let patch = reqwest::Client::new()
        .patch(format!("{base}/api/v1/companies/{}", uuid::Uuid::nil()))
        .send()
        .await
        .unwrap();
    assert_eq!(patch.status().as_u16(), 405);
    assert_eq!(patch.headers()["allow"], "DELETE, GET, PUT");

    stop.send(()).unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn a_server_fault_answers_a_generic_500_that_names_nothing_internal() {
    let app = TestApp::start().await;
    let user = app.signed_up("fault@example.com").await;
    // The table the route reads is gone: PostgreSQL's error names it, and
    // none of that may reach the client.
    sqlx::query("ALTER TABLE companies RENAME TO companies_moved_away")
        .execute(&app.pool)
        .await
        .unwrap();
    let answer = app.get("/api/v1/companies", &user.token).await;
    assert_eq!(answer.status, 500, "{}", answer.body);
    // Exactly the generic body: no room for SQL, a table name or driver text.
    assert_eq!(
        answer.body,
        json!({
            "error": "internal_error",
            "message": "The server could not complete the request.",
            "details": []
        })
    );
    // The id is what ties the generic answer to the logged cause.
    let request_id = answer
        .header("x-request-id")
        .expect("the 500 carries X-Request-Id");
    assert!(uuid::Uuid::parse_str(request_id).is_ok(), "{request_id}");
}

#[tokio::test]
async fn the_served_openapi_document_is_the_committed_one_and_swagger_ui_serves_it() {
    let database = TestDatabase::create().await;
    let (base, _, stop, server) = start_in_process(&database.url, &redis_url()).await;

    let served = reqwest::get(format!("{base}/openapi.json"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let served: Value = serde_json::from_str(&served).unwrap();
    let committed_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.json");
    let pretty = serde_json::to_string_pretty(&served).unwrap() + "\n";
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&committed_path, &pretty).unwrap();
    }
    let committed = std::fs::read_to_string(&committed_path).unwrap_or_default();
    assert!(
        committed == pretty,
        "service/openapi.json differs from the served document; if the change is intended, \
         run `UPDATE_OPENAPI=1 scripts/test` (or this test with UPDATE_OPENAPI=1) and commit the file"
    );
    assert!(served["paths"]["/health"]["get"]["responses"]["503"].is_object());

    let docs = reqwest::get(format!("{base}/docs")).await.unwrap();
    assert_eq!(docs.status().as_u16(), 200);
    assert!(docs.text().await.unwrap().contains("swagger"));

    stop.send(()).unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn metrics_count_requests_by_route_pattern_and_status() {
    let database = TestDatabase::create().await;
    let (base, ops, stop, server) = start_in_process(&database.url, &redis_url()).await;
    for path in [
        "/health",
        "/health",
        "/api/v1/health",
        "/no/such/route/4711",
    ] {
        reqwest::get(format!("{base}{path}")).await.unwrap();
    }

    // Not on the public listener (the load balancer's), only on 127.0.0.1's.
    let public = reqwest::get(format!("{base}/metrics")).await.unwrap();
    assert_eq!(public.status().as_u16(), 404);
    let response = reqwest::get(format!("{ops}/metrics")).await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = response.text().await.unwrap();
    for expected in [
        r#"accunode_http_requests_total{method="GET",route="/health",status="200"} 2"#,
        r#"accunode_http_requests_total{method="GET",route="/api/v1/health",status="200"} 1"#,
        // The route that does not exist, and /metrics asked of the public listener.
        r#"accunode_http_requests_total{method="GET",route="unmatched",status="404"} 2"#,
        r#"accunode_http_request_duration_seconds_bucket{method="GET",route="/health",status="200",le="+Inf"} 2"#,
        // The operations listener's own requests are not the API's traffic.
        "accunode_http_requests_in_flight 0",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    assert!(!text.contains("4711"), "raw paths must not become labels");

    stop.send(()).unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn an_unreachable_dependency_at_start_up_is_one_line_naming_it_and_exit_code_1() {
    let closed_port = accunode_testkit::free_port();
    let models = accunode_testkit::models_dir().display().to_string();
    let (code, stderr) = run_to_exit(
        &[],
        &[
            (
                "DATABASE_URL",
                &format!("postgres://accunode:db-secret@127.0.0.1:{closed_port}/accunode"),
            ),
            ("DATABASE_CONNECT_TIMEOUT_SECS", "1"),
            ("LOG_LEVEL", "off"),
            ("ML_MODEL_PATH", &models),
        ],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "accunode-api: connecting to PostgreSQL: PostgreSQL at postgres://accunode:***@127.0.0.1:{closed_port}/accunode did not accept a connection within"
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("db-secret"), "{stderr}");

    let database = TestDatabase::create().await;
    let (code, stderr) = run_to_exit(
        &[],
        &[
            ("DATABASE_URL", &database.url),
            ("REDIS_URL", &format!("redis://127.0.0.1:{closed_port}")),
            ("LOG_LEVEL", "off"),
            ("ML_MODEL_PATH", &models),
        ],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "accunode-api: connecting to Redis: Redis at redis://127.0.0.1:{closed_port} is not reachable"
        )),
        "{stderr}"
    );
}
