//! The Redis connection shared by every task of a process.
//!
//! A [`ConnectionManager`] multiplexes one connection and reconnects by itself
//! after Redis comes back, so a Redis restart degrades health instead of
//! requiring a process restart.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use secrecy::ExposeSecret;

use crate::config::{RedisSettings, redact_url};

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("invalid REDIS_URL")]
    Url(#[source] redis::RedisError),
    #[error("Redis at {url} is not reachable")]
    Unreachable {
        url: String,
        source: redis::RedisError,
    },
}

/// Opens the managed connection; fails when Redis does not answer now.
pub async fn connect(settings: &RedisSettings) -> Result<ConnectionManager, CacheError> {
    connect_with_response_timeout(settings, Duration::from_secs(2)).await
}

/// [`connect`] with a longer wait for answers: a connection of its own for
/// blocking reads (`XREADGROUP … BLOCK`), which would hold up every other
/// command on a shared one.
pub async fn connect_with_response_timeout(
    settings: &RedisSettings,
    response_timeout: Duration,
) -> Result<ConnectionManager, CacheError> {
    let client = redis::Client::open(settings.url.expose_secret()).map_err(CacheError::Url)?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(response_timeout))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_secs(1));
    ConnectionManager::new_with_config(client, config)
        .await
        .map_err(|source| CacheError::Unreachable {
            url: redact_url(settings.url.expose_secret()),
            source,
        })
}
