//! Typed settings for the API and the worker, layered from four sources.
//!
//! From lowest to highest precedence: built-in defaults, an optional TOML file
//! (`ACCUNODE_CONFIG`, or `accunode.toml` in the working directory), an optional
//! `.env` file in the working directory, and the process environment. Every key
//! has one name, used as is in the environment and `.env` (`DATABASE_URL`) and in
//! lower case in the TOML file (`database_url`).
//!
//! Loading never touches the process environment (the `.env` file is read, not
//! exported), so it is a pure function of its [`Sources`] and safe to call from
//! parallel tests. Errors are one line naming the key and where its value came
//! from. Secrets are [`SecretString`]s: their `Debug` output is redacted.
//!
//! Every key is declared once, in [`keys`]: its name, format, default, range,
//! readers and meaning. This file holds the typed settings and puts each
//! declared key's value into them; [`formats`] reads the values and
//! [`sources`] merges the files and the environment.

mod formats;
mod keys;
mod sources;

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

pub use keys::ReadBy;
use sources::Layers;
pub use sources::Sources;

/// The JWT secret used when none is configured. Fine on a laptop, refused in production.
const DEVELOPMENT_JWT_SECRET: &str = "accunode-development-secret-change-me";
/// Shortest JWT secret production accepts: 256 bits, the HS256 key size.
const MIN_PRODUCTION_JWT_SECRET_LEN: usize = 32;

/// Which deployment the process runs in; it decides defaults and how strict checks are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppEnv {
    Development,
    Test,
    Production,
}

impl FromStr for AppEnv {
    type Err = String;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value.to_ascii_lowercase().as_str() {
            "development" | "dev" | "local" => Ok(Self::Development),
            "test" => Ok(Self::Test),
            "production" | "prod" => Ok(Self::Production),
            _ => Err("expected development, test or production".into()),
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line, for log shippers.
    Json,
    /// Human-readable lines, for terminals.
    Text,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value.to_ascii_lowercase().as_str() {
            "json" => Ok(Self::Json),
            "text" | "pretty" => Ok(Self::Text),
            _ => Err("expected json or text".into()),
        }
    }
}

/// Everything the API and the worker are configured with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub app_env: AppEnv,
    pub api: ApiSettings,
    pub database: DatabaseSettings,
    pub redis: RedisSettings,
    pub jwt_secret_key: SecretString,
    pub models: ModelSettings,
    pub aws: AwsSettings,
    pub bulk: BulkSettings,
    pub log: LogSettings,
    pub worker: WorkerSettings,
}

#[derive(Debug, Clone)]
pub struct ApiSettings {
    pub host: IpAddr,
    /// `0` asks the operating system for a free port (tests use it).
    pub port: u16,
    /// The operations listener's port on 127.0.0.1 (metrics, detailed
    /// health): never behind the load balancer.
    pub ops_port: u16,
    /// Origins browsers may call the API from; empty: no cross-origin access.
    pub cors_allowed_origins: Vec<String>,
    /// Take the client address from the last `X-Forwarded-For` entry (behind
    /// the load balancer) instead of the TCP peer.
    pub trust_forwarded_for: bool,
    pub auth: AuthSettings,
    pub rate_limits: RateLimitSettings,
    pub features: FeatureFlags,
    /// How long a read prediction stays in the Redis cache.
    pub prediction_cache_ttl: Duration,
    /// Where mail is delivered; `None`: it stays in the outbox table.
    pub smtp_url: Option<SecretString>,
    pub email_from: String,
}

#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    /// Refuse sign-in until the email address is verified.
    pub require_email_verification: bool,
    /// How long a mailed password reset token stays valid.
    pub password_reset_ttl: Duration,
    /// Password hashes computed at once; `None`: one per core.
    pub password_hashing_slots: Option<u32>,
}

/// Requests per minute, counted in Redis so every API server shares them.
#[derive(Debug, Clone)]
pub struct RateLimitSettings {
    pub enabled: bool,
    /// Per signed-in user (anonymous callers: per client address).
    pub per_user_per_minute: u32,
    /// Sign-in, registration and other `/auth` routes, per client address.
    pub auth_per_ip_per_minute: u32,
    /// Sign-in attempts per (normalised) email address per 15 minutes.
    pub login_per_email: u32,
    /// Token refreshes per session per 15 minutes.
    pub refresh_per_session: u32,
}

