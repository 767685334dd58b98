//! An in-process API on its own database, a client that signs users in, and
//! the API with a worker, a Redis and a bucket of their own for bulk jobs.

use accunode_core::config::{Settings, Sources};
use accunode_service::auth::password::Passwords;
use accunode_service::startup::Application;
use std::collections::HashMap;
use std::time::Duration;

use accunode_testkit::{RedisServer, TestDatabase, create_bucket, redis_url, s3_client, test_env};
use accunode_worker::Worker;
use reqwest::Method;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

pub const PASSWORD: &str = "correct-horse-42";

/// A running API with its own database.
pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub pool: PgPool,
    pub database: TestDatabase,
    /// The API's password hashing slots (a test can hold one).
    pub passwords: Passwords,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

/// A signed-in user.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: Uuid,
    pub token: String,
    pub refresh_token: String,
}

/// An answer: status, headers and JSON body (`Null` when there is none).
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The fields named by a 422's details.
    pub fn fields(&self) -> Vec<String> {
        self.body["details"]
            .as_array()
            .map(|details| {
                details
                    .iter()
                    .map(|d| d["field"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl TestApp {
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// Starts with extra environment settings (overriding the test defaults).
    pub async fn start_with(extra: &[(&str, &str)]) -> Self {
        let database = TestDatabase::create().await;
        Self::start_on(database, &redis_url(), extra).await
    }

    /// Starts on an existing database and a given Redis.
    pub async fn start_on(database: TestDatabase, redis: &str, extra: &[(&str, &str)]) -> Self {
        let mut env = test_env(&database.url, redis);
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let settings = Settings::load(&Sources {
            file: None,
            dotenv: None,
            env,
        })
        .expect("valid test settings");
        let application = Application::build(settings).await.expect("build the API");
        let base = format!("http://{}", application.address());
        let passwords = application.passwords();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            application
                .run_until_stopped(async {
                    let _ = stopped.await;
                })
                .await
                .expect("serve");
        });
        let pool = PgPool::connect(&database.url).await.expect("connect");
        Self {
            base,
            client: reqwest::Client::new(),
            pool,
            database,
            passwords,
            stop: Some(stop),
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        self.call_with(method, path, token, body, &[]).await
    }

    pub async fn call_with(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|_| panic!("{path} answered {status} with non-JSON: {text}"))
        };
        Answer {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str, token: &str) -> Answer {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Answer {
        self.call(Method::POST, path, token, Some(body)).await
    }

    pub async fn put(&self, path: &str, token: &str, body: Value) -> Answer {
        self.call(Method::PUT, path, Some(token), Some(body)).await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Answer {
        self.call(Method::DELETE, path, Some(token), None).await
    }

    /// The verification token mailed to `email` last (other mails, such as
    /// the note that an address is registered already, carry none).
    pub async fn mailed_token(&self, email: &str) -> String {
        let bodies: Vec<String> = sqlx::query_scalar(
            "SELECT body FROM email_outbox WHERE recipient = $1 ORDER BY created_at DESC",
        )
        .bind(email)
        .fetch_all(&self.pool)
        .await
        .expect("the mail to the address");
        bodies
            .iter()
            .find_map(|body| {
                body.lines()
                    .find_map(|line| line.strip_prefix("verification token: "))
            })
            .expect("a mail names the token")
            .trim()
            .to_owned()
    }

    /// Registers and verifies `email`, then signs in.
    pub async fn signed_up(&self, email: &str) -> TestUser {
        let registered = self
            .post(
                "/api/v1/auth/register",
                None,
                json!({"email": email, "password": PASSWORD}),
            )
            .await;
        assert_eq!(registered.status, 202, "{}", registered.body);
        let token = self.mailed_token(email).await;
        let verified = self
            .post("/api/v1/auth/verify-email", None, json!({"token": token}))
            .await;
        assert_eq!(verified.status, 200, "{}", verified.body);
        self.login(email, PASSWORD).await
    }

    pub async fn login(&self, email: &str, password: &str) -> TestUser {
        let login = self
            .post(
                "/api/v1/auth/login",
                None,
                json!({"email": email, "password": password}),
            )
            .await;
        assert_eq!(login.status, 200, "{}", login.body);
        TestUser {
            id: login.body["user"]["id"].as_str().unwrap().parse().unwrap(),
            token: login.body["access_token"].as_str().unwrap().to_owned(),
            refresh_token: login.body["refresh_token"].as_str().unwrap().to_owned(),
        }
    }

    /// A signed-in user with `role`, in `organization` (set in the database,
    /// as an operator would), signed in after the change.
    pub async fn user_with_role(
        &self,
        email: &str,
        role: &str,
        organization: Option<Uuid>,
    ) -> TestUser {
        let user = self.signed_up(email).await;
        sqlx::query("UPDATE users SET role = $2, organization_id = $3 WHERE id = $1")
            .bind(user.id)
            .bind(role)
            .bind(organization)
            .execute(&self.pool)
            .await
            .expect("set the role");
        self.login(email, PASSWORD).await
    }

    /// A new organisation row, created directly.
    pub async fn organization(&self, name: &str, global_access: bool) -> Uuid {
        sqlx::query_scalar(
            "INSERT INTO organizations (name, join_token, allow_global_data_access) \
             VALUES ($1, gen_random_uuid()::text, $2) RETURNING id",
        )
        .bind(name)
        .bind(global_access)
        .fetch_one(&self.pool)
        .await
        .expect("create an organization")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A valid annual prediction request for `symbol`.
pub fn annual(symbol: &str, year: &str) -> Value {
    json!({
        "company_symbol": symbol,
        "company_name": format!("{symbol} Corp"),
        "market_cap": 1.5e9,
        "sector": "Technology",
        "reporting_year": year,
        "long_term_debt_to_total_capital": 35.0,
        "total_debt_to_ebitda": 2.5,
        "net_income_margin": 8.0,
        "ebit_to_interest_expense": 6.0,
        "return_on_assets": 5.0
    })
}

/// A valid quarterly prediction request for `symbol`.
pub fn quarterly(symbol: &str, year: &str, quarter: &str) -> Value {
    json!({
        "company_symbol": symbol,
        "company_name": format!("{symbol} Corp"),
        "market_cap": 2.0e9,
        "sector": "Industrials",
        "reporting_year": year,
        "reporting_quarter": quarter,
        "total_debt_to_ebitda": 3.0,
        "sga_margin": 12.0,
        "long_term_debt_to_total_capital": 40.0,
        "return_on_capital": 7.0
    })
}

/// The API and (optionally) a worker sharing a database, a Redis and a bucket.
pub struct BulkRig {
    pub app: TestApp,
    pub bucket: String,
    pub redis: RedisServer,
    worker_stop: Option<tokio::sync::oneshot::Sender<()>>,
    extra: Vec<(String, String)>,
}

pub fn bulk_env(bucket: &str) -> Vec<(String, String)> {
    [
        ("BULK_UPLOAD_PATH", format!("s3://{bucket}/uploads")),
        ("AWS_ENDPOINT_URL", accunode_testkit::aws_endpoint_url()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("BULK_CHUNK_ROWS", "1000".to_owned()),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value))
    .collect()
}

impl BulkRig {
    pub async fn start(extra: &[(&str, &str)]) -> Self {
        let bucket = create_bucket().await;
        let redis = RedisServer::start().await;
        let mut env = bulk_env(&bucket);
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let borrowed: Vec<(&str, &str)> =
            env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let app = TestApp::start_on(TestDatabase::create().await, &redis.url(), &borrowed).await;
        Self {
            app,
            bucket,
            redis,
            worker_stop: None,
            extra: env,
        }
    }

    pub async fn start_worker(&mut self) {
        let mut env = test_env(&self.app.database.url, &self.redis.url());
        env.extend(self.extra.iter().cloned());
        let settings = Settings::load(&Sources {
            file: None,
            dotenv: None,
            env,
        })
        .expect("valid worker settings");
        let worker = Worker::build(settings).await.expect("build the worker");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            worker
                .run_until_stopped(async {
                    let _ = stopped.await;
                })
                .await
                .expect("the worker runs");
        });
        self.worker_stop = Some(stop);
    }

    pub async fn upload(
        &self,
        user: &TestUser,
        name: &str,
        bytes: Vec<u8>,
        kind: &str,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let form = Form::new()
            .part("file", Part::bytes(bytes).file_name(name.to_owned()))
            .text("prediction_type", kind.to_owned());
        let mut request = self
            .app
            .client
            .post(format!("{}/api/v1/predictions/bulk-upload", self.app.base))
            .bearer_auth(&user.token)
            .multipart(form);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("upload");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn wait_finished(&self, user: &TestUser, job: &str) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(180);
        loop {
            let answer = self
                .app
                .get(&format!("/api/v1/jobs/{job}"), &user.token)
                .await;
            assert_eq!(answer.status, 200, "{}", answer.body);
            let body = answer.body;
            assert_eq!(
                body["processed_rows"].as_i64().unwrap(),
                body["succeeded_rows"].as_i64().unwrap() + body["failed_rows"].as_i64().unwrap(),
                "counts add up at every read: {body}"
            );
            if !matches!(body["status"].as_str(), Some("queued" | "processing")) {
                return body;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the job did not finish: {body}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn results(&self, user: &TestUser, job: &str) -> Vec<HashMap<String, String>> {
        let response = self
            .app
            .client
            .get(format!("{}/api/v1/jobs/{job}/results", self.app.base))
            .bearer_auth(&user.token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        let text = response.text().await.unwrap();
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let headers = reader.headers().unwrap().clone();
        reader
            .records()
            .map(|record| {
                let record = record.unwrap();
                headers
                    .iter()
                    .zip(record.iter())
                    .map(|(h, v)| (h.to_owned(), v.to_owned()))
                    .collect()
            })
            .collect()
    }

    pub async fn stored_objects(&self) -> usize {
        s3_client()
            .await
            .list_objects_v2()
            .bucket(&self.bucket)
            .send()
            .await
            .unwrap()
            .key_count()
            .unwrap_or(0) as usize
    }
}

/// A debugging SMTP server (aiosmtpd, installed by `scripts/test` beside the
/// client generator) on a free port, printing every message it accepts on
/// its stdout: the process (killed on drop) and the `SMTP_URL` reaching it.
pub async fn smtp_server() -> (tokio::process::Child, String) {
    let venv = std::env::var("TEST_OPENAPI_CLIENT_VENV").expect(
        "TEST_OPENAPI_CLIENT_VENV is not set: run through scripts/test, which installs aiosmtpd",
    );
    let port = accunode_testkit::free_port();
    let server = tokio::process::Command::new(std::path::Path::new(&venv).join("bin/python"))
        .args([
            "-u",
            "-m",
            "aiosmtpd",
            "-n",
            "-c",
            "aiosmtpd.handlers.Debugging",
            "-l",
        ])
        .arg(format!("127.0.0.1:{port}"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start aiosmtpd");
    accunode_testkit::wait_until(Duration::from_secs(20), "aiosmtpd to listen", || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
    })
    .await;
    (server, format!("smtp://127.0.0.1:{port}"))
}
