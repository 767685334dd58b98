//! The Redis connection shared by every task of a process.
//!
//! A [`ConnectionManager`] multiplexes one connection and reconnects by itself
//! after Redis comes back, so a Redis restart degrades health instead of
//! requiring a process restart.
//!
//! `rediss://` connects over TLS and verifies the server's certificate against
//! the system's roots (ElastiCache's are public), or against the CA file named
//! by the URL's `ssl_ca_certs` query parameter (redis-py's spelling), for a
//! server with a private CA such as the local one of `scripts/test`.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use secrecy::ExposeSecret;

use crate::config::{RedisSettings, redact_url};

/// The query parameter of a `rediss://` URL naming the CA file (PEM) that
/// signed the server's certificate.
pub const CA_FILE_PARAMETER: &str = "ssl_ca_certs";

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("invalid REDIS_URL")]
    Url(#[source] redis::RedisError),
    #[error("cannot read the CA file {path} named by REDIS_URL's ssl_ca_certs")]
    CaFile {
        path: String,
        source: std::io::Error,
    },
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
    let client = client(settings.url.expose_secret())?;
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

/// A client for `url`: `redis://`, or `rediss://` with the server's
/// certificate verified (see the module's documentation).
pub fn client(url: &str) -> Result<redis::Client, CacheError> {
    // The redis crate builds its TLS configuration with rustls' process-wide
    // provider, which rustls cannot choose alone when the build has both of
    // its providers (the AWS SDK brings aws-lc-rs, sqlx ring). Installing it
    // again fails harmlessly.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let ca_file = url::Url::parse(url).ok().and_then(|parsed| {
        parsed
            .query_pairs()
            .find(|(name, _)| name == CA_FILE_PARAMETER)
            .map(|(_, path)| path.into_owned())
    });
    match ca_file {
        None => redis::Client::open(url).map_err(CacheError::Url),
        Some(path) => {
            let root_cert =
                std::fs::read(&path).map_err(|source| CacheError::CaFile { path, source })?;
            redis::Client::build_with_tls(
                url,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(root_cert),
                },
            )
            .map_err(CacheError::Url)
        }
    }
}
