//! `accunode deploy | rollback | deploys | unlock`: putting a published
//! release on a tier's instances, safely. One deploy per stack at a time (the
//! [`lock`]), every deploy and rollback recorded ([`history`]), and the
//! workers replaced in rolling batches ([`rolling`]). Whatever way a deploy
//! ends, success, failure or Ctrl-C, the group's size and scaling are put
//! back, the lock is given up and the outcome recorded; a deploy killed
//! outright leaves the lock, with what to restore, for `--force` to take over.

pub mod history;
pub mod lock;
pub mod rolling;
mod snapshot;

use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use clap::ValueEnum;
use serde::Serialize;

use self::history::Record;
use self::lock::{Holder, Restore};
use self::rolling::Rolled;
use super::release;
use super::resources::Ctx;
use super::spec::names;

/// The tiers a deploy can target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Tier {
    /// The bulk-scoring workers: replaced in rolling batches.
    Worker,
}

impl Tier {
    pub fn name(self) -> &'static str {
        match self {
            Tier::Worker => "worker",
        }
    }
}

/// What a deploy or rollback did.
#[derive(Debug, Serialize)]
pub struct Deployed {
    pub tier: String,
    pub action: String,
    pub from: Option<String>,
    pub to: String,
    /// The database snapshot taken first, when the release brings migrations.
    pub snapshot: Option<String>,
    pub rolled: Rolled,
}

/// How a deploy is run: its flags.
pub struct Settings {
    pub batch_percent: u8,
    pub lock_wait: Duration,
    pub force: bool,
}

fn bucket(ctx: &Ctx) -> String {
    names::bucket(&ctx.stack, &ctx.account, ctx.region())
}

fn now() -> String {
    aws_smithy_types::DateTime::from(SystemTime::now())
        .fmt(aws_smithy_types::date_time::Format::DateTime)
        .unwrap_or_default()
}

/// `user@host (pid N)`: who a lock or a record names.
fn who() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".to_owned());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned());
    format!("{user}@{host} (pid {})", std::process::id())
}

fn token() -> String {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the system's random source");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A duration flag: "90" (seconds), "30s", "10m" or "1h".
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit())
        .map_or((text, ""), |at| text.split_at(at));
    let seconds = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => 0,
    };
    match number.parse::<u64>() {
        Ok(n) if seconds > 0 && n <= 86_400 * 7 => Ok(Duration::from_secs(n * seconds)),
        _ => Err(format!(
            "{text:?}: expected a duration such as 30s, 10m or 1h (at most a week)"
        )),
    }
}

/// Deploys release `version` to `tier` (`action` says whether it is a
/// rollback, for the record).
pub async fn deploy(
    ctx: &Ctx,
    tier: Tier,
    version: &str,
    action: &str,
    settings: &Settings,
) -> anyhow::Result<Deployed> {
    let Some(manifest) = release::manifest(ctx, version).await? else {
        bail!(
            "release {version} is not published (`accunode releases` lists what is): publish it with `accunode release --version {version}`"
        );
    };
    let bucket = bucket(ctx);
    let holder = Holder {
        who: who(),
        tier: tier.name().to_owned(),
        action: action.to_owned(),
        version: version.to_owned(),
        since: now(),
        token: token(),
        restore: None,
    };
    let taken = lock::take(ctx, &bucket, holder, settings.lock_wait, settings.force).await?;
    let mut lock = taken.lock;
    // Taking over a dead deploy of this tier: what it changed is put back
    // from what it recorded, not from the group as it left it.
    let inherited = taken
        .broken
        .filter(|broken| broken.tier == tier.name())
        .and_then(|broken| broken.restore);
    let before: Restore = match inherited {
        Some(restore) => restore,
        None => rolling::before(ctx, tier.name()).await?,
    };
    lock.record(ctx, before.clone()).await?;
    let started = now();
    let started_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let snapshot = match before_migrations(ctx, &before, &manifest).await {
        Ok(migrations) if migrations.is_empty() => Ok(None),
        Ok(migrations) => {
            ctx.progress.done(
                "+",
                "database",
                "snapshot",
                &format!(
                    "{version} brings {} new migrations: {}",
                    migrations.len(),
                    migrations.join(", ")
                ),
                std::time::Duration::ZERO,
            );
            snapshot::take(ctx, version, started_ms).await.map(Some)
        }
        Err(error) => Err(error),
    };
    let mut rolled = Rolled::default();
    let (outcome, interrupted) = tokio::select! {
        result = async {
            snapshot.as_ref().map_err(|error| anyhow::anyhow!("{error:#}"))?;
            rolling::replace(ctx, tier.name(), &before, version, settings.batch_percent, &mut rolled).await
        } => (result, false),
        _ = tokio::signal::ctrl_c() => (Err(anyhow::anyhow!("interrupted (Ctrl-C)")), true),
    };
    let put_back = rolling::put_back(ctx, tier.name(), &before, outcome.is_err()).await;
    let record = Record {
        who: lock.holder.who.clone(),
        tier: tier.name().to_owned(),
        action: action.to_owned(),
        from: before.previous_version.clone(),
        to: version.to_owned(),
        started,
        ended: now(),
        outcome: match (&outcome, interrupted) {
            (Ok(()), _) => "succeeded",
            (Err(_), true) => "interrupted",
            (Err(_), false) => "failed",
        }
        .to_owned(),
        reason: outcome.as_ref().err().map(|e| format!("{e:#}")),
    };
    history::append(ctx, &bucket, &record, started_ms, &lock.holder.token).await?;
    if put_back.is_ok() {
        lock.release(ctx).await?;
    }
    put_back.context("the deploy could not put the group back as it was; the lock is kept for `--force` to finish it")?;
    if let Err(error) = outcome {
        let previous = before.previous_version.as_deref().unwrap_or("none");
        return Err(error).with_context(|| {
            format!(
                "{action} of {} to {version} stopped after {} of its batches; new instances launch with {previous} again; `accunode rollback {}` replaces the ones on {version}",
                tier.name(),
                rolled.batches.len(),
                tier.name()
            )
        });
    }
    Ok(Deployed {
        tier: tier.name().to_owned(),
        action: action.to_owned(),
        from: before.previous_version,
        to: version.to_owned(),
        snapshot: snapshot.unwrap_or_default(),
        rolled,
    })
}

