//! Encryption in transit to the dependencies: the PostgreSQL and Redis that
//! `scripts/test` starts speak TLS with a certificate of a local CA, and the
//! URLs the binaries get ask for it to be verified (`sslmode=verify-full` with
//! `sslrootcert`; `rediss://` with a password and `ssl_ca_certs`). Each test
//! connects as the API and the worker do, then changes one thing (another CA,
//! no CA, no password, no TLS) and sees the connection refused.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use accunode_core::config::{DatabaseSettings, RedisSettings};
use accunode_core::{cache, db};
use accunode_testkit::{TestDatabase, redis_url};
use secrecy::SecretString;

/// `url` with the query parameter `name` set to `value`, or removed (`None`).
fn with_parameter(url: &str, name: &str, value: Option<&str>) -> String {
    let mut url = url::Url::parse(url).unwrap();
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(key, _)| key != name)
        .map(|(key, value)| (key.into_owned(), value.into_owned()))
        .collect();
    url.set_query(None);
    let mut pairs = url.query_pairs_mut();
    pairs.extend_pairs(kept);
    if let Some(value) = value {
        pairs.append_pair(name, value);
    }
    drop(pairs);
    url.to_string()
}

fn parameter(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// A CA of its own that signed nothing the servers present.
fn unrelated_ca(folder: &Path) -> PathBuf {
    let certificate = folder.join("unrelated-ca.pem");
    let made = Command::new("openssl")
        .args(["req", "-x509", "-new", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:P-256", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=Unrelated CA", "-keyout"])
        .arg(folder.join("unrelated-ca.key"))
        .arg("-out")
        .arg(&certificate)
        .output()
        .expect("run openssl");
    assert!(made.status.success(), "openssl made no CA");
    certificate
}

async fn database_accepts(url: &str) -> Result<bool, db::DbError> {
    let pool = db::connect(&DatabaseSettings {
        url: SecretString::from(url.to_owned()),
        pool_size: 1,
        connect_timeout: Duration::from_millis(500),
    })
    .await?;
    let encrypted: bool =
        sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(&pool)
            .await
            .expect("read the session's TLS state");
    Ok(encrypted)
}

#[tokio::test]
async fn postgres_is_reached_over_tls_with_its_certificate_verified() {
    let database = TestDatabase::create().await;
    assert_eq!(
        parameter(&database.url, "sslmode").as_deref(),
        Some("verify-full"),
        "TEST_DATABASE_URL asks for a verified certificate (scripts/test sets it)"
    );
    assert!(
        database_accepts(&database.url).await.unwrap(),
        "the session is encrypted"
    );

    let folder = tempfile::tempdir().unwrap();
    let other_ca = unrelated_ca(folder.path());
    let refused = [
        with_parameter(&database.url, "sslrootcert", other_ca.to_str()),
        // Without a CA file only the public roots are trusted, not a private CA.
        with_parameter(&database.url, "sslrootcert", None),
    ];
    for url in refused {
        let error = database_accepts(&url)
            .await
            .expect_err("a certificate the client cannot verify is refused");
        assert!(matches!(error, db::DbError::Unreachable { .. }), "{error}");
    }
}

async fn redis_answers(url: &str) -> Result<(), String> {
    let mut connection = cache::connect(&RedisSettings {
        url: SecretString::from(url.to_owned()),
    })
    .await
    .map_err(|error| format!("{error:?}"))?;
    redis::cmd("PING")
        .query_async::<String>(&mut connection)
        .await
        .map(|_| ())
        .map_err(|error| format!("{error:?}"))
}

#[tokio::test]
async fn redis_is_reached_over_tls_with_a_password_and_its_certificate_verified() {
    let url = redis_url();
    let parsed = url::Url::parse(&url).unwrap();
    assert_eq!(
        parsed.scheme(),
        "rediss",
        "TEST_REDIS_URL is rediss:// (scripts/test sets it)"
    );
    assert!(parsed.password().is_some(), "TEST_REDIS_URL has a password");
    redis_answers(&url).await.unwrap();

    let folder = tempfile::tempdir().unwrap();
    let other_ca = unrelated_ca(folder.path());
    let mut without_password = parsed.clone();
    without_password.set_password(None).unwrap();
    let mut without_tls = parsed.clone();
    without_tls.set_scheme("redis").unwrap();
    let refused = [
        (
            "a CA that did not sign the certificate",
            with_parameter(&url, cache::CA_FILE_PARAMETER, other_ca.to_str()),
        ),
        (
            "the system's roots only",
            with_parameter(&url, cache::CA_FILE_PARAMETER, None),
        ),
        ("no password", without_password.to_string()),
        (
            "no TLS",
            with_parameter(without_tls.as_str(), cache::CA_FILE_PARAMETER, None),
        ),
    ];
    for (what, url) in refused {
        let error = redis_answers(&url).await.expect_err(what);
        assert!(
            !error.contains(parsed.password().unwrap()),
            "{what}: the error shows the password"
        );
    }
}
