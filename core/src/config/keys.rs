//! Every configuration key, declared once.
//!
//! A declaration gives the key's name, format (its type), default, range,
//! which binaries read it and what it means; whether it is a secret follows
//! from its format. [`declare_keys!`] turns each one into a typed `const`
//! [`Key`], which the loader passes to
//! [`Layers::get`](super::sources::Layers::get) (so it cannot look up an
//! undeclared name), and lists them all in [`ALL`], from which the sources
//! learn the known names, defaults are filled in, `config` lists the keys and
//! the README's configuration table is checked.
//!
//! Adding a key: one declaration here and one line in
//! [`Settings::load`](super::Settings::load) putting its value into `Settings`.

use std::fmt;
use std::net::IpAddr;

use super::formats::{
    Bounds, EndpointUrl, Format, LogFilter, Origins, PostgresUrl, RedisUrl, Seconds, SecondsOrOff,
    Secrecy, SecretText, SmtpUrl,
};
use super::{AppEnv, DEVELOPMENT_JWT_SECRET, LogFormat, ModelRef, ModelSource, UploadLocation};
use DefaultValue::{Always, ProductionOr, Unset};

/// A key's default, which may depend on the deployment.
#[derive(Debug, Clone, Copy)]
pub(super) enum DefaultValue {
    /// No default: the key is optional, or must be set.
    Unset,
    Always(&'static str),
    /// One default in production (`None`: none there), another elsewhere.
    ProductionOr {
        production: Option<&'static str>,
        otherwise: &'static str,
    },
}

impl DefaultValue {
    pub(super) fn for_deployment(self, app_env: AppEnv) -> Option<&'static str> {
        match self {
            Unset => None,
            Always(value) => Some(value),
            ProductionOr {
                production,
                otherwise,
            } => {
                if app_env == AppEnv::Production {
                    production
                } else {
                    Some(otherwise)
                }
            }
        }
    }
}

/// Which binaries use a key's value (both load and check every key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadBy {
    /// `accunode-api`.
    Api,
    /// `accunode-worker`.
    Worker,
    Both,
}

impl fmt::Display for ReadBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Api => "api",
            Self::Worker => "worker",
            Self::Both => "api, worker",
        })
    }
}

/// One configuration key whose value is read in format `F`.
pub(super) struct Key<F: Format> {
    pub(super) name: &'static str,
    pub(super) default: DefaultValue,
    /// Values outside it are refused, naming the key.
    pub(super) range: Option<F::Range>,
    pub(super) read_by: ReadBy,
    pub(super) help: &'static str,
}

/// What every key tells about itself whatever its format, so that keys of
/// different formats can sit in one list.
pub(super) trait Declared {
    fn name(&self) -> &'static str;
    fn default_value(&self) -> DefaultValue;
    fn type_name(&self) -> &'static str;
    fn range(&self) -> Option<String>;
    fn secrecy(&self) -> Secrecy;
    fn read_by(&self) -> ReadBy;
    fn help(&self) -> &'static str;
}

impl<F: Format> Declared for Key<F> {
    fn name(&self) -> &'static str {
        self.name
    }
    fn default_value(&self) -> DefaultValue {
        self.default
    }
    fn type_name(&self) -> &'static str {
        F::TYPE_NAME
    }
    fn range(&self) -> Option<String> {
        self.range.as_ref().map(ToString::to_string)
    }
    fn secrecy(&self) -> Secrecy {
        F::SECRECY
    }
    fn read_by(&self) -> ReadBy {
        self.read_by
    }
    fn help(&self) -> &'static str {
        self.help
    }
}

/// Declares each key as a `const` [`Key`] named as the key itself, and [`ALL`].
macro_rules! declare_keys {
    (@range) => { None };
    (@range $low:literal, $high:literal) => { Some(Bounds { low: $low, high: $high }) };
    ($(
        $name:ident: $format:ty {
            default: $default:expr,
            $(range: $low:literal..=$high:literal,)?
            read_by: $read_by:ident,
            help: $help:literal $(,)?
        }
    )+) => {
        $(
            #[doc = $help]
            pub(super) const $name: Key<$format> = Key {
                name: stringify!($name),
                default: $default,
                range: declare_keys!(@range $($low, $high)?),
                read_by: ReadBy::$read_by,
                help: $help,
            };
        )+

        /// Every key in declaration order, the order of `config` and of the README's table.
        pub(super) const ALL: &[&dyn Declared] = &[$(&$name),+];
    };
}

