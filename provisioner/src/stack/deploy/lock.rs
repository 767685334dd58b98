//! The stack's deploy lock: one deploy or rollback at a time, whatever
//! machine it runs from. The lock is one object, `deploys/lock.json` in the
//! stack's bucket, written with S3's conditional write (`If-None-Match: *`),
//! which exactly one of two concurrent writers wins. It names its holder (who,
//! what, since when) and what the holder changed and must put back, so that a
//! run that takes over a dead holder's lock (`--force`) can restore it.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::stack::aws::{self, aws_error, error_code};
use crate::stack::resources::Ctx;
use crate::stack::spec::Colour;

const KEY: &str = "deploys/lock.json";
/// How an unreadable lock object is reported (and recognised by `unlock`).
const NOT_A_LOCK: &str = "is not a deploy lock";
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
    /// What the deploy changed, once it has read it.
    pub restore: Option<Restore>,
    /// The dead deploy whose lock this one took over, with its `restore`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interrupted: Option<Interrupted>,
}

/// A deploy that died holding the lock, as the run that took it over saw it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Interrupted {
    pub who: String,
    pub tier: String,
    pub action: String,
    pub version: String,
}

/// What a deploy puts back however it ends, and a run that takes over its
/// lock after it died.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Restore {
    /// The workers' group, replaced in rolling batches.
    Rolling(GroupState),
    /// The API's colours and the listeners that choose between them.
    BlueGreen(Colours),
}

impl Restore {
    /// The release the tier served before the deploy (None: none yet).
    pub fn previous_version(&self) -> Option<&String> {
        match self {
            Restore::Rolling(group) => group.previous_version.as_ref(),
            Restore::BlueGreen(colours) => colours.live_group.previous_version.as_ref(),
        }
    }

    /// The release the tier ran before the deploy that recorded this, which
    /// was putting `deploying` on it. A blue-green deploy that had committed
    /// recorded the new colour as live: the one before is the old colour's.
    pub fn release_before(&self, deploying: &str) -> Option<&String> {
        match self {
            Restore::Rolling(group) => group.previous_version.as_ref(),
            Restore::BlueGreen(colours)
                if colours.live_group.previous_version.as_deref() == Some(deploying) =>
            {
                colours.idle_group.previous_version.as_ref()
            }
            Restore::BlueGreen(colours) => colours.live_group.previous_version.as_ref(),
        }
    }

    /// What it changes, for messages: the groups' names.
    pub fn groups(&self) -> String {
        match self {
            Restore::Rolling(group) => group.group.clone(),
            Restore::BlueGreen(colours) => format!(
                "{}, {} and the listeners",
                colours.live_group.group, colours.idle_group.group
            ),
        }
    }
}

/// A group's settings before a deploy changed them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupState {
    pub group: String,
    pub min: i32,
    pub desired: i32,
    pub max: i32,
    /// Scaling processes that were suspended before the deploy (left so).
    pub suspended_before: Vec<String>,
    /// The release the group ran before (None: it had none yet).
    pub previous_version: Option<String>,
}

/// The API's colours as a blue-green deploy must leave them if it fails:
/// the listeners forwarding to `live`, each group as recorded. A deploy
/// that has switched and started scaling the old colour down records the
/// new colour as live, so that nothing ever points the listeners back at a
/// colour with no instances.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Colours {
    pub live: Colour,
    pub live_group: GroupState,
    pub idle_group: GroupState,
    /// The ARNs of the listeners that forward to the API.
    pub listeners: Vec<String>,
    /// The ARN of each colour's target group, by colour name.
    pub target_groups: std::collections::BTreeMap<String, String>,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A provision or destroy holds it for the whole stack, with no version.
        let what = [
            self.action.as_str(),
            self.tier.as_str(),
            self.version.as_str(),
        ]
        .into_iter()
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
        write!(f, "{} ({what} since {})", self.who, self.since)
    }
}

/// The lock as this run holds it. Every later write and its removal are
/// conditional on the object being the one this run wrote last (its ETag):
/// a run whose lock was broken and taken by another learns so and stops,
/// instead of overwriting the other's.
pub struct Lock {
    bucket: String,
    pub holder: Holder,
    etag: String,
}

/// Who holds the lock now, if anybody.
pub async fn holder(ctx: &Ctx, bucket: &str) -> anyhow::Result<Option<Holder>> {
    Ok(read(ctx, bucket).await?.map(|(holder, _)| holder))
}

