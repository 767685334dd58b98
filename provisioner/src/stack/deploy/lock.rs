//! The stack's deploy lock: one deploy or rollback at a time, whatever
//! machine it runs from. The lock is one object, `deploys/lock.json` in the
//! stack's bucket, written with S3's conditional write (`If-None-Match: *`),
//! which exactly one of two concurrent writers wins. It names its holder (who,
//! what, since when) and what the holder changed and must put back, so that a
//! run that takes over a dead holder's lock (`--force`) can restore it.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::stack::aws::{aws_error, error_code};
use crate::stack::resources::Ctx;

const KEY: &str = "deploys/lock.json";
/// How often a `--lock-wait` looks again.
const POLL: Duration = Duration::from_secs(2);

/// Who holds the lock, for what, and what they must put back.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Holder {
    /// `user@host (pid N)`.
    pub who: String,
    pub tier: String,
    pub action: String,
    pub version: String,
    /// RFC 3339, UTC.
    pub since: String,
    /// Tells this holder's lock from a later one's.
    pub token: String,
    /// What the deploy changed on its group, once it has read it.
    pub restore: Option<Restore>,
}

/// A group's settings before a deploy changed them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restore {
    pub group: String,
    pub desired: i32,
    pub max: i32,
    /// Scaling processes that were suspended before the deploy (left so).
    pub suspended_before: Vec<String>,
    /// The release the group ran before (None: it had none yet).
    pub previous_version: Option<String>,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({} {} {} since {})",
            self.who, self.action, self.tier, self.version, self.since
        )
    }
}

/// The lock as this run holds it.
pub struct Lock {
    bucket: String,
    pub holder: Holder,
}

/// What taking the lock found.
pub struct Taken {
    pub lock: Lock,
    /// The holder whose lock `--force` broke, with what it left to restore.
    pub broken: Option<Holder>,
}

/// Who holds the lock now, if anybody.
pub async fn holder(ctx: &Ctx, bucket: &str) -> anyhow::Result<Option<Holder>> {
    let object = match ctx.aws.s3.get_object().bucket(bucket).key(KEY).send().await {
        Ok(object) => object,
        Err(error) if error_code(&error) == Some("NoSuchKey") => return Ok(None),
        // No bucket yet: nothing was ever deployed, nobody holds the lock.
        Err(error) if error_code(&error) == Some("NoSuchBucket") => return Ok(None),
        Err(error) => {
            return Err(aws_error(error))
                .with_context(|| format!("cannot read s3://{bucket}/{KEY}"));
        }
    };
    let body = object
        .body
        .collect()
        .await
        .context("cannot read the deploy lock")?;
    let holder = serde_json::from_slice(&body.into_bytes()).with_context(|| {
        format!("s3://{bucket}/{KEY} is not a deploy lock; `accunode unlock --force` removes it")
    })?;
    Ok(Some(holder))
}

/// Writes the lock if nobody holds it; false when somebody does.
async fn put_if_absent(ctx: &Ctx, bucket: &str, holder: &Holder) -> anyhow::Result<bool> {
    let sent = ctx
        .aws
        .s3
        .put_object()
        .bucket(bucket)
        .key(KEY)
        .if_none_match("*")
        .body(serde_json::to_vec_pretty(holder)?.into())
        .send()
        .await;
    match sent {
        Ok(_) => Ok(true),
        Err(error) if error_code(&error) == Some("PreconditionFailed") => Ok(false),
        Err(error) if error_code(&error) == Some("NoSuchBucket") => {
            bail!("the stack's bucket {bucket} does not exist: run `accunode provision` first")
        }
        Err(error) => {
            Err(aws_error(error)).with_context(|| format!("cannot write s3://{bucket}/{KEY}"))
        }
    }
}

async fn remove(ctx: &Ctx, bucket: &str) -> anyhow::Result<()> {
    ctx.aws
        .s3
        .delete_object()
        .bucket(bucket)
        .key(KEY)
        .send()
        .await
        .map_err(aws_error)
        .with_context(|| format!("cannot remove s3://{bucket}/{KEY}"))?;
    Ok(())
}

/// Takes the lock for `ours`. Held by another: waits up to `wait` for it,
/// then refuses naming the holder; with `force`, breaks it and returns it.
pub async fn take(
    ctx: &Ctx,
    bucket: &str,
    ours: Holder,
    wait: Duration,
    force: bool,
) -> anyhow::Result<Taken> {
    let started = Instant::now();
    let mut broken = None;
    loop {
        if put_if_absent(ctx, bucket, &ours).await? {
            return Ok(Taken {
                lock: Lock {
                    bucket: bucket.to_owned(),
                    holder: ours,
                },
                broken,
            });
        }
        // Gone between the write and the read: try again at once.
        let Some(other) = holder(ctx, bucket).await? else {
            continue;
        };
        if force {
            ctx.progress.done(
                "!",
                "deploy lock",
                "lock",
                &format!("broken: was held by {other}"),
                started.elapsed(),
            );
            remove(ctx, bucket).await?;
            broken = Some(other);
            continue;
        }
        if started.elapsed() >= wait {
            bail!(
                "another deploy holds the stack's lock: {other}; wait for it (--lock-wait 10m), or if it died, `accunode unlock --force` or re-run with --force"
            );
        }
        ctx.progress.waiting(
            "deploy lock",
            &format!("held by {other}"),
            started.elapsed(),
        );
        tokio::time::sleep(POLL.min(wait.saturating_sub(started.elapsed()))).await;
    }
}

impl Lock {
    /// Records what the deploy must put back, so a forced re-run finds it.
    pub async fn record(&mut self, ctx: &Ctx, restore: Restore) -> anyhow::Result<()> {
        self.holder.restore = Some(restore);
        ctx.aws
            .s3
            .put_object()
            .bucket(&self.bucket)
            .key(KEY)
            .body(serde_json::to_vec_pretty(&self.holder)?.into())
            .send()
            .await
            .map_err(aws_error)
            .context("cannot update the deploy lock")?;
        Ok(())
    }

    /// Gives the lock back, unless somebody broke it and took it since.
    pub async fn release(self, ctx: &Ctx) -> anyhow::Result<()> {
        match holder(ctx, &self.bucket).await? {
            Some(holder) if holder.token == self.holder.token => remove(ctx, &self.bucket).await,
            _ => Ok(()),
        }
    }
}

/// `accunode unlock --force`: removes the lock whoever holds it.
pub async fn unlock(ctx: &Ctx, bucket: &str) -> anyhow::Result<Option<Holder>> {
    let holder = holder(ctx, bucket).await?;
    if holder.is_some() {
        remove(ctx, bucket).await?;
    }
    Ok(holder)
}
