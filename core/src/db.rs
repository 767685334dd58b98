//! The PostgreSQL pool and the schema migrations embedded from `migrations/`.

use std::time::{Duration, Instant};

use secrecy::ExposeSecret;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};

use crate::config::{DatabaseSettings, redact_url};

/// The migrations of `migrations/`, compiled into every binary that applies them.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("invalid DATABASE_URL")]
    Url(#[source] sqlx::Error),
    #[error("PostgreSQL at {url} did not accept a connection within {waited:.1?}")]
    Unreachable {
        url: String,
        waited: Duration,
        source: sqlx::Error,
    },
    #[error("applying migrations failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Connects, retrying until `connect_timeout` so that a database still starting
/// (or a container still being scheduled) does not fail the process at once.
pub async fn connect(settings: &DatabaseSettings) -> Result<PgPool, DbError> {
    let options: PgConnectOptions = settings
        .url
        .expose_secret()
        .parse::<PgConnectOptions>()
        .map_err(DbError::Url)?
        .log_statements(tracing::log::LevelFilter::Debug)
        .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_millis(500));
    let pool_options = || {
        PgPoolOptions::new()
            .max_connections(settings.pool_size)
            .acquire_timeout(Duration::from_secs(5))
    };
    let started = Instant::now();
    let mut delay = Duration::from_millis(100);
    loop {
        match pool_options().connect_with(options.clone()).await {
            Ok(pool) => return Ok(pool),
            Err(error) if started.elapsed() + delay < settings.connect_timeout => {
                tracing::warn!(%error, retry_in = ?delay, "PostgreSQL not reachable yet");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            Err(source) => {
                return Err(DbError::Unreachable {
                    url: redact_url(settings.url.expose_secret()),
                    waited: started.elapsed(),
                    source,
                });
            }
        }
    }
}

/// Applies pending migrations. Safe to run from several processes at once:
/// sqlx serialises them with an advisory lock, and applied ones are skipped.
/// Migrations this binary does not know are a newer release's, applied during
/// a deploy while this one still serves: migrations are expand-then-contract
/// (`tests/tests/e2e/migrations.rs`), so it starts on that schema rather than
/// refusing to (sqlx's default), which would break every restart and rollback.
pub async fn migrate(pool: &PgPool) -> Result<(), DbError> {
    let mut migrator = sqlx::migrate::Migrator {
        migrations: MIGRATOR.migrations.clone(),
        ..sqlx::migrate::Migrator::DEFAULT
    };
    migrator.set_ignore_missing(true);
    migrator.run(pool).await?;
    Ok(())
}
