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

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

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
    pub log: LogSettings,
    pub worker: WorkerSettings,
}

#[derive(Debug, Clone)]
pub struct ApiSettings {
    pub host: IpAddr,
    /// `0` asks the operating system for a free port (tests use it).
    pub port: u16,
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
    /// Publish the seeds' custom metrics to CloudWatch this often; `None`: off.
    pub cloudwatch_interval: Option<Duration>,
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
}

/// Requests per minute, counted in Redis so every API server shares them.
#[derive(Debug, Clone)]
pub struct RateLimitSettings {
    pub enabled: bool,
    /// Per signed-in user (anonymous callers: per client address).
    pub per_user_per_minute: u32,
    /// Sign-in, registration and other `/auth` routes, per client address.
    pub auth_per_ip_per_minute: u32,
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
}

#[derive(Debug, Clone)]
pub struct LogSettings {
    pub format: LogFormat,
    /// An `EnvFilter` directive such as `info` or `info,sqlx=warn`.
    pub filter: String,
}

#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Port of the worker's `/health` endpoint; `0` picks a free one.
    pub health_port: u16,
    /// How often the worker checks its dependencies and renews its heartbeat.
    pub heartbeat_interval: Duration,
}

/// A default that may depend on the deployment.
enum Default {
    None,
    Always(&'static str),
    ProductionOr {
        production: Option<&'static str>,
        otherwise: &'static str,
    },
}

/// One configuration key: its name, default, whether it is a secret, and what it means.
struct Key {
    name: &'static str,
    default: Default,
    secret: bool,
    help: &'static str,
}

const KEYS: &[Key] = &[
    Key {
        name: "APP_ENV",
        default: Default::Always("development"),
        secret: false,
        help: "development, test or production",
    },
    Key {
        name: "APP_HOST",
        default: Default::ProductionOr {
            production: Some("0.0.0.0"),
            otherwise: "127.0.0.1",
        },
        secret: false,
        help: "address the API listens on",
    },
    Key {
        name: "APP_PORT",
        default: Default::Always("8000"),
        secret: false,
        help: "port the API listens on (0: any free port)",
    },
    Key {
        name: "CORS_ALLOWED_ORIGINS",
        default: Default::Always(""),
        secret: false,
        help: "comma-separated origins allowed to call the API from browsers",
    },
    Key {
        name: "TRUST_FORWARDED_FOR",
        default: Default::Always("false"),
        secret: false,
        help: "take the client address from X-Forwarded-For (only behind a load balancer)",
    },
    Key {
        name: "ACCESS_TOKEN_TTL_SECS",
        default: Default::Always("1800"),
        secret: false,
        help: "lifetime of an access token",
    },
    Key {
        name: "REFRESH_TOKEN_TTL_SECS",
        default: Default::Always("2592000"),
        secret: false,
        help: "lifetime of a sign-in session (its refresh tokens)",
    },
    Key {
        name: "REQUIRE_EMAIL_VERIFICATION",
        default: Default::Always("true"),
        secret: false,
        help: "refuse sign-in until the email address is verified",
    },
    Key {
        name: "ENABLE_RATE_LIMITING",
        default: Default::Always("true"),
        secret: false,
        help: "count requests per user and client address in Redis",
    },
    Key {
        name: "RATE_LIMIT_PER_MINUTE",
        default: Default::Always("100"),
        secret: false,
        help: "requests per minute per user",
    },
    Key {
        name: "AUTH_RATE_LIMIT_PER_MINUTE",
        default: Default::Always("20"),
        secret: false,
        help: "requests per minute per client address to /api/v1/auth",
    },
    Key {
        name: "ENABLE_QUARTERLY_PREDICTIONS",
        default: Default::Always("true"),
        secret: false,
        help: "serve the quarterly prediction routes",
    },
    Key {
        name: "MAX_PREDICTIONS_PER_USER",
        default: Default::Always("1000"),
        secret: false,
        help: "most predictions one user may create",
    },
    Key {
        name: "PREDICTION_CACHE_TTL_SECS",
        default: Default::Always("3600"),
        secret: false,
        help: "how long a read prediction stays cached in Redis",
    },
    Key {
        name: "SMTP_URL",
        default: Default::None,
        secret: true,
        help: "mail server, smtp://user:pass@host:587?tls=required or smtps://…:465; unset: mail stays in the email_outbox table",
    },
    Key {
        name: "EMAIL_FROM",
        default: Default::Always("AccuNode <no-reply@accunode.local>"),
        secret: false,
        help: "sender of verification mail",
    },
    Key {
        name: "CLOUDWATCH_METRICS_SECS",
        default: Default::Always("0"),
        secret: false,
        help: "publish ActiveConnections and ResponseTime to CloudWatch (AccuNode/API) this often (0: off)",
    },
    Key {
        name: "DATABASE_URL",
        default: Default::ProductionOr {
            production: None,
            otherwise: "postgres://accunode@127.0.0.1:5432/accunode",
        },
        secret: true,
        help: "PostgreSQL connection URL",
    },
    Key {
        name: "DATABASE_POOL_SIZE",
        default: Default::Always("100"),
        secret: false,
        help: "most connections in the pool",
    },
    Key {
        name: "DATABASE_CONNECT_TIMEOUT_SECS",
        default: Default::Always("10"),
        secret: false,
        help: "how long start-up waits for PostgreSQL",
    },
    Key {
        name: "REDIS_URL",
        default: Default::ProductionOr {
            production: None,
            otherwise: "redis://127.0.0.1:6379",
        },
        secret: true,
        help: "Redis connection URL",
    },
    Key {
        name: "JWT_SECRET_KEY",
        default: Default::ProductionOr {
            production: None,
            otherwise: DEVELOPMENT_JWT_SECRET,
        },
        secret: true,
        help: "HS256 signing key (production: at least 32 characters)",
    },
    Key {
        name: "ML_MODEL_PATH",
        default: Default::Always("models"),
        secret: false,
        help: "folder of model bundles, or the model bucket as s3://bucket/prefix",
    },
    Key {
        name: "ANNUAL_MODEL",
        default: Default::Always("accunode-v1-annual"),
        secret: false,
        help: "bundle for annual predictions: id, or id@version (S3 without version: the latest)",
    },
    Key {
        name: "QUARTERLY_MODEL",
        default: Default::Always("accunode-v1-quarterly"),
        secret: false,
        help: "bundle for quarterly predictions: id, or id@version",
    },
    Key {
        name: "MODEL_RELOAD_SECS",
        default: Default::Always("0"),
        secret: false,
        help: "how often to look for new bundles (0: only on SIGHUP)",
    },
    Key {
        name: "AWS_ENDPOINT_URL",
        default: Default::None,
        secret: false,
        help: "local AWS endpoint (moto); unset for AWS itself",
    },
    Key {
        name: "AWS_REGION",
        default: Default::Always("us-east-1"),
        secret: false,
        help: "AWS region",
    },
    Key {
        name: "LOG_FORMAT",
        default: Default::ProductionOr {
            production: Some("json"),
            otherwise: "text",
        },
        secret: false,
        help: "json or text",
    },
    Key {
        name: "LOG_LEVEL",
        default: Default::Always("info"),
        secret: false,
        help: "tracing filter, e.g. info,sqlx=warn",
    },
    Key {
        name: "WORKER_HEALTH_PORT",
        default: Default::Always("8001"),
        secret: false,
        help: "port of the worker's /health (0: any free port)",
    },
    Key {
        name: "WORKER_HEARTBEAT_SECS",
        default: Default::Always("10"),
        secret: false,
        help: "how often the worker checks its dependencies",
    },
];

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

/// The inputs of [`Settings::load`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sources {
    /// A TOML file of `key = value` lines, or `None`.
    pub file: Option<PathBuf>,
    /// A `.env` file of `KEY=VALUE` lines, or `None`.
    pub dotenv: Option<PathBuf>,
    /// The environment variables, highest precedence.
    pub env: Vec<(String, String)>,
}