declare_keys! {
    APP_ENV: AppEnv {
        // Every other default depends on it, so its own default cannot.
        default: Always("development"),
        read_by: Both,
        help: "development, test or production",
    }
    APP_HOST: IpAddr {
        default: ProductionOr { production: Some("0.0.0.0"), otherwise: "127.0.0.1" },
        read_by: Api,
        help: "address the API listens on",
    }
    APP_PORT: u16 {
        default: Always("8000"),
        read_by: Api,
        help: "port the API listens on (0: any free port)",
    }
    OPS_PORT: u16 {
        default: Always("8002"),
        read_by: Api,
        help: "port of the API's operations listener on 127.0.0.1: /metrics, and /health with each dependency's error (0: any free port)",
    }
    CORS_ALLOWED_ORIGINS: Origins {
        default: Always(""),
        read_by: Api,
        help: "comma-separated origins allowed to call the API from browsers",
    }
    TRUST_FORWARDED_FOR: bool {
        default: Always("false"),
        read_by: Api,
        help: "take the client address from X-Forwarded-For (only behind a load balancer)",
    }
    ACCESS_TOKEN_TTL_SECS: Seconds {
        default: Always("1800"),
        range: 30..=86_400,
        read_by: Api,
        help: "lifetime of an access token",
    }
    REFRESH_TOKEN_TTL_SECS: Seconds {
        default: Always("2592000"),
        range: 60..=31_536_000,
        read_by: Api,
        help: "lifetime of a sign-in session (its refresh tokens)",
    }
    PASSWORD_RESET_TOKEN_TTL_SECS: Seconds {
        default: Always("1800"),
        range: 300..=86_400,
        read_by: Api,
        help: "lifetime of a mailed password reset token",
    }
    PASSWORD_HASHING_SLOTS: u32 {
        default: Unset,
        range: 1..=256,
        read_by: Api,
        help: "password hashes computed at once; a request that waits 1 s for a slot answers 503 (unset: one per core)",
    }
    REQUIRE_EMAIL_VERIFICATION: bool {
        default: Always("true"),
        read_by: Api,
        help: "refuse sign-in until the email address is verified",
    }
    ENABLE_RATE_LIMITING: bool {
        default: Always("true"),
        read_by: Api,
        help: "count requests per user and client address in Redis",
    }
    RATE_LIMIT_PER_MINUTE: u32 {
        default: Always("100"),
        range: 1..=1_000_000,
        read_by: Api,
        help: "requests per minute per user",
    }
    AUTH_RATE_LIMIT_PER_MINUTE: u32 {
        default: Always("20"),
        range: 1..=1_000_000,
        read_by: Api,
        help: "requests per minute per client address to /api/v1/auth",
    }
    LOGIN_RATE_LIMIT_PER_EMAIL: u32 {
        default: Always("10"),
        range: 1..=1_000_000,
        read_by: Api,
        help: "failed sign-ins per email address and client address per 15 minutes (ten times as many from all client addresses)",
    }
    REFRESH_RATE_LIMIT_PER_SESSION: u32 {
        default: Always("10"),
        range: 1..=1_000_000,
        read_by: Api,
        help: "token refreshes per sign-in session per 15 minutes",
    }
    ENABLE_QUARTERLY_PREDICTIONS: bool {
        default: Always("true"),
        read_by: Api,
        help: "serve the quarterly prediction routes",
    }
    MAX_PREDICTIONS_PER_USER: i64 {
        default: Always("1000"),
        range: 0..=100_000_000,
        read_by: Api,
        help: "most predictions one user may create one at a time (bulk jobs are bounded by BULK_MAX_ROWS)",
    }
    ENABLE_BULK_UPLOAD: bool {
        default: Always("true"),
        read_by: Api,
        help: "accept bulk uploads (POST /api/v1/predictions/bulk-upload)",
    }
    BULK_UPLOAD_PATH: UploadLocation {
        default: Unset,
        read_by: Both,
        help: "where uploaded files are kept, s3://bucket/prefix (the stack's bucket, prefix uploads); unset: bulk upload answers 503",
    }
    BULK_UPLOAD_MAX_SIZE_MB: u32 {
        default: Always("50"),
        range: 1..=2048,
        read_by: Api,
        help: "largest bulk upload file, in MB",
    }
    BULK_MAX_ROWS: u32 {
        default: Always("1000000"),
        range: 1..=10_000_000,
        read_by: Api,
        help: "most data rows in one bulk upload",
    }
    BULK_UPLOADS_PER_HOUR: u32 {
        default: Always("20"),
        range: 1..=1_000_000,
        read_by: Api,
        help: "bulk uploads per hour per user",
    }
    BULK_CHUNK_ROWS: u32 {
        default: Always("5000"),
        range: 100..=1_000_000,
        read_by: Api,
        help: "rows per chunk, the unit of work a worker takes from the queue",
    }
    PREDICTION_CACHE_TTL_SECS: Seconds {
        default: Always("3600"),
        range: 1..=86_400,
        read_by: Api,
        help: "how long a read prediction stays cached in Redis",
    }
    SMTP_URL: SmtpUrl {
        default: Unset,
        read_by: Api,
        help: "mail server, smtp://user:pass@host:587?tls=required or smtps://…:465; unset: mail stays in the email_outbox table",
    }
    EMAIL_FROM: String {
        default: Always("AccuNode <no-reply@accunode.local>"),
        read_by: Api,
        help: "sender of verification mail",
    }
    CLOUDWATCH_METRICS_SECS: SecondsOrOff {
        default: Always("0"),
        range: 0..=3600,
        read_by: Both,
        help: "publish the API's (AccuNode/API) and the worker's (AccuNode/Workers) CloudWatch metrics this often (0: off)",
    }
    DATABASE_URL: PostgresUrl {
        default: ProductionOr {
            production: None,
            otherwise: "postgres://accunode@127.0.0.1:5432/accunode",
        },
        read_by: Both,
        help: "PostgreSQL connection URL; ?sslmode=verify-full&sslrootcert=FILE: TLS, the server's certificate verified against that CA file",
    }
    DATABASE_POOL_SIZE: u32 {
        default: Always("100"),
        range: 1..=1000,
        read_by: Both,
        help: "most connections in the pool",
    }
    DATABASE_CONNECT_TIMEOUT_SECS: Seconds {
        default: Always("10"),
        range: 1..=600,
        read_by: Both,
        help: "how long start-up waits for PostgreSQL",
    }
    REDIS_URL: RedisUrl {
        default: ProductionOr { production: None, otherwise: "redis://127.0.0.1:6379" },
        read_by: Both,
        help: "Redis connection URL; rediss://:password@host:port: TLS, the server's certificate verified against the system's roots or, with ?ssl_ca_certs=FILE, that CA file",
    }
    JWT_SECRET_KEY: SecretText {
        default: ProductionOr { production: None, otherwise: DEVELOPMENT_JWT_SECRET },
        read_by: Api,
        help: "HS256 signing key (production: at least 32 characters)",
    }
    ML_MODEL_PATH: ModelSource {
        default: Always("models"),
        read_by: Both,
        help: "folder of model bundles, or the model bucket as s3://bucket/prefix",
    }
    ANNUAL_MODEL: ModelRef {
        default: Always("accunode-v1-annual"),
        read_by: Api,
        help: "bundle for annual predictions: id, or id@version (S3 without version: the latest)",
    }
    QUARTERLY_MODEL: ModelRef {
        default: Always("accunode-v1-quarterly"),
        read_by: Api,
        help: "bundle for quarterly predictions: id, or id@version",
    }
    MODEL_RELOAD_SECS: SecondsOrOff {
        default: Always("0"),
        range: 0..=86_400,
        read_by: Api,
        help: "how often to look for new bundles (0: only on SIGHUP)",
    }
    AWS_ENDPOINT_URL: EndpointUrl {
        default: Unset,
        read_by: Both,
        help: "local AWS endpoint (moto); unset for AWS itself",
    }
    AWS_REGION: String {
        default: Always("us-east-1"),
        read_by: Both,
        help: "AWS region",
    }
    LOG_FORMAT: LogFormat {
        default: ProductionOr { production: Some("json"), otherwise: "text" },
        read_by: Both,
        help: "json or text",
    }
    LOG_LEVEL: LogFilter {
        default: Always("info"),
        read_by: Both,
        help: "tracing filter, e.g. info,sqlx=warn",
    }
    WORKER_HEALTH_PORT: u16 {
        default: Always("8001"),
        read_by: Worker,
        help: "port of the worker's /health and /metrics, on 127.0.0.1 (0: any free port)",
    }
    WORKER_HEARTBEAT_SECS: Seconds {
        default: Always("10"),
        range: 1..=300,
        read_by: Worker,
        help: "how often the worker checks its dependencies",
    }
    WORKER_CONCURRENCY: u32 {
        default: Always("4"),
        range: 1..=64,
        read_by: Worker,
        help: "chunks one worker process scores at once",
    }
    WORKER_PREFETCH: u32 {
        default: Always("1"),
        range: 1..=16,
        read_by: Worker,
        help: "chunks each of the worker's slots takes from the queue at a time",
    }
    WORKER_CHUNK_TIME_LIMIT_SECS: Seconds {
        default: Always("300"),
        range: 5..=3600,
        read_by: Worker,
        help: "a chunk running longer is abandoned; a chunk idle this long in another worker's hands is claimed",
    }
    WORKER_MAX_DELIVERIES: u32 {
        default: Always("5"),
        range: 1..=100,
        read_by: Worker,
        help: "deliveries of one chunk before it goes to the dead-letter stream and its job fails",
    }
    STACK_NAME: String {
        default: Unset,
        read_by: Both,
        help: "the stack this server belongs to: the Stack dimension of its CloudWatch metrics",
    }
}

