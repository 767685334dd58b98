//! The API and the worker together on one fresh database and the shared Redis:
//! they migrate concurrently without conflict, both report healthy, and both
//! stop cleanly. Also the schema's tenancy constraints, which both rely on.

use std::time::Duration;

use accunode_core::db::MIGRATOR;
use accunode_service::startup::Application;
use accunode_testkit::{TestDatabase, redis_url, test_settings, wait_until};
use accunode_worker::{HEARTBEAT_KEY_PREFIX, Worker};

#[tokio::test]
async fn api_and_worker_migrate_concurrently_and_both_report_healthy() {
    let database = TestDatabase::create().await;
    let redis = redis_url();
    let (api, worker) = tokio::join!(
        Application::build(test_settings(&database.url, &redis)),
        Worker::build(test_settings(&database.url, &redis)),
    );
    let (api, worker) = (api.expect("API builds"), worker.expect("worker builds"));

    let pool = sqlx::PgPool::connect(&database.url).await.unwrap();
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        applied as usize,
        MIGRATOR.iter().count(),
        "each migration applied exactly once"
    );

    let api_health = format!("http://{}/health", api.address());
    let worker_health = format!("http://{}/health", worker.health_address());
    let heartbeat_key = format!("{HEARTBEAT_KEY_PREFIX}{}", worker.id());
    let (stop_api, api_stopped) = tokio::sync::oneshot::channel::<()>();
    let (stop_worker, worker_stopped) = tokio::sync::oneshot::channel::<()>();
    let api = tokio::spawn(api.run_until_stopped(async {
        let _ = api_stopped.await;
    }));
    let worker = tokio::spawn(worker.run_until_stopped(async {
        let _ = worker_stopped.await;
    }));

    for url in [&api_health, &worker_health] {
        let response = reqwest::get(url.as_str()).await.unwrap();
        assert_eq!(response.status().as_u16(), 200, "{url}");
    }
    let client = accunode_core::cache::client(&redis).unwrap();
    let mut redis_connection = client.get_multiplexed_async_connection().await.unwrap();
    wait_until(Duration::from_secs(10), "the worker's heartbeat", || {
        let mut connection = redis_connection.clone();
        let key = heartbeat_key.clone();
        async move {
            redis::cmd("EXISTS")
                .arg(key)
                .query_async::<bool>(&mut connection)
                .await
                .unwrap()
        }
    })
    .await;

    stop_api.send(()).unwrap();
    stop_worker.send(()).unwrap();
    api.await.unwrap().expect("the API stops cleanly");
    worker.await.unwrap().expect("the worker stops cleanly");
    let left: bool = redis::cmd("EXISTS")
        .arg(&heartbeat_key)
        .query_async(&mut redis_connection)
        .await
        .unwrap();
    assert!(!left, "the stopped worker's heartbeat is gone");
}

/// Inserts a user and returns its id.
async fn user(pool: &sqlx::PgPool, email: &str) -> sqlx::types::Uuid {
    sqlx::query_scalar("INSERT INTO users (email, password_hash) VALUES ($1, 'x') RETURNING id")
        .bind(email)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn personal_company(
    pool: &sqlx::PgPool,
    owner: sqlx::types::Uuid,
    symbol: &str,
) -> Result<sqlx::types::Uuid, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO companies (symbol, name, access_level, created_by) \
         VALUES ($1, 'Acme', 'personal', $2) RETURNING id",
    )
    .bind(symbol)
    .bind(owner)
    .fetch_one(pool)
    .await
}

async fn annual_prediction(
    pool: &sqlx::PgPool,
    company: sqlx::types::Uuid,
    owner: sqlx::types::Uuid,
    year: i32,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO annual_predictions (company_id, reporting_year, probability, risk_level, \
         confidence, model_id, model_version, access_level, created_by) \
         VALUES ($1, $2, 0.01, 'LOW', 0.98, 'accunode-v1-annual', '1.0.0', 'personal', $3)",
    )
    .bind(company)
    .bind(year)
    .bind(owner)
    .execute(pool)
    .await
    .map(drop)
}

fn is_unique_violation(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .is_some_and(|e| e.code().as_deref() == Some("23505"))
}

#[tokio::test]
async fn the_schema_keeps_companies_and_predictions_unique_within_a_scope_only() {
    let database = TestDatabase::create().await;
    let pool = sqlx::PgPool::connect(&database.url).await.unwrap();
    MIGRATOR.run(&pool).await.unwrap();

    let alice = user(&pool, "alice@example.com").await;
    let bob = user(&pool, "bob@example.com").await;
    let duplicate_email =
        sqlx::query("INSERT INTO users (email, password_hash) VALUES ('alice@example.com', 'y')")
            .execute(&pool)
            .await
            .unwrap_err();
    assert!(is_unique_violation(&duplicate_email));

    let alices = personal_company(&pool, alice, "ACME").await.unwrap();
    // The same symbol in another person's scope is another company...
    let bobs = personal_company(&pool, bob, "ACME").await.unwrap();
    assert_ne!(alices, bobs);
    // ...but not twice in one scope.
    let error = personal_company(&pool, alice, "ACME").await.unwrap_err();
    assert!(is_unique_violation(&error), "{error}");

    annual_prediction(&pool, alices, alice, 2024).await.unwrap();
    annual_prediction(&pool, alices, alice, 2023).await.unwrap();
    let error = annual_prediction(&pool, alices, alice, 2024)
        .await
        .unwrap_err();
    assert!(is_unique_violation(&error), "{error}");

    // Organisation scope needs an organisation (its scope key would be NULL: 23502)...
    let error = sqlx::query(
        "INSERT INTO companies (symbol, name, access_level) VALUES ('X', 'X', 'organization')",
    )
    .execute(&pool)
    .await
    .unwrap_err();
    assert_eq!(
        error.as_database_error().unwrap().code().as_deref(),
        Some("23502")
    );
    // ...and a probability outside [0, 1] breaks a check constraint (23514).
    let error = sqlx::query(
        "INSERT INTO annual_predictions (company_id, reporting_year, probability, risk_level, confidence, \
         model_id, model_version, access_level, created_by) \
         VALUES ($1, 2022, 1.5, 'LOW', 0.9, 'm', 'v', 'personal', $2)",
    )
    .bind(alices)
    .bind(alice)
    .execute(&pool)
    .await
    .unwrap_err();
    assert_eq!(
        error.as_database_error().unwrap().code().as_deref(),
        Some("23514")
    );
}