/// The seeds' feature flags (the bulk-upload ones arrive with bulk upload).
#[derive(Debug, Clone)]
pub struct FeatureFlags {
    pub quarterly_predictions: bool,
    pub max_predictions_per_user: i64,
}

#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    pub url: SecretString,
    pub pool_size: u32,
    /// How long start-up waits for PostgreSQL before giving up.
    pub connect_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct RedisSettings {
    pub url: SecretString,
}

/// Which bundles serve predictions, and from where.
#[derive(Debug, Clone)]
pub struct ModelSettings {
    pub source: ModelSource,
    pub annual: ModelRef,
    pub quarterly: ModelRef,
    /// `None`: reload only on SIGHUP.
    pub reload_interval: Option<Duration>,
}

/// `ML_MODEL_PATH`: a folder of bundle folders, or the model bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    Folder(PathBuf),
    S3(crate::scoring::store::S3Location),
}

impl FromStr for ModelSource {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.starts_with("s3://") {
            crate::scoring::store::S3Location::parse(text)
                .map(Self::S3)
                .map_err(|error| error.to_string())
        } else if text.trim().is_empty() {
            Err("must be a folder or s3://bucket/prefix".into())
        } else {
            Ok(Self::Folder(PathBuf::from(text)))
        }
    }
}

impl fmt::Display for ModelSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Folder(path) => write!(f, "{}", path.display()),
            Self::S3(location) => write!(f, "{location}"),
        }
    }
}

/// A bundle by id, optionally pinned to a version: `id` or `id@version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRef {
    pub id: String,
    pub version: Option<String>,
}

impl FromStr for ModelRef {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (id, version) = match text.split_once('@') {
            Some((id, version)) => (id, Some(version)),
            None => (text, None),
        };
        let valid = |part: &str| {
            !part.is_empty()
                && part != ".."
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        };
        if !valid(id) || version.is_some_and(|v| !valid(v)) {
            return Err(
                "must be a bundle id or id@version (letters, digits, '.', '_', '-')".into(),
            );
        }
        Ok(Self {
            id: id.to_owned(),
            version: version.map(str::to_owned),
        })
    }
}

impl fmt::Display for ModelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.version {
            Some(version) => write!(f, "{}@{version}", self.id),
            None => write!(f, "{}", self.id),
        }
    }
}

#[derive(Debug, Clone)]
pub struct AwsSettings {
    /// A local endpoint (moto) instead of AWS; `None` means the real AWS endpoints.
    pub endpoint_url: Option<String>,
    pub region: String,
    /// Publish the seeds' custom metrics to CloudWatch this often; `None`: off.
    pub cloudwatch_interval: Option<Duration>,
    /// The `Stack` dimension of every published metric, so that two stacks in
    /// one account never add to one series.
    pub stack_name: Option<String>,
}

/// Bulk uploads: what the API accepts and how it splits the work.
#[derive(Debug, Clone)]
pub struct BulkSettings {
    pub enabled: bool,
    /// `None`: not configured, uploads answer 503.
    pub location: Option<UploadLocation>,
    pub max_size_bytes: u64,
    pub max_rows: u32,
    pub uploads_per_hour: u32,
    pub chunk_rows: u32,
}

/// `BULK_UPLOAD_PATH`: the bucket and prefix uploaded files are kept under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadLocation(pub crate::scoring::store::S3Location);

impl FromStr for UploadLocation {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if !text.starts_with("s3://") || text.trim_end_matches('/').matches('/').count() < 3 {
            return Err("must be s3://bucket/prefix".into());
        }
        crate::scoring::store::S3Location::parse(text)
            .map(Self)
            .map_err(|error| error.to_string())
    }
}

impl fmt::Display for UploadLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[derive(Debug, Clone)]
pub struct LogSettings {
    pub format: LogFormat,
    /// An `EnvFilter` directive such as `info` or `info,sqlx=warn`.
    pub filter: String,
}

#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Port of the worker's `/health` and `/metrics`; `0` picks a free one.
    pub health_port: u16,
    /// How often the worker checks its dependencies and renews its heartbeat.
    pub heartbeat_interval: Duration,
    /// Chunks scored at once.
    pub concurrency: u32,
    /// Chunks each slot reads from the queue at a time.
    pub prefetch: u32,
    /// A chunk running longer is abandoned; one idle longer elsewhere is claimed.
    pub chunk_time_limit: Duration,
    /// Deliveries of one chunk before it is dead-lettered.
    pub max_deliveries: u32,
}