/// The migrations `next` brings that the tier's running release does not
/// (none when the tier runs no release yet: nothing serves from the schema).
async fn before_migrations(
    ctx: &Ctx,
    before: &Restore,
    next: &release::Manifest,
) -> anyhow::Result<Vec<String>> {
    let Some(running) = &before.previous_version else {
        return Ok(Vec::new());
    };
    let running = release::manifest(ctx, running)
        .await?
        .with_context(|| format!("the running release {running} has no manifest"))?;
    Ok(snapshot::new_migrations(&running, next))
}

/// The release a rollback of `tier` goes back to: the one before its last
/// successful deploy or rollback.
pub async fn rollback_target(ctx: &Ctx, tier: Tier) -> anyhow::Result<String> {
    let records = history::list(ctx, &bucket(ctx)).await?;
    let last = records
        .iter()
        .rev()
        .find(|r| r.tier == tier.name() && r.outcome == "succeeded");
    match last.and_then(|r| r.from.clone()) {
        Some(previous) => Ok(previous),
        None => bail!(
            "nothing to roll {} back to: no earlier release of it is recorded (`accunode deploys`)",
            tier.name()
        ),
    }
}

/// `accunode deploys`: the history and who holds the lock now.
pub async fn deploys(ctx: &Ctx) -> anyhow::Result<(Vec<Record>, Option<Holder>)> {
    let bucket = bucket(ctx);
    Ok((
        history::list(ctx, &bucket).await?,
        lock::holder(ctx, &bucket).await?,
    ))
}

/// A tier as `status` shows it.
#[derive(Debug, Serialize)]
pub struct TierStatus {
    pub tier: String,
    /// What new instances launch with (None: nothing deployed yet).
    pub release: Option<String>,
    pub desired: i32,
    pub in_service: usize,
    pub instances: Vec<rolling::Member>,
}

/// The operator's view of deploys: each provisioned tier's release and
/// instances, the lock, the last deploy and the stack's alarms in ALARM.
#[derive(Debug, Serialize)]
pub struct DeployStatus {
    pub tiers: Vec<TierStatus>,
    pub lock: Option<Holder>,
    pub last_deploy: Option<Record>,
    pub alarms_firing: Vec<String>,
}

/// `tiers` are those the stack has a group for.
pub async fn status(ctx: &Ctx, tiers: &[&str]) -> anyhow::Result<DeployStatus> {
    let bucket = bucket(ctx);
    let mut shown = Vec::new();
    for tier in tiers {
        let group = rolling::describe(ctx, tier).await?;
        shown.push(TierStatus {
            tier: (*tier).to_owned(),
            release: rolling::release_of(ctx, tier).await?,
            desired: group.desired,
            in_service: group
                .members
                .iter()
                .filter(|m| m.lifecycle == "InService")
                .count(),
            instances: group.members,
        });
    }
    let records = history::list(ctx, &bucket).await?;
    let alarms = ctx
        .aws
        .cloudwatch
        .describe_alarms()
        .alarm_name_prefix(format!("{}-", ctx.stack))
        .state_value(aws_sdk_cloudwatch::types::StateValue::Alarm)
        .send()
        .await
        .map_err(super::aws::aws_error)
        .context("cannot read the stack's alarms")?;
    Ok(DeployStatus {
        tiers: shown,
        lock: lock::holder(ctx, &bucket).await?,
        last_deploy: records.last().cloned(),
        alarms_firing: alarms
            .metric_alarms()
            .iter()
            .filter_map(|a| a.alarm_name())
            .map(str::to_owned)
            .collect(),
    })
}

/// Refuses to change the stack while a deploy is changing it: `provision`
/// and `destroy` would resize or remove the groups it is replacing.
pub async fn refuse_while_deploying(ctx: &Ctx, command: &str) -> anyhow::Result<()> {
    if let Some(holder) = lock::holder(ctx, &bucket(ctx)).await? {
        bail!(
            "a deploy holds the stack's lock: {holder}; {command} once it has ended (`accunode deploys` shows it), or if it died, `accunode unlock --force`"
        );
    }
    Ok(())
}

/// `accunode unlock --force`.
pub async fn unlock(ctx: &Ctx) -> anyhow::Result<Option<Holder>> {
    lock::unlock(ctx, &bucket(ctx)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_operators_write_them() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        for bad in ["", "m", "10d", "-1s", "1.5m", "99999999999h", "10 m"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }
}
