//! Model bundles in the S3 model bucket: `s3://<bucket>/<prefix>/<id>/<version>/`.
//!
//! A published version is immutable: `push` refuses a version that exists. It
//! uploads the component files first and `manifest.json` last, so a version is
//! visible (listed, fetchable) only once complete; an interrupted push leaves
//! no manifest and is simply pushed again. Every object carries the SHA-256 of
//! its bytes (`x-amz-meta-sha256`), checked on fetch.
//!
//! A fetched bundle is downloaded into a temporary folder, loaded and the
//! folder removed: a loaded [`Bundle`] keeps everything it needs in memory.
//!
//! Against a local endpoint (moto) addressing is path-style; the standard AWS
//! credential chain applies everywhere.

use std::path::{Path, PathBuf};

use aws_sdk_s3::Client;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use sha2::{Digest, Sha256};

use super::{Bundle, BundleError, ModelKind};

const MANIFEST: &str = "manifest.json";
const SHA256_METADATA: &str = "sha256";

/// Where bundles live: a bucket and a key prefix (`models` by default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    pub prefix: String,
}

impl S3Location {
    /// Parses `s3://bucket` or `s3://bucket/prefix` (a trailing `/` is ignored).
    pub fn parse(text: &str) -> Result<Self, StoreError> {
        let invalid = |problem: &str| StoreError::Location {
            location: text.to_owned(),
            problem: problem.to_owned(),
        };
        let rest = text
            .strip_prefix("s3://")
            .ok_or_else(|| invalid("it must start with s3://"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, "models"));
        let prefix = prefix.trim_matches('/');
        if bucket.is_empty() {
            return Err(invalid("the bucket name is empty"));
        }
        Ok(Self {
            bucket: bucket.to_owned(),
            prefix: if prefix.is_empty() {
                "models".to_owned()
            } else {
                prefix.to_owned()
            },
        })
    }

    fn version_prefix(&self, id: &str, version: &str) -> String {
        format!("{}/{id}/{version}/", self.prefix)
    }
}

impl std::fmt::Display for S3Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.prefix)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{location} is not a model location: {problem}")]
    Location { location: String, problem: String },
    #[error("{what} {value:?} cannot be part of an S3 key: use letters, digits, '.', '_' and '-'")]
    Name { what: &'static str, value: String },
    #[error(
        "{id} {version} is already published at {location}; published versions never change, publish a new version"
    )]
    VersionExists {
        id: String,
        version: String,
        location: String,
    },
    #[error("{id} {version} is not published at {location}")]
    NotFound {
        id: String,
        version: String,
        location: String,
    },
    #[error(
        "s3://{bucket}/{key} is corrupt: its SHA-256 is {actual}, it was published as {expected}"
    )]
    Checksum {
        bucket: String,
        key: String,
        expected: String,
        actual: String,
    },
    #[error("{action} failed: {message}")]
    Aws { action: String, message: String },
    #[error("cannot {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Bundle(#[from] BundleError),
}

/// A failed AWS call as one line: the service's code and message when AWS
/// answered, the whole error chain when it could not be reached.
fn aws_error<E, R>(action: String) -> impl FnOnce(SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    move |error| {
        let message = match error.as_service_error() {
            Some(service) => format!(
                "{}: {}",
                service.code().unwrap_or("error"),
                service.message().unwrap_or("no message")
            ),
            None => error_chain(&error),
        };
        StoreError::Aws { action, message }
    }
}

/// An error and its causes on one line, without the SDK's debug dump.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A published bundle version, as `list` reports it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Published {
    pub id: String,
    pub version: String,
    pub kind: ModelKind,
    pub components: Vec<String>,
    pub description: String,
    /// When its manifest was written (RFC 3339), i.e. when the push completed.
    pub published_at: Option<String>,
}

/// The S3 client and the location of the bundles.
#[derive(Debug, Clone)]
pub struct ModelStore {
    client: Client,
    location: S3Location,
}

impl ModelStore {
    /// A client for `location`: `endpoint_url` replaces the AWS endpoints (moto)
    /// and switches to path-style addressing; `region` overrides the chain's.
    pub async fn connect(
        location: S3Location,
        endpoint_url: Option<&str>,
        region: Option<&str>,
    ) -> Self {
        Self {
            client: crate::aws::s3_client(endpoint_url, region).await,
            location,
        }
    }