/// Where a value came from, named in errors and in `config` listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Default,
    File(PathBuf),
    Dotenv(PathBuf),
    Environment,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Default => f.write_str("default"),
            Self::File(path) => write!(f, "file {}", path.display()),
            Self::Dotenv(path) => write!(f, "{}", path.display()),
            Self::Environment => f.write_str("environment"),
        }
    }
}

/// Why settings could not be loaded. Each message is one line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid {format}: {message}")]
    Malformed {
        path: PathBuf,
        format: &'static str,
        message: String,
    },
    #[error("config file {path}: unknown key `{key}` (known keys: {known})")]
    UnknownKey {
        path: PathBuf,
        key: String,
        known: String,
    },
    #[error("{key} is required{context} but not set")]
    Missing { key: &'static str, context: String },
    #[error("invalid {key} (from {origin}): {problem}")]
    Invalid {
        key: &'static str,
        origin: Origin,
        problem: String,
    },
}

/// One resolved key, for listings: secrets are shown redacted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedKey {
    pub name: &'static str,
    pub shown_value: Option<String>,
    pub origin: Origin,
    pub help: &'static str,
    /// How the value is written, e.g. `integer` or `seconds`.
    pub type_name: &'static str,
    /// The accepted values, e.g. `1–1000`, for keys whose range is checked.
    pub range: Option<String>,
    pub read_by: ReadBy,
}

impl Settings {
    /// Loads settings from the process's own sources (see [`Sources::from_process`]).
    pub fn from_process() -> Result<Self, ConfigError> {
        Self::load(&Sources::from_process())
    }

    /// Layers the sources, types every value and applies the production checks.
    pub fn load(sources: &Sources) -> Result<Self, ConfigError> {
        let layers = Layers::gather(sources)?;
        let settings = Settings {
            app_env: layers.app_env(),
            api: ApiSettings {
                host: layers.get(&keys::APP_HOST)?,
                port: layers.get(&keys::APP_PORT)?,
                ops_port: layers.get(&keys::OPS_PORT)?,
                cors_allowed_origins: layers.get(&keys::CORS_ALLOWED_ORIGINS)?,
                trust_forwarded_for: layers.get(&keys::TRUST_FORWARDED_FOR)?,
                auth: AuthSettings {
                    access_token_ttl: layers.get(&keys::ACCESS_TOKEN_TTL_SECS)?,
                    refresh_token_ttl: layers.get(&keys::REFRESH_TOKEN_TTL_SECS)?,
                    require_email_verification: layers.get(&keys::REQUIRE_EMAIL_VERIFICATION)?,
                    password_reset_ttl: layers.get(&keys::PASSWORD_RESET_TOKEN_TTL_SECS)?,
                    password_hashing_slots: layers.get_optional(&keys::PASSWORD_HASHING_SLOTS)?,
                },
                rate_limits: RateLimitSettings {
                    enabled: layers.get(&keys::ENABLE_RATE_LIMITING)?,
                    per_user_per_minute: layers.get(&keys::RATE_LIMIT_PER_MINUTE)?,
                    auth_per_ip_per_minute: layers.get(&keys::AUTH_RATE_LIMIT_PER_MINUTE)?,
                    login_per_email: layers.get(&keys::LOGIN_RATE_LIMIT_PER_EMAIL)?,
                    refresh_per_session: layers.get(&keys::REFRESH_RATE_LIMIT_PER_SESSION)?,
                },
                features: FeatureFlags {
                    quarterly_predictions: layers.get(&keys::ENABLE_QUARTERLY_PREDICTIONS)?,
                    max_predictions_per_user: layers.get(&keys::MAX_PREDICTIONS_PER_USER)?,
                },
                prediction_cache_ttl: layers.get(&keys::PREDICTION_CACHE_TTL_SECS)?,
                smtp_url: layers.get_optional(&keys::SMTP_URL)?,
                email_from: layers.get(&keys::EMAIL_FROM)?,
            },
            database: DatabaseSettings {
                url: layers.get(&keys::DATABASE_URL)?,
                pool_size: layers.get(&keys::DATABASE_POOL_SIZE)?,
                connect_timeout: layers.get(&keys::DATABASE_CONNECT_TIMEOUT_SECS)?,
            },
            redis: RedisSettings {
                url: layers.get(&keys::REDIS_URL)?,
            },
            jwt_secret_key: layers.get(&keys::JWT_SECRET_KEY)?,
            models: ModelSettings {
                source: layers.get(&keys::ML_MODEL_PATH)?,
                annual: layers.get(&keys::ANNUAL_MODEL)?,
                quarterly: layers.get(&keys::QUARTERLY_MODEL)?,
                reload_interval: layers.get(&keys::MODEL_RELOAD_SECS)?,
            },
            aws: AwsSettings {
                endpoint_url: layers.get_optional(&keys::AWS_ENDPOINT_URL)?,
                region: layers.get(&keys::AWS_REGION)?,
                cloudwatch_interval: layers.get(&keys::CLOUDWATCH_METRICS_SECS)?,
                stack_name: layers.get_optional(&keys::STACK_NAME)?,
            },
            bulk: BulkSettings {
                enabled: layers.get(&keys::ENABLE_BULK_UPLOAD)?,
                location: layers.get_optional(&keys::BULK_UPLOAD_PATH)?,
                max_size_bytes: u64::from(layers.get(&keys::BULK_UPLOAD_MAX_SIZE_MB)?) << 20,
                max_rows: layers.get(&keys::BULK_MAX_ROWS)?,
                uploads_per_hour: layers.get(&keys::BULK_UPLOADS_PER_HOUR)?,
                chunk_rows: layers.get(&keys::BULK_CHUNK_ROWS)?,
            },
            log: LogSettings {
                format: layers.get(&keys::LOG_FORMAT)?,
                filter: layers.get(&keys::LOG_LEVEL)?,
            },
            worker: WorkerSettings {
                health_port: layers.get(&keys::WORKER_HEALTH_PORT)?,
                heartbeat_interval: layers.get(&keys::WORKER_HEARTBEAT_SECS)?,
                concurrency: layers.get(&keys::WORKER_CONCURRENCY)?,
                prefetch: layers.get(&keys::WORKER_PREFETCH)?,
                chunk_time_limit: layers.get(&keys::WORKER_CHUNK_TIME_LIMIT_SECS)?,
                max_deliveries: layers.get(&keys::WORKER_MAX_DELIVERIES)?,
            },
        };
        settings.check_production(&layers)?;
        Ok(settings)
    }

