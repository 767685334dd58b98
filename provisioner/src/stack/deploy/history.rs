//! The stack's deploy history: every deploy and rollback appends one record
//! (who, tier, from → to, start, end, outcome, reason), each its own object
//! under `deploys/history/` in the stack's bucket, so that appending never
//! reads, rewrites or races with another record.

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::stack::aws::{aws_error, error_code};
use crate::stack::resources::Ctx;

const PREFIX: &str = "deploys/history/";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub who: String,
    pub tier: String,
    /// "deploy" or "rollback".
    pub action: String,
    /// The release the tier ran before (None: none yet).
    pub from: Option<String>,
    pub to: String,
    /// RFC 3339, UTC.
    pub started: String,
    pub ended: String,
    /// "succeeded", "failed" or "interrupted".
    pub outcome: String,
    /// Why it did not succeed.
    pub reason: Option<String>,
}

/// Appends `record`; `started_ms` (milliseconds since the epoch, fixed
/// width) makes keys list in the order deploys started.
pub async fn append(
    ctx: &Ctx,
    bucket: &str,
    record: &Record,
    started_ms: u128,
    token: &str,
) -> anyhow::Result<()> {
    let key = format!("{PREFIX}{started_ms:015}-{}-{token}.json", record.tier);
    ctx.aws
        .s3
        .put_object()
        .bucket(bucket)
        .key(&key)
        .body(serde_json::to_vec_pretty(record)?.into())
        .send()
        .await
        .map_err(aws_error)
        .with_context(|| format!("cannot write the deploy record s3://{bucket}/{key}"))?;
    Ok(())
}

/// Every record, oldest first.
pub async fn list(ctx: &Ctx, bucket: &str) -> anyhow::Result<Vec<Record>> {
    let mut keys = Vec::new();
    let mut pages = ctx
        .aws
        .s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(PREFIX)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = match page {
            Ok(page) => page,
            // No bucket yet: nothing was ever deployed.
            Err(error) if error_code(&error) == Some("NoSuchBucket") => return Ok(Vec::new()),
            Err(error) => {
                return Err(aws_error(error))
                    .with_context(|| format!("cannot list s3://{bucket}/{PREFIX}"));
            }
        };
        keys.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key())
                .map(str::to_owned),
        );
    }
    keys.sort();
    let mut records = Vec::with_capacity(keys.len());
    for key in keys {
        let object = ctx
            .aws
            .s3
            .get_object()
            .bucket(bucket)
            .key(&key)
            .send()
            .await
            .map_err(aws_error)
            .with_context(|| format!("cannot read s3://{bucket}/{key}"))?;
        let body = object
            .body
            .collect()
            .await
            .context("cannot read a deploy record")?;
        records.push(
            serde_json::from_slice(&body.into_bytes())
                .with_context(|| format!("s3://{bucket}/{key} is not a deploy record"))?,
        );
    }
    Ok(records)
}