    pub fn location(&self) -> &S3Location {
        &self.location
    }

    /// Publishes the bundle in `dir` (validated by loading it first) as
    /// `<prefix>/<id>/<version>/`; only the manifest and the files it names.
    pub async fn push(&self, dir: &Path) -> Result<Published, StoreError> {
        let bundle = Bundle::load(dir)?;
        let manifest = bundle.manifest();
        check_name("bundle id", &manifest.id)?;
        check_name("bundle version", &manifest.version)?;
        let prefix = self
            .location
            .version_prefix(&manifest.id, &manifest.version);
        if self.exists(&format!("{prefix}{MANIFEST}")).await? {
            return Err(StoreError::VersionExists {
                id: manifest.id.clone(),
                version: manifest.version.clone(),
                location: self.location.to_string(),
            });
        }
        let files = manifest
            .components
            .iter()
            .map(|component| component.file.as_str())
            .chain(std::iter::once(MANIFEST));
        for file in files {
            let path = dir.join(file);
            let bytes = std::fs::read(&path).map_err(|source| StoreError::Io {
                action: "read",
                path: path.clone(),
                source,
            })?;
            let key = format!("{prefix}{file}");
            self.client
                .put_object()
                .bucket(&self.location.bucket)
                .key(&key)
                .metadata(SHA256_METADATA, sha256_hex(&bytes))
                .body(ByteStream::from(bytes))
                .send()
                .await
                .map_err(aws_error(format!(
                    "uploading s3://{}/{key}",
                    self.location.bucket
                )))?;
        }
        Ok(Published {
            id: manifest.id.clone(),
            version: manifest.version.clone(),
            kind: manifest.kind,
            components: bundle.component_names().map(str::to_owned).collect(),
            description: manifest.description.clone(),
            published_at: None,
        })
    }

    /// Every published version (those with a manifest), by id then version.
    pub async fn list(&self) -> Result<Vec<Published>, StoreError> {
        let mut published = Vec::new();
        for (key, modified) in self.keys(&format!("{}/", self.location.prefix)).await? {
            let Some(rest) = key
                .strip_prefix(&format!("{}/", self.location.prefix))
                .and_then(|rest| rest.strip_suffix(&format!("/{MANIFEST}")))
            else {
                continue;
            };
            let Some((id, version)) = rest.split_once('/') else {
                continue;
            };
            if version.contains('/') {
                continue;
            }
            let bytes = self.get(&key).await?;
            let manifest: super::Manifest =
                serde_json::from_slice(&bytes).map_err(|source| BundleError::Parse {
                    path: PathBuf::from(format!("s3://{}/{key}", self.location.bucket)),
                    what: "bundle manifest",
                    source,
                })?;
            published.push(Published {
                id: id.to_owned(),
                version: version.to_owned(),
                kind: manifest.kind,
                components: manifest.components.into_iter().map(|c| c.name).collect(),
                description: manifest.description,
                published_at: modified,
            });
        }
        published.sort_by(|a, b| {
            a.id.cmp(&b.id)
                .then_with(|| compare_versions(&a.version, &b.version))
        });
        Ok(published)
    }

    /// The highest published version of `id` (numeric parts compared as numbers).
    pub async fn latest_version(&self, id: &str) -> Result<String, StoreError> {
        check_name("bundle id", id)?;
        self.list()
            .await?
            .into_iter()
            .filter(|p| p.id == id)
            .map(|p| p.version)
            .max_by(|a, b| compare_versions(a, b))
            .ok_or_else(|| StoreError::NotFound {
                id: id.to_owned(),
                version: "(any version)".to_owned(),
                location: self.location.to_string(),
            })
    }

    /// Downloads, verifies and loads `id` `version`.
    pub async fn fetch(&self, id: &str, version: &str) -> Result<Bundle, StoreError> {
        check_name("bundle id", id)?;
        check_name("bundle version", version)?;
        let prefix = self.location.version_prefix(id, version);
        let keys = self.keys(&prefix).await?;
        if !keys
            .iter()
            .any(|(key, _)| key.ends_with(&format!("/{MANIFEST}")))
        {
            return Err(StoreError::NotFound {
                id: id.to_owned(),
                version: version.to_owned(),
                location: self.location.to_string(),
            });
        }
        let dir = tempfile::tempdir().map_err(|source| StoreError::Io {
            action: "create a temporary folder for",
            path: PathBuf::from(&prefix),
            source,
        })?;
        for (key, _) in &keys {
            let file = &key[prefix.len()..];
            if file.is_empty() || file.contains('/') {
                continue;
            }
            let bytes = self.get(key).await?;
            let path = dir.path().join(file);
            std::fs::write(&path, &bytes).map_err(|source| StoreError::Io {
                action: "write",
                path,
                source,
            })?;
        }
        Ok(Bundle::load(dir.path())?)
    }