    /// Production refuses what is only safe on a laptop.
    fn check_production(&self, layers: &Layers) -> Result<(), ConfigError> {
        if self.app_env != AppEnv::Production {
            return Ok(());
        }
        let secret = self.jwt_secret_key.expose_secret();
        let problem = if secret == DEVELOPMENT_JWT_SECRET {
            Some("the development default is not allowed in production".to_owned())
        } else if secret.len() < MIN_PRODUCTION_JWT_SECRET_LEN {
            Some(format!(
                "must be at least {MIN_PRODUCTION_JWT_SECRET_LEN} characters in production, got {}",
                secret.len()
            ))
        } else {
            None
        };
        match problem {
            Some(problem) => Err(ConfigError::Invalid {
                key: keys::JWT_SECRET_KEY.name,
                origin: layers.origin(&keys::JWT_SECRET_KEY),
                problem,
            }),
            None => Ok(()),
        }
    }

    /// Every key with its effective value (secrets redacted) and its origin.
    pub fn describe(sources: &Sources) -> Result<Vec<ResolvedKey>, ConfigError> {
        let layers = Layers::gather(sources)?;
        Ok(keys::ALL
            .iter()
            .map(|key| ResolvedKey {
                name: key.name(),
                shown_value: layers.raw(*key).map(|(value, _)| key.secrecy().show(value)),
                origin: layers.origin(*key),
                help: key.help(),
                type_name: key.type_name(),
                range: key.range(),
                read_by: key.read_by(),
            })
            .collect())
    }
}

