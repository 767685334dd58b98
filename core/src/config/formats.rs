//! How each kind of configuration value is written and read.
//!
//! A key's format (the type parameter of its [`Key`](super::keys::Key)) turns
//! the key's text into the typed value [`Settings`](super::Settings) holds,
//! checks the key's declared range, names the type for the README and the
//! `config` listing, and says whether the value is a secret. Formats of values
//! that have no order use [`NoRange`], so a key of such a format cannot declare
//! a range at all.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use secrecy::SecretString;

use super::{AppEnv, LogFormat, ModelRef, ModelSource, UploadLocation, redact_url};

/// What a format reads and how it is shown.
pub(super) trait Format {
    /// The type as operators write it, for the README and the `config` listing.
    const TYPE_NAME: &'static str;
    /// Whether and how the `config` listing hides the value.
    const SECRECY: Secrecy = Secrecy::Public;
    /// What the loader gets.
    type Value;
    /// The ranges a key of this format may declare.
    type Range: fmt::Display;

    /// Reads a key's text (as written, surrounding spaces included) and checks
    /// it against the key's range. The problem is one line without the key's
    /// name (the caller adds it) and never contains a secret.
    fn parse(raw: &str, range: Option<&Self::Range>) -> Result<Self::Value, String>;
}

/// How the `config` listing shows a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Secrecy {
    Public,
    /// Shown as `[redacted]`.
    Secret,
    /// A URL that may hold a password: shown with the password replaced.
    SecretUrl,
}

impl Secrecy {
    pub(super) fn show(self, raw: &str) -> String {
        match self {
            Self::Public => raw.to_owned(),
            Self::Secret => "[redacted]".to_owned(),
            Self::SecretUrl => redact_url(raw),
        }
    }
}

/// The inclusive range a numeric key accepts.
#[derive(Debug, Clone, Copy)]
pub(super) struct Bounds<N> {
    pub(super) low: N,
    pub(super) high: N,
}

impl<N: fmt::Display> fmt::Display for Bounds<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}–{}", self.low, self.high)
    }
}

/// The range of formats without an order. It has no values, so a key of such
/// a format can only declare no range.
#[derive(Debug, Clone, Copy)]
pub(super) enum NoRange {}

impl fmt::Display for NoRange {
    fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {}
    }
}

/// Parses the trimmed text with the type's `FromStr`; the problem quotes the
/// text as given, so a stray space is visible.
fn parse_text<T>(raw: &str) -> Result<T, String>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    raw.trim()
        .parse()
        .map_err(|error: T::Err| format!("{error} (got {raw:?})"))
}

fn within<N>(value: N, range: Option<&Bounds<N>>) -> Result<N, String>
where
    N: PartialOrd + fmt::Display,
{
    match range {
        Some(Bounds { low, high }) if value < *low || value > *high => {
            Err(format!("must be between {low} and {high}, got {value}"))
        }
        _ => Ok(value),
    }
}

/// Integers, which may declare a range.
macro_rules! integer_formats {
    ($($integer:ty),+ $(,)?) => {$(
        impl Format for $integer {
            const TYPE_NAME: &'static str = "integer";
            type Value = Self;
            type Range = Bounds<Self>;

            fn parse(raw: &str, range: Option<&Bounds<Self>>) -> Result<Self, String> {
                within(parse_text(raw)?, range)
            }
        }
    )+};
}

integer_formats!(u16, u32, i64);

/// Types read with their own `FromStr`, without a range.
macro_rules! unranged_formats {
    ($($type:ty => $type_name:literal),+ $(,)?) => {$(
        impl Format for $type {
            const TYPE_NAME: &'static str = $type_name;
            type Value = Self;
            type Range = NoRange;

            fn parse(raw: &str, _: Option<&NoRange>) -> Result<Self, String> {
                parse_text(raw)
            }
        }
    )+};
}

unranged_formats! {
    bool => "boolean",
    String => "text",
    IpAddr => "IP address",
    AppEnv => "deployment",
    LogFormat => "log format",
    ModelSource => "folder or s3:// URL",
    ModelRef => "bundle id[@version]",
    UploadLocation => "s3:// URL",
}

/// A number of seconds, read as a [`Duration`].
pub(super) enum Seconds {}

impl Format for Seconds {
    const TYPE_NAME: &'static str = "seconds";
    type Value = Duration;
    type Range = Bounds<u64>;

    fn parse(raw: &str, range: Option<&Bounds<u64>>) -> Result<Duration, String> {
        within(parse_text(raw)?, range).map(Duration::from_secs)
    }
}

