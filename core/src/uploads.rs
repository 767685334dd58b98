//! The uploads bucket: where accepted bulk-upload files are kept, as CSV, for
//! the workers to read by byte range and the results download to stream.
//!
//! An object appears whole or not at all (a single `PutObject`), so a file
//! whose upload was interrupted is never visible; objects that no job names
//! (the API stopped before recording the job) expire with the bucket's
//! lifecycle rule on the uploads prefix.

use std::path::Path;

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;

use crate::config::UploadLocation;
use crate::domain::JobId;

/// Why the uploads bucket could not be used.
#[derive(Debug, thiserror::Error)]
pub enum UploadStoreError {
    #[error("cannot read {path}: {message}")]
    Read { path: String, message: String },
    #[error("s3://{bucket}/{key}: {message}")]
    S3 {
        bucket: String,
        key: String,
        message: String,
    },
}

/// The S3 client and the uploads location.
#[derive(Debug, Clone)]
pub struct UploadStore {
    client: Client,
    location: UploadLocation,
}

impl UploadStore {
    /// A client for `location`: `endpoint_url` replaces the AWS endpoints (moto)
    /// and switches to path-style addressing; `region` overrides the chain's.
    pub async fn connect(
        location: UploadLocation,
        endpoint_url: Option<&str>,
        region: Option<&str>,
    ) -> Self {
        Self {
            client: crate::aws::s3_client(endpoint_url, region).await,
            location,
        }
    }

    /// The object key of a job's file.
    pub fn key_for(&self, job: JobId) -> String {
        format!("{}/{job}.csv", self.location.0.prefix)
    }

    fn error(&self, key: &str, error: impl std::fmt::Display) -> UploadStoreError {
        UploadStoreError::S3 {
            bucket: self.location.0.bucket.clone(),
            key: key.to_owned(),
            message: error.to_string(),
        }
    }

    /// Stores the file at `path` as `key`, streamed from disk.
    pub async fn put_file(&self, key: &str, path: &Path) -> Result<(), UploadStoreError> {
        let body = ByteStream::from_path(path)
            .await
            .map_err(|error| UploadStoreError::Read {
                path: path.display().to_string(),
                message: error.to_string(),
            })?;
        self.client
            .put_object()
            .bucket(&self.location.0.bucket)
            .key(key)
            .content_type("text/csv; charset=utf-8")
            .body(body)
            .send()
            .await
            .map_err(|error| self.error(key, aws_sdk_s3::error::DisplayErrorContext(error)))?;
        Ok(())
    }

    /// Bytes `[start, end)` of `key`.
    pub async fn get_range(
        &self,
        key: &str,
        start: u64,
        end: u64,
    ) -> Result<bytes::Bytes, UploadStoreError> {
        if end <= start {
            return Ok(bytes::Bytes::new());
        }
        let object = self
            .client
            .get_object()
            .bucket(&self.location.0.bucket)
            .key(key)
            .range(format!("bytes={start}-{}", end - 1))
            .send()
            .await
            .map_err(|error| self.error(key, aws_sdk_s3::error::DisplayErrorContext(error)))?;
        let data = object
            .body
            .collect()
            .await
            .map_err(|error| self.error(key, error))?;
        Ok(data.into_bytes())
    }
}