/// A URL with its password replaced, safe to log: `postgres://user:***@host/db`.
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) => {
            if url.password().is_some() {
                // Setting a password only fails on URLs that cannot have one.
                let _ = url.set_password(Some("***"));
            }
            url.to_string()
        }
        Err(_) => "[unparseable URL]".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Sources {
        Sources {
            file: None,
            dotenv: None,
            env: pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    fn production_env<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut pairs = vec![
            ("APP_ENV", "production"),
            ("DATABASE_URL", "postgres://app:pw@db:5432/accunode"),
            ("REDIS_URL", "redis://cache:6379"),
            ("JWT_SECRET_KEY", "0123456789abcdef0123456789abcdef"),
        ];
        pairs.extend_from_slice(extra);
        pairs
    }

    #[test]
    fn defaults_give_a_working_development_config() {
        let settings = Settings::load(&env(&[])).unwrap();
        assert_eq!(settings.app_env, AppEnv::Development);
        assert_eq!(settings.api.port, 8000);
        assert_eq!(settings.api.host.to_string(), "127.0.0.1");
        assert_eq!(settings.database.pool_size, 100);
        assert_eq!(settings.log.format, LogFormat::Text);
        assert_eq!(settings.aws.endpoint_url, None);
    }

    #[test]
    fn environment_beats_dotenv_beats_file_beats_default() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("accunode.toml");
        std::fs::write(
            &file,
            "app_port = 9001\nml_model_path = \"from-file\"\naws_region = \"eu-west-1\"\n",
        )
        .unwrap();
        let dotenv = dir.path().join(".env");
        std::fs::write(
            &dotenv,
            "# local overrides\nexport APP_PORT=9002\nML_MODEL_PATH=\"from-dotenv\"\nUNRELATED=1\n",
        )
        .unwrap();
        let sources = Sources {
            file: Some(file.clone()),
            dotenv: Some(dotenv.clone()),
            env: vec![("APP_PORT".into(), "9003".into())],
        };
        let settings = Settings::load(&sources).unwrap();
        assert_eq!(settings.api.port, 9003);
        assert_eq!(
            settings.models.source,
            ModelSource::Folder(PathBuf::from("from-dotenv"))
        );
        assert_eq!(settings.aws.region, "eu-west-1");

        let described = Settings::describe(&sources).unwrap();
        let origin_of = |name| {
            described
                .iter()
                .find(|k| k.name == name)
                .unwrap()
                .origin
                .clone()
        };
        assert_eq!(origin_of("APP_PORT"), Origin::Environment);
        assert_eq!(origin_of("ML_MODEL_PATH"), Origin::Dotenv(dotenv));
        assert_eq!(origin_of("AWS_REGION"), Origin::File(file));
        assert_eq!(origin_of("LOG_LEVEL"), Origin::Default);
    }

    #[test]
    fn secrets_are_redacted_in_debug_and_listings() {
        let sources = env(&[
            ("DATABASE_URL", "postgres://app:hunter2-db@db/accunode"),
            ("REDIS_URL", "redis://:hunter2-redis@cache:6379"),
            ("JWT_SECRET_KEY", "hunter2-jwt-secret"),
        ]);
        let settings = Settings::load(&sources).unwrap();
        let debug = format!("{settings:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("REDACTED"), "{debug}");

        let listing = format!("{:?}", Settings::describe(&sources).unwrap());
        assert!(!listing.contains("hunter2"), "{listing}");
        assert!(
            listing.contains("postgres://app:***@db/accunode"),
            "{listing}"
        );
    }

    #[test]
    fn production_refuses_the_default_or_a_short_jwt_secret() {
        let default = production_env(&[("JWT_SECRET_KEY", DEVELOPMENT_JWT_SECRET)]);
        let error = Settings::load(&env(&default)).unwrap_err().to_string();
        assert!(error.starts_with("invalid JWT_SECRET_KEY"), "{error}");
        assert!(error.contains("development default"), "{error}");

        let short = production_env(&[("JWT_SECRET_KEY", "too-short")]);
        let error = Settings::load(&env(&short)).unwrap_err().to_string();
        assert!(error.contains("at least 32 characters"), "{error}");
        assert!(!error.contains("too-short"), "the secret leaked: {error}");

        let settings = Settings::load(&env(&production_env(&[]))).unwrap();
        assert_eq!(settings.log.format, LogFormat::Json);
        assert_eq!(settings.api.host.to_string(), "0.0.0.0");
    }

    #[test]
    fn production_requires_explicit_connection_urls() {
        let error = Settings::load(&env(&[
            ("APP_ENV", "production"),
            ("JWT_SECRET_KEY", "0123456789abcdef0123456789abcdef"),
        ]))
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "DATABASE_URL is required in production but not set"
        );
    }

    #[test]
    fn invalid_values_name_the_key_and_the_source() {
        let error = Settings::load(&env(&[("APP_PORT", "eighty")]))
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("invalid APP_PORT (from environment):"),
            "{error}"
        );
        assert!(error.contains("\"eighty\""), "{error}");

        let error = Settings::load(&env(&[("DATABASE_URL", "mysql://u:secretpw@h/db")]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("scheme must be postgres"), "{error}");
        assert!(!error.contains("secretpw"), "{error}");

        let error = Settings::load(&env(&[("DATABASE_POOL_SIZE", "0")]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("between 1 and 1000"), "{error}");

        let error = Settings::load(&env(&[("LOG_LEVEL", "info,=[")]))
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("invalid LOG_LEVEL"), "{error}");
        assert!(!error.contains('\n'), "{error}");
    }

    #[test]
    fn model_settings_parse_folders_buckets_and_pinned_versions() {
        let settings = Settings::load(&env(&[])).unwrap();
        assert_eq!(
            settings.models.source,
            ModelSource::Folder(PathBuf::from("models"))
        );
        assert_eq!(settings.models.annual.to_string(), "accunode-v1-annual");
        assert_eq!(settings.models.reload_interval, None);

        let settings = Settings::load(&env(&[
            ("ML_MODEL_PATH", "s3://model-bucket/team/models/"),
            ("QUARTERLY_MODEL", "accunode-ensemble-quarterly@1.2.0"),
            ("MODEL_RELOAD_SECS", "60"),
        ]))
        .unwrap();
        let ModelSource::S3(location) = &settings.models.source else {
            panic!("{:?}", settings.models.source)
        };
        assert_eq!(location.bucket, "model-bucket");
        assert_eq!(location.prefix, "team/models");
        assert_eq!(settings.models.quarterly.version.as_deref(), Some("1.2.0"));
        assert_eq!(
            settings.models.reload_interval,
            Some(Duration::from_secs(60))
        );

        for (key, value, expected) in [
            (
                "ANNUAL_MODEL",
                "../etc",
                "must be a bundle id or id@version",
            ),
            (
                "QUARTERLY_MODEL",
                "id@",
                "must be a bundle id or id@version",
            ),
            ("ML_MODEL_PATH", "s3:///x", "the bucket name is empty"),
            ("MODEL_RELOAD_SECS", "-1", "invalid MODEL_RELOAD_SECS"),
        ] {
            let error = Settings::load(&env(&[(key, value)]))
                .unwrap_err()
                .to_string();
            assert!(error.contains(key), "{error}");
            assert!(error.contains(expected), "{key}={value}: {error}");
        }
    }

    #[test]
    fn a_typo_in_the_file_is_an_error_not_silently_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("accunode.toml");
        std::fs::write(&file, "databse_url = \"postgres://x\"\n").unwrap();
        let sources = Sources {
            file: Some(file),
            dotenv: None,
            env: vec![],
        };
        let error = Settings::load(&sources).unwrap_err().to_string();
        assert!(error.contains("unknown key `databse_url`"), "{error}");
    }

    #[test]
    fn a_missing_explicit_file_is_an_error() {
        let sources = Sources {
            file: Some(PathBuf::from("/nonexistent/accunode.toml")),
            dotenv: None,
            env: vec![],
        };
        let error = Settings::load(&sources).unwrap_err().to_string();
        assert!(
            error.starts_with("cannot read config file /nonexistent/accunode.toml"),
            "{error}"
        );
    }

    #[test]
    fn describe_lists_every_declared_key_exactly_once() {
        let described: Vec<&str> = Settings::describe(&env(&[]))
            .unwrap()
            .iter()
            .map(|key| key.name)
            .collect();
        let declared: Vec<&str> = keys::ALL.iter().map(|key| key.name()).collect();
        for name in &declared {
            let times = described.iter().filter(|listed| *listed == name).count();
            assert_eq!(times, 1, "{name} is listed {times} times: {described:?}");
        }
        assert_eq!(described, declared);
    }

    #[test]
    fn every_declared_range_is_enforced_at_both_ends() {
        let ranged: Vec<(&str, String)> = keys::ALL
            .iter()
            .filter_map(|key| Some((key.name(), key.range()?)))
            .collect();
        assert!(!ranged.is_empty());
        for (name, range) in ranged {
            let (low, high) = range.split_once('–').unwrap();
            let low: i128 = low.parse().unwrap();
            let high: i128 = high.parse().unwrap();
            for inside in [low, high] {
                if let Err(error) = Settings::load(&env(&[(name, &inside.to_string())])) {
                    panic!("{name}={inside} is within {range} but refused: {error}");
                }
            }
            for outside in [low - 1, high + 1] {
                let Err(error) = Settings::load(&env(&[(name, &outside.to_string())])) else {
                    panic!("{name}={outside} is outside {range} but accepted");
                };
                let error = error.to_string();
                assert!(
                    error.starts_with(&format!("invalid {name} (from environment): ")),
                    "{name}={outside}: {error}"
                );
            }
        }
    }
}