/// A period in seconds, where `0` turns what it paces off (`None`).
pub(super) enum SecondsOrOff {}

impl Format for SecondsOrOff {
    const TYPE_NAME: &'static str = "seconds, 0: off";
    type Value = Option<Duration>;
    type Range = Bounds<u64>;

    fn parse(raw: &str, range: Option<&Bounds<u64>>) -> Result<Option<Duration>, String> {
        Ok(match within(parse_text(raw)?, range)? {
            0 => None,
            secs => Some(Duration::from_secs(secs)),
        })
    }
}

/// `*`, or comma-separated `scheme://host[:port]` origins; empty: none.
pub(super) enum Origins {}

impl Format for Origins {
    const TYPE_NAME: &'static str = "origins or *";
    type Value = Vec<String>;
    type Range = NoRange;

    fn parse(raw: &str, _: Option<&NoRange>) -> Result<Vec<String>, String> {
        let mut origins = Vec::new();
        for item in raw
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
        {
            if item != "*" {
                let url = url::Url::parse(item)
                    .map_err(|error| format!("{item:?} is not an origin: {error}"))?;
                if url.origin().ascii_serialization() != item.trim_end_matches('/') {
                    return Err(format!(
                        "{item:?} is not an origin (scheme://host[:port], no path)"
                    ));
                }
            }
            origins.push(item.trim_end_matches('/').to_owned());
        }
        Ok(origins)
    }
}

/// A `tracing` filter directive such as `info,sqlx=warn`, checked at load so
/// that a typo stops start-up instead of silently logging at the wrong level.
pub(super) enum LogFilter {}

impl Format for LogFilter {
    const TYPE_NAME: &'static str = "tracing filter";
    type Value = String;
    type Range = NoRange;

    fn parse(raw: &str, _: Option<&NoRange>) -> Result<String, String> {
        let filter = raw.trim();
        tracing_subscriber::EnvFilter::try_new(filter).map_err(|problem| problem.to_string())?;
        Ok(filter.to_owned())
    }
}

/// An endpoint URL, kept without a trailing slash so that paths can be appended.
pub(super) enum EndpointUrl {}

impl Format for EndpointUrl {
    const TYPE_NAME: &'static str = "URL";
    type Value = String;
    type Range = NoRange;

    fn parse(raw: &str, _: Option<&NoRange>) -> Result<String, String> {
        let url: url::Url = parse_text(raw)?;
        Ok(url.to_string().trim_end_matches('/').to_owned())
    }
}

/// A secret written as plain text, such as a signing key.
pub(super) enum SecretText {}

impl Format for SecretText {
    const TYPE_NAME: &'static str = "text";
    const SECRECY: Secrecy = Secrecy::Secret;
    type Value = SecretString;
    type Range = NoRange;

    fn parse(raw: &str, _: Option<&NoRange>) -> Result<SecretString, String> {
        Ok(SecretString::from(raw.trim().to_owned()))
    }
}

/// Declares the format of a secret URL whose scheme must be one of those
/// listed, so that a typo fails at start-up, not at first use.
macro_rules! secret_url_formats {
    ($($(#[doc = $doc:literal])* $format:ident: $first:literal $(or $other:literal)*;)+) => {$(
        $(#[doc = $doc])*
        pub(super) enum $format {}

        impl Format for $format {
            const TYPE_NAME: &'static str =
                concat!($first, "://" $(, " or ", $other, "://")*, " URL");
            const SECRECY: Secrecy = Secrecy::SecretUrl;
            type Value = SecretString;
            type Range = NoRange;

            fn parse(raw: &str, _: Option<&NoRange>) -> Result<SecretString, String> {
                secret_url(raw, &[$first $(, $other)*])
            }
        }
    )+};
}

secret_url_formats! {
    /// A PostgreSQL connection URL.
    PostgresUrl: "postgres" or "postgresql";
    /// A Redis connection URL (`rediss`: over TLS).
    RedisUrl: "redis" or "rediss";
    /// A mail server URL (`smtps`: TLS from the first byte).
    SmtpUrl: "smtp" or "smtps";
}

fn secret_url(raw: &str, schemes: &[&str]) -> Result<SecretString, String> {
    let text = raw.trim();
    // The parse error never contains the URL, so it cannot leak a password.
    let url = url::Url::parse(text).map_err(|error| format!("not a URL: {error}"))?;
    if !schemes.contains(&url.scheme()) {
        return Err(format!(
            "scheme must be {}, got {}",
            schemes.join(" or "),
            url.scheme()
        ));
    }
    Ok(SecretString::from(text.to_owned()))
}
