//! Helpers for tests that run against the real PostgreSQL, Redis and moto
//! started by `scripts/test` (which exports `TEST_DATABASE_URL`,
//! `TEST_REDIS_URL` and `TEST_AWS_ENDPOINT_URL`).
//!
//! Each test gets its own database, so tests run in parallel without seeing each
//! other's rows; tests that need to stop a dependency start their own Redis.
//! [`aws_faults`] puts a proxy in front of moto that behaves as AWS does:
//! slow resources, throttling, lost answers.

pub mod aws_faults;

use std::net::TcpListener;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use accunode_core::config::{Settings, Sources};
use sqlx::{Connection, Executor, PgConnection};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests through scripts/test, which starts PostgreSQL and Redis and sets it")
    })
}

/// The Redis shared by all tests (use unique keys).
pub fn redis_url() -> String {
    required_env("TEST_REDIS_URL")
}

/// The local AWS endpoint (moto) shared by all tests (use unique names).
pub fn aws_endpoint_url() -> String {
    required_env("TEST_AWS_ENDPOINT_URL")
}

/// An S3 client for moto, path-style, region us-east-1.
pub async fn s3_client() -> aws_sdk_s3::Client {
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(aws_endpoint_url())
        .region(aws_config::Region::new("us-east-1"))
        .load()
        .await;
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(true)
            .build(),
    )
}

/// A new, empty bucket named `accunode-test-<uuid>`.
pub async fn create_bucket() -> String {
    let name = format!("accunode-test-{}", uuid::Uuid::new_v4().simple());
    s3_client()
        .await
        .create_bucket()
        .bucket(&name)
        .send()
        .await
        .expect("create a bucket in moto");
    name
}

/// A database created for one test, named `accunode_test_<uuid>`.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
}

