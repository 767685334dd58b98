//! Everything a server process depends on, connected in the order start-up needs.

use anyhow::Context;
use redis::aio::ConnectionManager;
use sqlx::PgPool;

use crate::config::Settings;
use crate::health::{self, HealthReport};
use crate::{cache, db};

/// The PostgreSQL pool and the Redis connection of one process; cheap to clone.
#[derive(Clone)]
pub struct Dependencies {
    pub pool: PgPool,
    pub redis: ConnectionManager,
}

impl Dependencies {
    /// Connects to PostgreSQL (waiting up to its connect timeout), applies the
    /// migrations, then connects to Redis.
    pub async fn connect(settings: &Settings) -> anyhow::Result<Self> {
        let pool = db::connect(&settings.database)
            .await
            .context("connecting to PostgreSQL")?;
        db::migrate(&pool).await.context("migrating the database")?;
        let redis = cache::connect(&settings.redis)
            .await
            .context("connecting to Redis")?;
        Ok(Self { pool, redis })
    }

    /// Probes both dependencies (see [`health::check`]).
    pub async fn health(&self) -> HealthReport {
        health::check(&self.pool, &self.redis).await
    }
}