/// The lock object, with its ETag.
async fn read(ctx: &Ctx, bucket: &str) -> anyhow::Result<Option<(Holder, String)>> {
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
    let etag = object.e_tag().unwrap_or_default().to_owned();
    let body = object
        .body
        .collect()
        .await
        .context("cannot read the deploy lock")?;
    let holder = serde_json::from_slice(&body.into_bytes()).with_context(|| {
        format!("s3://{bucket}/{KEY} {NOT_A_LOCK}; `accunode unlock --force` removes it")
    })?;
    Ok(Some((holder, etag)))
}

/// Writes the lock if nobody holds it: its ETag; None when somebody does
/// (or a write raced this one: the caller looks at who holds it).
async fn put_if_absent(ctx: &Ctx, bucket: &str, holder: &Holder) -> anyhow::Result<Option<String>> {
    aws::put_if_absent(
        ctx.aws
            .s3
            .put_object()
            .bucket(bucket)
            .key(KEY)
            .body(serde_json::to_vec_pretty(holder)?.into()),
    )
    .await
}

/// Removes the lock if it is still the version `etag`; another version (or
/// none) is left for the caller to look at again.
async fn remove_if(ctx: &Ctx, bucket: &str, etag: &str) -> anyhow::Result<()> {
    match ctx
        .aws
        .s3
        .delete_object()
        .bucket(bucket)
        .key(KEY)
        .if_match(etag)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(error) if gone_or_changed(error_code(&error)) => Ok(()),
        Err(error) => {
            Err(aws_error(error)).with_context(|| format!("cannot remove s3://{bucket}/{KEY}"))
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
/// then refuses naming the holder. With `force`, breaks it; a broken holder
/// (of either tier) hands over what it recorded to put back, which the new
/// lock carries from its first write until the new holder has put it back.
pub async fn take(
    ctx: &Ctx,
    bucket: &str,
    mut ours: Holder,
    wait: Duration,
    force: bool,
) -> anyhow::Result<Lock> {
    let started = Instant::now();
    loop {
        if let Some(etag) = put_if_absent(ctx, bucket, &ours).await? {
            return Ok(Lock {
                bucket: bucket.to_owned(),
                holder: ours,
                etag,
            });
        }
        let Some((other, etag)) = read(ctx, bucket).await? else {
            // Gone between the write and the read (or a write raced ours).
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        // Our own write, whose answer was lost and whose resend found it.
        if other.token == ours.token {
            return Ok(Lock {
                bucket: bucket.to_owned(),
                holder: ours,
                etag,
            });
        }
        if force {
            ctx.progress.done(
                "!",
                "deploy lock",
                "lock",
                &format!("broken: was held by {other}"),
                started.elapsed(),
            );
            if ours.restore.is_none() && other.restore.is_some() {
                ours.interrupted = Some(Interrupted {
                    who: other.who.clone(),
                    tier: other.tier.clone(),
                    action: other.action.clone(),
                    version: other.version.clone(),
                });
                ours.restore = other.restore;
            }
            // Only the version read is removed: a holder that wrote since
            // (it was alive after all) is looked at again.
            remove_if(ctx, bucket, &etag).await?;
            continue;
        }
        if started.elapsed() >= wait {
            bail!(
                "another deploy holds the stack's lock: {other}; wait for it (--lock-wait 10m), or if it died, re-run with --force (which puts back what it changed)"
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
    /// Records what the deploy must put back, so a forced re-run finds it;
    /// refused when somebody broke the lock since (the deploy then stops).
    pub async fn record(&mut self, ctx: &Ctx, restore: Restore) -> anyhow::Result<()> {
        let mut holder = self.holder.clone();
        holder.restore = Some(restore);
        let body = serde_json::to_vec_pretty(&holder)?;
        // Twice at most: a version this run wrote itself (an answer lost,
        // then resent against the old ETag) is taken as ours and written over.
        for _ in 0..2 {
            let written = ctx
                .aws
                .s3
                .put_object()
                .bucket(&self.bucket)
                .key(KEY)
                .if_match(&self.etag)
                .body(body.clone().into())
                .send()
                .await;
            match written {
                Ok(written) => {
                    self.etag = written.e_tag().unwrap_or_default().to_owned();
                    self.holder = holder;
                    return Ok(());
                }
                Err(error) if gone_or_changed(error_code(&error)) => self.still_ours(ctx).await?,
                Err(error) => {
                    return Err(aws_error(error)).context("cannot update the deploy lock");
                }
            }
        }
        Err(self.lost(ctx).await)
    }

    /// Fails with [`LockLost`] when somebody broke the lock since this run
    /// last wrote it: called before each step that changes what a forced
    /// run would be changing too.
    pub async fn check(&mut self, ctx: &Ctx) -> anyhow::Result<()> {
        let found = ctx
            .aws
            .s3
            .head_object()
            .bucket(&self.bucket)
            .key(KEY)
            .if_match(&self.etag)
            .send()
            .await;
        match found {
            Ok(_) => Ok(()),
            // HeadObject's errors have no body: the status says it.
            Err(error)
                if gone_or_changed(error_code(&error))
                    || error
                        .raw_response()
                        .is_some_and(|r| matches!(r.status().as_u16(), 404 | 412)) =>
            {
                self.still_ours(ctx).await
            }
            Err(error) => Err(aws_error(error)).context("cannot read the deploy lock"),
        }
    }

    /// After a conditional operation was refused: the lock is still this
    /// run's when it holds this run's token (its own write, whose answer was
    /// lost), whose ETag is then the one to use; otherwise [`LockLost`].
    async fn still_ours(&mut self, ctx: &Ctx) -> anyhow::Result<()> {
        match read(ctx, &self.bucket).await? {
            Some((holder, etag)) if holder.token == self.holder.token => {
                self.etag = etag;
                Ok(())
            }
            _ => Err(self.lost(ctx).await),
        }
    }

    async fn lost(&self, ctx: &Ctx) -> anyhow::Error {
        LockLost(holder_or_nobody(ctx, &self.bucket).await).into()
    }

    /// Gives the lock back, unless somebody broke it and took it since.
    pub async fn release(mut self, ctx: &Ctx) -> anyhow::Result<()> {
        for _ in 0..2 {
            let removed = ctx
                .aws
                .s3
                .delete_object()
                .bucket(&self.bucket)
                .key(KEY)
                .if_match(&self.etag)
                .send()
                .await;
            match removed {
                Ok(_) => return Ok(()),
                // No bucket: a destroy took it, lock and all.
                Err(error) if error_code(&error) == Some("NoSuchBucket") => return Ok(()),
                Err(error) if gone_or_changed(error_code(&error)) => {
                    // Somebody else's lock now, or none: not ours to remove.
                    if self.still_ours(ctx).await.is_err() {
                        return Ok(());
                    }
                }
                Err(error) => {
                    return Err(aws_error(error))
                        .with_context(|| format!("cannot remove s3://{}/{KEY}", self.bucket));
                }
            }
        }
        Ok(())
    }
}

/// S3's answers to a conditional operation on an object that is not the
/// version named: another version (412), a write racing it (409), none.
fn gone_or_changed(code: Option<&str>) -> bool {
    matches!(
        code,
        Some("PreconditionFailed" | "ConditionalRequestConflict" | "NoSuchKey" | "NotFound")
    )
}

/// This run's lock was broken (`--force`) and whoever took it over is
/// putting back or changing what this run changed: this run stops and
/// touches nothing more. It holds who has the lock now.
#[derive(Debug, thiserror::Error)]
#[error(
    "the deploy lock was broken and is now held by {0}: this run stops here and leaves the stack to it"
)]
pub struct LockLost(pub String);

/// Who holds the lock now, for a message.
async fn holder_or_nobody(ctx: &Ctx, bucket: &str) -> String {
    match holder(ctx, bucket).await {
        Ok(Some(holder)) => holder.to_string(),
        Ok(None) => "nobody (it was removed)".to_owned(),
        Err(error) => format!("somebody unknown ({error:#})"),
    }
}

/// `accunode unlock --force`: removes the lock whoever holds it, unless its
/// holder changed a group that only a forced deploy puts back.
pub async fn unlock(ctx: &Ctx, bucket: &str) -> anyhow::Result<Option<Holder>> {
    let holder = match holder(ctx, bucket).await {
        Ok(holder) => holder,
        // Not a lock this tool wrote: nothing to put back, nothing to lose.
        Err(error) if format!("{error:#}").contains(NOT_A_LOCK) => {
            remove(ctx, bucket).await?;
            return Ok(None);
        }
        Err(error) => return Err(error),
    };
    if let Some(holder) = &holder {
        if let Some(restore) = &holder.restore {
            bail!(
                "the lock held by {holder} records changes to {} that removing it would lose (scaling suspended, sizes); `accunode deploy {} --version … --force` takes it over and puts them back",
                restore.groups(),
                holder.tier
            );
        }
        remove(ctx, bucket).await?;
    }
    Ok(holder)
}