impl Sources {
    /// The sources of a running process: `ACCUNODE_CONFIG` (which must exist when
    /// set) or `./accunode.toml`, `./.env`, and the process environment.
    pub fn from_process() -> Self {
        let env: Vec<(String, String)> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        let file = match env.iter().find(|(k, _)| k == "ACCUNODE_CONFIG") {
            Some((_, path)) => Some(PathBuf::from(path)),
            None => Some(PathBuf::from("accunode.toml")).filter(|p| p.is_file()),
        };
        let dotenv = Some(PathBuf::from(".env")).filter(|p| p.is_file());
        Self { file, dotenv, env }
    }
}

/// One resolved key, for listings: secrets are shown redacted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedKey {
    pub name: &'static str,
    pub shown_value: Option<String>,
    pub origin: Origin,
    pub help: &'static str,
}

/// The merged raw values, before they are typed.
struct Layers {
    values: HashMap<&'static str, (String, Origin)>,
}

impl Layers {
    fn gather(sources: &Sources) -> Result<Self, ConfigError> {
        let mut values = HashMap::new();
        if let Some(path) = &sources.file {
            for (key, value) in read_toml(path)? {
                values.insert(key, (value, Origin::File(path.clone())));
            }
        }
        if let Some(path) = &sources.dotenv {
            for (key, value) in read_dotenv(path)? {
                if let Some(known) = known_key(&key) {
                    values.insert(known, (value, Origin::Dotenv(path.clone())));
                }
            }
        }
        for (key, value) in &sources.env {
            if let Some(known) = known_key(key) {
                values.insert(known, (value.clone(), Origin::Environment));
            }
        }
        let mut layers = Self { values };
        let app_env: AppEnv = layers.parse_with_default("APP_ENV", AppEnv::Development)?;
        for key in KEYS {
            let default = match key.default {
                Default::None => None,
                Default::Always(value) => Some(value),
                Default::ProductionOr {
                    production,
                    otherwise,
                } => {
                    if app_env == AppEnv::Production {
                        production
                    } else {
                        Some(otherwise)
                    }
                }
            };
            if let Some(default) = default {
                layers
                    .values
                    .entry(key.name)
                    .or_insert_with(|| (default.to_owned(), Origin::Default));
            }
        }
        Ok(layers)
    }