/// The declared key spelled `name` in any case (the TOML file uses lower case).
pub(super) fn known_key(name: &str) -> Option<&'static str> {
    ALL.iter()
        .map(|key| key.name())
        .find(|known| known.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    const README: &str = include_str!("../../../README.md");
    const TABLE_HEADER: &str = "| key | type | default | range | secret | read by | meaning |";

    /// A default as the README shows it.
    fn default_cell(default: DefaultValue) -> String {
        let shown = |value: &str| {
            if value.is_empty() {
                "empty".to_owned()
            } else {
                format!("`{value}`")
            }
        };
        match default {
            Unset => "none".to_owned(),
            Always(value) => shown(value),
            ProductionOr {
                production,
                otherwise,
            } => format!(
                "{}; production: {}",
                shown(otherwise),
                production.map_or_else(|| "none".to_owned(), shown)
            ),
        }
    }

    /// The cells of a key's README row, in column order.
    fn expected_row(key: &dyn Declared) -> Vec<String> {
        let secret = if key.secrecy() == Secrecy::Public {
            "no"
        } else {
            "yes"
        };
        let cells = vec![
            format!("`{}`", key.name()),
            key.type_name().to_owned(),
            default_cell(key.default_value()),
            key.range().unwrap_or_default(),
            secret.to_owned(),
            key.read_by().to_string(),
            key.help().to_owned(),
        ];
        for cell in &cells {
            assert!(!cell.contains('|'), "{cell:?} would split its table cell");
        }
        cells
    }

    /// The table the README's `## Configuration` section must hold, to paste there.
    fn expected_table() -> String {
        let mut table = format!("{TABLE_HEADER}\n|{}\n", "---|".repeat(7));
        for key in ALL {
            table.push_str(&format!("| {} |\n", expected_row(*key).join(" | ")));
        }
        table
    }

    /// The rows of the table in the README's `## Configuration` section, split into cells.
    fn readme_rows() -> Vec<Vec<String>> {
        let section = README
            .split("\n## ")
            .find(|section| section.starts_with("Configuration\n"))
            .expect("README.md has a `## Configuration` section");
        let mut lines = section.lines().skip_while(|line| *line != TABLE_HEADER);
        assert!(
            lines.next().is_some(),
            "no table headed {TABLE_HEADER:?} in README.md's Configuration section; expected:\n{}",
            expected_table()
        );
        lines
            .skip(1) // The separator line.
            .take_while(|line| line.starts_with('|'))
            .map(|line| {
                line.trim_matches('|')
                    .split('|')
                    .map(|cell| cell.trim().to_owned())
                    .collect()
            })
            .collect()
    }

    #[test]
    fn the_default_of_app_env_is_the_same_in_every_deployment() {
        // The loader needs it to find out the deployment.
        assert!(
            matches!(APP_ENV.default, Always(_)),
            "{:?}",
            APP_ENV.default
        );
    }

    #[test]
    fn the_readme_table_shows_every_declared_key_as_declared() {
        let rows = readme_rows();
        let listed: Vec<&str> = rows.iter().map(|row| row[0].trim_matches('`')).collect();
        let declared: Vec<&str> = ALL.iter().map(|key| key.name()).collect();
        let undocumented: Vec<_> = declared.iter().filter(|k| !listed.contains(k)).collect();
        let undeclared: Vec<_> = listed.iter().filter(|k| !declared.contains(k)).collect();
        assert!(
            undocumented.is_empty() && undeclared.is_empty(),
            "declared but not in README.md: {undocumented:?}; in README.md but not declared: \
             {undeclared:?}; the table should read:\n{}",
            expected_table()
        );
        assert_eq!(
            listed.len(),
            declared.len(),
            "README.md lists a key twice; the table should read:\n{}",
            expected_table()
        );

        let columns = ["type", "default", "range", "secret", "read by", "meaning"];
        let mut disagreements = Vec::new();
        for (row, key) in rows.iter().zip(ALL) {
            let expected = expected_row(*key);
            if row.len() != expected.len() {
                disagreements.push(format!(
                    "{} has {} cells, not {}",
                    row[0],
                    row.len(),
                    expected.len()
                ));
                continue;
            }
            if row[0] != expected[0] {
                disagreements.push(format!(
                    "{} is listed where {} is declared",
                    row[0],
                    key.name()
                ));
                continue;
            }
            for (column, (shown, declared)) in
                columns.iter().zip(row[1..].iter().zip(&expected[1..]))
            {
                if shown != declared {
                    disagreements.push(format!(
                        "{} {column}: README.md says {shown:?}, the declaration {declared:?}",
                        key.name()
                    ));
                }
            }
        }
        assert!(
            disagreements.is_empty(),
            "{}\nthe table should read:\n{}",
            disagreements.join("\n"),
            expected_table()
        );
    }
}