    async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        match self
            .client
            .head_object()
            .bucket(&self.location.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|service| service.is_not_found()) =>
            {
                Ok(false)
            }
            Err(error) => Err(aws_error(format!(
                "looking up s3://{}/{key}",
                self.location.bucket
            ))(error)),
        }
    }

    /// Keys under `prefix` with their last-modified time.
    async fn keys(&self, prefix: &str) -> Result<Vec<(String, Option<String>)>, StoreError> {
        let mut keys = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.location.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(aws_error(format!(
                "listing s3://{}/{prefix}",
                self.location.bucket
            )))?;
            for object in page.contents() {
                if let Some(key) = object.key() {
                    keys.push((
                        key.to_owned(),
                        object.last_modified().map(|time| time.to_string()),
                    ));
                }
            }
        }
        Ok(keys)
    }

    /// An object's bytes, checked against its published SHA-256.
    async fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        let action = || format!("downloading s3://{}/{key}", self.location.bucket);
        let object = self
            .client
            .get_object()
            .bucket(&self.location.bucket)
            .key(key)
            .send()
            .await
            .map_err(aws_error(action()))?;
        let expected = object
            .metadata()
            .and_then(|metadata| metadata.get(SHA256_METADATA))
            .cloned();
        let bytes = object
            .body
            .collect()
            .await
            .map_err(|error| StoreError::Aws {
                action: action(),
                message: error_chain(&error),
            })?
            .to_vec();
        if let Some(expected) = expected {
            let actual = sha256_hex(&bytes);
            if actual != expected {
                return Err(StoreError::Checksum {
                    bucket: self.location.bucket.clone(),
                    key: key.to_owned(),
                    expected,
                    actual,
                });
            }
        }
        Ok(bytes)
    }
}

fn check_name(what: &'static str, value: &str) -> Result<(), StoreError> {
    let valid = !value.is_empty()
        && value != "."
        && value != ".."
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if valid {
        Ok(())
    } else {
        Err(StoreError::Name {
            what,
            value: value.to_owned(),
        })
    }
}

/// `1.10.0` after `1.9.0`: dot-separated parts compared as numbers when both are.
pub fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    let mut left = a.split('.');
    let mut right = b.split('.');
    loop {
        match (left.next(), right.next()) {
            (None, None) => return std::cmp::Ordering::Equal,
            (None, Some(_)) => return std::cmp::Ordering::Less,
            (Some(_), None) => return std::cmp::Ordering::Greater,
            (Some(x), Some(y)) => {
                let order = match (x.parse::<u64>(), y.parse::<u64>()) {
                    (Ok(x), Ok(y)) => x.cmp(&y),
                    _ => x.cmp(y),
                };
                if order.is_ne() {
                    return order;
                }
            }
        }
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_with_a_default_prefix() {
        assert_eq!(
            S3Location::parse("s3://bucket").unwrap(),
            S3Location {
                bucket: "bucket".into(),
                prefix: "models".into()
            }
        );
        assert_eq!(
            S3Location::parse("s3://bucket/team/models/")
                .unwrap()
                .prefix,
            "team/models"
        );
        assert!(S3Location::parse("bucket/models").is_err());
        assert!(S3Location::parse("s3:///models").is_err());
    }

    #[test]
    fn versions_compare_numerically() {
        use std::cmp::Ordering::*;
        assert_eq!(compare_versions("1.10.0", "1.9.0"), Greater);
        assert_eq!(compare_versions("1.0", "1.0.1"), Less);
        assert_eq!(compare_versions("2.0.0", "2.0.0"), Equal);
    }

    #[test]
    fn names_that_would_escape_their_folder_are_refused() {
        for bad in ["", "..", "a/b", "a b"] {
            assert!(check_name("bundle id", bad).is_err(), "{bad:?}");
        }
        assert!(check_name("bundle id", "accunode-v1-annual").is_ok());
    }
}