    fn raw(&self, key: &'static str) -> Option<&(String, Origin)> {
        self.values.get(key)
    }

    fn parse_with_default<T>(&self, key: &'static str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        match self.raw(key) {
            None => Ok(default),
            Some((value, origin)) => parse_value(key, value, origin),
        }
    }

    fn required<T>(&self, key: &'static str, app_env: AppEnv) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        match self.raw(key) {
            Some((value, origin)) => parse_value(key, value, origin),
            None => Err(ConfigError::Missing {
                key,
                context: if app_env == AppEnv::Production {
                    " in production".into()
                } else {
                    String::new()
                },
            }),
        }
    }

    fn secret(&self, key: &'static str, app_env: AppEnv) -> Result<SecretString, ConfigError> {
        let value: String = self.required(key, app_env)?;
        Ok(SecretString::from(value))
    }

    fn origin(&self, key: &'static str) -> Origin {
        self.raw(key)
            .map_or(Origin::Default, |(_, origin)| origin.clone())
    }
}

impl Settings {
    /// Loads settings from the process's own sources (see [`Sources::from_process`]).
    pub fn from_process() -> Result<Self, ConfigError> {
        Self::load(&Sources::from_process())
    }

    /// Layers the sources, types every value and applies the production checks.
    pub fn load(sources: &Sources) -> Result<Self, ConfigError> {
        let layers = Layers::gather(sources)?;
        let app_env: AppEnv = layers.required("APP_ENV", AppEnv::Development)?;
        let required = |key| layers.required::<String>(key, app_env);

        let settings = Settings {
            app_env,
            api: ApiSettings {
                host: layers.required("APP_HOST", app_env)?,
                port: layers.required("APP_PORT", app_env)?,
                cors_allowed_origins: origins(&layers)?,
                trust_forwarded_for: layers.required("TRUST_FORWARDED_FOR", app_env)?,
                auth: AuthSettings {
                    access_token_ttl: Duration::from_secs(in_range(
                        &layers,
                        "ACCESS_TOKEN_TTL_SECS",
                        app_env,
                        30..=86_400,
                    )?),
                    refresh_token_ttl: Duration::from_secs(in_range(
                        &layers,
                        "REFRESH_TOKEN_TTL_SECS",
                        app_env,
                        60..=31_536_000,
                    )?),
                    require_email_verification: layers
                        .required("REQUIRE_EMAIL_VERIFICATION", app_env)?,
                },
                rate_limits: RateLimitSettings {
                    enabled: layers.required("ENABLE_RATE_LIMITING", app_env)?,
                    per_user_per_minute: in_range(
                        &layers,
                        "RATE_LIMIT_PER_MINUTE",
                        app_env,
                        1..=1_000_000,
                    )?,
                    auth_per_ip_per_minute: in_range(
                        &layers,
                        "AUTH_RATE_LIMIT_PER_MINUTE",
                        app_env,
                        1..=1_000_000,
                    )?,
                },
                features: FeatureFlags {
                    quarterly_predictions: layers
                        .required("ENABLE_QUARTERLY_PREDICTIONS", app_env)?,
                    max_predictions_per_user: in_range(
                        &layers,
                        "MAX_PREDICTIONS_PER_USER",
                        app_env,
                        0..=100_000_000,
                    )?,
                },
                prediction_cache_ttl: Duration::from_secs(in_range(
                    &layers,
                    "PREDICTION_CACHE_TTL_SECS",
                    app_env,
                    1..=86_400,
                )?),
                cloudwatch_interval: match in_range(
                    &layers,
                    "CLOUDWATCH_METRICS_SECS",
                    app_env,
                    0..=3600,
                )? {
                    0 => None,
                    secs => Some(Duration::from_secs(secs)),
                },
                smtp_url: match layers.raw("SMTP_URL") {
                    None => None,
                    Some(_) => Some(checked_url(
                        &layers,
                        "SMTP_URL",
                        app_env,
                        &["smtp", "smtps"],
                    )?),
                },
                email_from: required("EMAIL_FROM")?,
            },
            database: DatabaseSettings {
                url: checked_url(
                    &layers,
                    "DATABASE_URL",
                    app_env,
                    &["postgres", "postgresql"],
                )?,
                pool_size: in_range(&layers, "DATABASE_POOL_SIZE", app_env, 1..=1000)?,
                connect_timeout: Duration::from_secs(in_range(
                    &layers,
                    "DATABASE_CONNECT_TIMEOUT_SECS",
                    app_env,
                    1..=600,
                )?),
            },
            redis: RedisSettings {
                url: checked_url(&layers, "REDIS_URL", app_env, &["redis", "rediss"])?,
            },
            jwt_secret_key: layers.secret("JWT_SECRET_KEY", app_env)?,
            models: ModelSettings {
                source: layers.required("ML_MODEL_PATH", app_env)?,
                annual: layers.required("ANNUAL_MODEL", app_env)?,
                quarterly: layers.required("QUARTERLY_MODEL", app_env)?,
                reload_interval: match in_range(&layers, "MODEL_RELOAD_SECS", app_env, 0..=86_400)?
                {
                    0 => None,
                    secs => Some(Duration::from_secs(secs)),
                },
            },
            aws: AwsSettings {
                endpoint_url: match layers.raw("AWS_ENDPOINT_URL") {
                    None => None,
                    Some((value, origin)) => {
                        let url: url::Url = parse_value("AWS_ENDPOINT_URL", value, origin)?;
                        Some(url.to_string().trim_end_matches('/').to_owned())
                    }
                },
                region: required("AWS_REGION")?,
            },
            log: LogSettings {
                format: layers.required("LOG_FORMAT", app_env)?,
                filter: {
                    let filter = required("LOG_LEVEL")?;
                    if let Err(problem) = tracing_subscriber::EnvFilter::try_new(&filter) {
                        return Err(ConfigError::Invalid {
                            key: "LOG_LEVEL",
                            origin: layers.origin("LOG_LEVEL"),
                            problem: problem.to_string(),
                        });
                    }
                    filter
                },
            },
            worker: WorkerSettings {
                health_port: layers.required("WORKER_HEALTH_PORT", app_env)?,
                heartbeat_interval: Duration::from_secs(in_range(
                    &layers,
                    "WORKER_HEARTBEAT_SECS",
                    app_env,
                    1..=300,
                )?),
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
                key: "JWT_SECRET_KEY",
                origin: layers.origin("JWT_SECRET_KEY"),
                problem,
            }),
            None => Ok(()),
        }
    }

    /// Every key with its effective value (secrets redacted) and its origin.
    pub fn describe(sources: &Sources) -> Result<Vec<ResolvedKey>, ConfigError> {
        let layers = Layers::gather(sources)?;
        Ok(KEYS
            .iter()
            .map(|key| {
                let raw = layers.raw(key.name);
                ResolvedKey {
                    name: key.name,
                    shown_value: raw.map(|(value, _)| {
                        if !key.secret {
                            value.clone()
                        } else if key.name.ends_with("_URL") {
                            redact_url(value)
                        } else {
                            "[redacted]".to_owned()
                        }
                    }),
                    origin: raw.map_or(Origin::Default, |(_, origin)| origin.clone()),
                    help: key.help,
                }
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

fn known_key(name: &str) -> Option<&'static str> {
    KEYS.iter()
        .map(|key| key.name)
        .find(|known| known.eq_ignore_ascii_case(name))
}

fn parse_value<T>(key: &'static str, value: &str, origin: &Origin) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    value
        .trim()
        .parse()
        .map_err(|error: T::Err| ConfigError::Invalid {
            key,
            origin: origin.clone(),
            problem: format!("{error} (got {value:?})"),
        })
}

fn in_range<T>(
    layers: &Layers,
    key: &'static str,
    app_env: AppEnv,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, ConfigError>
where
    T: FromStr + PartialOrd + fmt::Display + Copy,
    T::Err: fmt::Display,
{
    let value: T = layers.required(key, app_env)?;
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(ConfigError::Invalid {
            key,
            origin: layers.origin(key),
            problem: format!(
                "must be between {} and {}, got {value}",
                range.start(),
                range.end()
            ),
        })
    }
}

/// `CORS_ALLOWED_ORIGINS`: `*`, or comma-separated `scheme://host[:port]` origins.
fn origins(layers: &Layers) -> Result<Vec<String>, ConfigError> {
    let Some((value, origin)) = layers.raw("CORS_ALLOWED_ORIGINS") else {
        return Ok(Vec::new());
    };
    let mut origins = Vec::new();
    for item in value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
    {
        if item != "*" {
            let url = url::Url::parse(item).map_err(|error| ConfigError::Invalid {
                key: "CORS_ALLOWED_ORIGINS",
                origin: origin.clone(),
                problem: format!("{item:?} is not an origin: {error}"),
            })?;
            if url.origin().ascii_serialization() != item.trim_end_matches('/') {
                return Err(ConfigError::Invalid {
                    key: "CORS_ALLOWED_ORIGINS",
                    origin: origin.clone(),
                    problem: format!("{item:?} is not an origin (scheme://host[:port], no path)"),
                });
            }
        }
        origins.push(item.trim_end_matches('/').to_owned());
    }
    Ok(origins)
}

/// A secret URL whose scheme is checked, so a typo fails at start-up, not at first use.
fn checked_url(
    layers: &Layers,
    key: &'static str,
    app_env: AppEnv,
    schemes: &[&str],
) -> Result<SecretString, ConfigError> {
    let secret = layers.secret(key, app_env)?;
    let invalid = |problem: String| ConfigError::Invalid {
        key,
        origin: layers.origin(key),
        problem,
    };
    // The parse error never contains the URL, so it cannot leak a password.
    let url = url::Url::parse(secret.expose_secret())
        .map_err(|error| invalid(format!("not a URL: {error}")))?;
    if !schemes.contains(&url.scheme()) {
        return Err(invalid(format!(
            "scheme must be {}, got {}",
            schemes.join(" or "),
            url.scheme()
        )));
    }
    Ok(secret)
}

fn read_toml(path: &Path) -> Result<Vec<(&'static str, String)>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Unreadable {
        path: path.to_owned(),
        source,
    })?;
    let table: toml::Table =
        text.parse()
            .map_err(|error: toml::de::Error| ConfigError::Malformed {
                path: path.to_owned(),
                format: "TOML",
                message: error.message().to_owned(),
            })?;
    let mut pairs = Vec::with_capacity(table.len());
    for (key, value) in table {
        let Some(known) = known_key(&key) else {
            return Err(ConfigError::UnknownKey {
                path: path.to_owned(),
                key,
                known: KEYS
                    .iter()
                    .map(|k| k.name.to_ascii_lowercase())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        };
        let text = match value {
            toml::Value::String(text) => text,
            toml::Value::Integer(number) => number.to_string(),
            toml::Value::Float(number) => number.to_string(),
            toml::Value::Boolean(flag) => flag.to_string(),
            other => {
                return Err(ConfigError::Malformed {
                    path: path.to_owned(),
                    format: "TOML",
                    message: format!(
                        "`{key}` must be a string, number or boolean, not a {}",
                        other.type_str()
                    ),
                });
            }
        };
        pairs.push((known, text));
    }
    Ok(pairs)
}

/// Reads `KEY=VALUE` lines: `#` comments, optional `export `, optional quotes.
fn read_dotenv(path: &Path) -> Result<Vec<(String, String)>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Unreadable {
        path: path.to_owned(),
        source,
    })?;
    let mut pairs = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            return Err(ConfigError::Malformed {
                path: path.to_owned(),
                format: ".env",
                message: format!("line {} is not KEY=VALUE", index + 1),
            });
        };
        let value = value.trim();
        let unquoted = ['"', '\'']
            .iter()
            .find_map(|quote| {
                value
                    .strip_prefix(*quote)
                    .and_then(|rest| rest.strip_suffix(*quote))
            })
            .unwrap_or(value);
        pairs.push((key.trim().to_owned(), unquoted.to_owned()));
    }
    Ok(pairs)
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
}