impl TestDatabase {
    /// Creates an empty database on the test server.
    pub async fn create() -> Self {
        let admin_url = required_env("TEST_DATABASE_URL");
        let name = format!("accunode_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&admin_url)
            .await
            .expect("connect to the test PostgreSQL server");
        admin
            .execute(format!(r#"CREATE DATABASE "{name}""#).as_str())
            .await
            .expect("create the test database");
        let mut url = url::Url::parse(&admin_url).expect("TEST_DATABASE_URL is a URL");
        url.set_path(&name);
        Self {
            name,
            url: url.to_string(),
        }
    }

    /// Makes the database refuse connections and drops the open ones (clients'
    /// only: an autovacuum worker there is the server's own): to a running
    /// process it looks exactly like PostgreSQL going away.
    pub async fn refuse_connections(&self) {
        let mut admin = PgConnection::connect(&required_env("TEST_DATABASE_URL"))
            .await
            .expect("connect to the test PostgreSQL server");
        let name = &self.name;
        admin
            .execute(format!(r#"ALTER DATABASE "{name}" ALLOW_CONNECTIONS false"#).as_str())
            .await
            .expect("disallow connections");
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = $1 AND backend_type = 'client backend'",
        )
        .bind(name)
        .execute(&mut admin)
        .await
        .expect("terminate the open connections");
    }

    /// Lets connections in again after [`Self::refuse_connections`]: to a
    /// running process it looks like PostgreSQL coming back.
    pub async fn allow_connections(&self) {
        let mut admin = PgConnection::connect(&required_env("TEST_DATABASE_URL"))
            .await
            .expect("connect to the test PostgreSQL server");
        let name = &self.name;
        admin
            .execute(format!(r#"ALTER DATABASE "{name}" ALLOW_CONNECTIONS true"#).as_str())
            .await
            .expect("allow connections");
    }
}

/// A free TCP port on 127.0.0.1 (free now; bind it soon).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

/// A `redis-server` of the test's own, so that the test may stop it.
pub struct RedisServer {
    child: Child,
    pub port: u16,
}

impl RedisServer {
    /// Starts a server on any free port.
    pub async fn start() -> Self {
        let port = free_port();
        // A new server starts empty, whatever an earlier run left on this port.
        let _ = std::fs::remove_dir_all(
            std::env::temp_dir().join(format!("accunode-test-redis-{port}")),
        );
        Self::start_on(port).await
    }

    /// Starts a server on `port`, e.g. to bring a stopped one back: with an
    /// append-only file in a folder named after the port, so a server brought
    /// back on the same port has the data of the one that stopped, as the
    /// scripts' Redis does.
    pub async fn start_on(port: u16) -> Self {
        let dir = std::env::temp_dir().join(format!("accunode-test-redis-{port}"));
        std::fs::create_dir_all(&dir).expect("create the Redis data folder");
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(&dir)
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .args(["--daemonize", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start redis-server (is it installed? scripts/test installs it)");
        let server = Self { child, port };
        wait_until(
            Duration::from_secs(10),
            "redis-server to answer PING",
            || server.answers_ping(),
        )
        .await;
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn answers_ping(&self) -> bool {
        let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await else {
            return false;
        };
        let mut reply = [0_u8; 7];
        stream.write_all(b"PING\r\n").await.is_ok()
            && stream.read_exact(&mut reply).await.is_ok()
            && &reply == b"+PONG\r\n"
    }

    /// Kills the server and waits until it is gone.
    pub async fn stop(&mut self) {
        self.child.kill().await.expect("kill redis-server");
    }
}

/// Polls `condition` every 50 ms until it holds, panicking after `timeout`.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    while !condition().await {
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The environment of an API or worker under test: its own database and Redis,
/// any free ports, JSON logs (so tests can read them), a one-second heartbeat.
pub fn test_env(database_url: &str, redis_url: &str) -> Vec<(String, String)> {
    let models = models_dir().display().to_string();
    [
        ("APP_ENV", "test"),
        ("APP_HOST", "127.0.0.1"),
        ("APP_PORT", "0"),
        ("OPS_PORT", "0"),
        ("DATABASE_URL", database_url),
        ("DATABASE_POOL_SIZE", "5"),
        ("DATABASE_CONNECT_TIMEOUT_SECS", "5"),
        ("REDIS_URL", redis_url),
        ("LOG_FORMAT", "json"),
        ("LOG_LEVEL", "info"),
        ("WORKER_HEALTH_PORT", "0"),
        ("WORKER_HEARTBEAT_SECS", "1"),
        ("ML_MODEL_PATH", models.as_str()),
        // Tests share one Redis and one client address: each test that checks
        // limits turns them on with a Redis of its own.
        ("ENABLE_RATE_LIMITING", "false"),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value.to_owned()))
    .collect()
}

/// The repository's `models/` folder (the shipped bundles), as an absolute path.
pub fn models_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models")
}

/// Settings for an in-process API or worker (see [`test_env`]).
pub fn test_settings(database_url: &str, redis_url: &str) -> Settings {
    Settings::load(&Sources {
        file: None,
        dotenv: None,
        env: test_env(database_url, redis_url),
    })
    .expect("test settings are valid")
}

/// A binary of ours running as a child process, its standard output read line by line.
pub struct SpawnedBinary {
    child: Child,
    stdout_lines: mpsc::UnboundedReceiver<String>,
}

impl SpawnedBinary {
    /// Starts `program` with exactly `env` (plus `PATH`), in an empty working
    /// directory so no stray `.env` or `accunode.toml` is picked up.
    pub fn spawn(program: &Path, args: &[&str], env: &[(String, String)], workdir: &Path) -> Self {
        let mut child = Command::new(program)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env.iter().map(|(k, v)| (k, v)))
            .current_dir(workdir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|error| panic!("spawn {}: {error}", program.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, stdout_lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("[child] {line}");
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            stdout_lines,
        }
    }

    /// Waits for the first JSON log line whose message is `message` and returns it.
    pub async fn wait_for_log(&mut self, message: &str, timeout: Duration) -> serde_json::Value {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let line = tokio::time::timeout_at(deadline, self.stdout_lines.recv())
                .await
                .unwrap_or_else(|_| panic!("no {message:?} log line within {timeout:?}"))
                .unwrap_or_else(|| panic!("the process exited before logging {message:?}"));
            if let Ok(event) = serde_json::from_str::<serde_json::Value>(&line)
                && event["message"] == message
            {
                return event;
            }
        }
    }

    /// Sends SIGTERM, as systemd and Auto Scaling do.
    pub fn terminate(&self) {
        self.signal("TERM");
    }

    /// Sends the signal named `name` (`TERM`, `HUP`, ...).
    pub fn signal(&self, name: &str) {
        let pid = self.child.id().expect("the process is still running");
        let status = std::process::Command::new("kill")
            .args([&format!("-{name}"), &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} {pid} failed");
    }

    /// Waits for the process to exit, panicking after `timeout`.
    pub async fn wait(&mut self, timeout: Duration) -> ExitStatus {
        tokio::time::timeout(timeout, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("the process did not exit within {timeout:?}"))
            .expect("wait for the process")
    }
}
