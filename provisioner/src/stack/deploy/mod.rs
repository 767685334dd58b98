//! `accunode deploy | rollback | deploys | unlock`: putting a published
//! release on a tier's instances, safely. One deploy per stack at a time (the
//! [`lock`]), every deploy and rollback recorded ([`history`]), the API
//! deployed blue-green ([`bluegreen`]) and the workers replaced in rolling
//! batches ([`rolling`]). Whatever way a deploy ends, success, failure or
//! Ctrl-C, the groups' sizes, the listeners and scaling are put back, the
//! lock is given up and the outcome recorded; a deploy killed outright
//! leaves the lock, with what to restore, for `--force` to take over.

pub mod bluegreen;
pub mod history;
pub mod lock;
pub mod rolling;
mod snapshot;

use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use clap::ValueEnum;
use serde::Serialize;

use self::bluegreen::Switched;
use self::history::Record;
use self::lock::{Holder, Restore};
use self::rolling::Rolled;
use super::release;
use super::resources::{Ctx, Known, live_colour};
use super::spec::{Colour, names};

/// The tiers a deploy can target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Tier {
    /// The API servers: deployed blue-green.
    Api,
    /// The bulk-scoring workers: replaced in rolling batches.
    Worker,
}

impl Tier {
    pub fn name(self) -> &'static str {
        match self {
            Tier::Api => "api",
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
    /// The workers' batches.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rolled: Option<Rolled>,
    /// The API's switch of colours.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub switched: Option<Switched>,
}

/// How a deploy is run: its flags.
pub struct Settings {
    pub batch_percent: u8,
    pub lock_wait: Duration,
    pub force: bool,
    pub blue_green: bluegreen::Options,
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

/// What a deploy puts on its tier.
pub enum Target {
    /// A published release, by version.
    Release(String),
    /// The release the tier ran before its current one.
    Previous,
}

/// Deploys `target` to `tier`, under the stack's deploy lock.
pub async fn deploy(
    ctx: &Ctx,
    tier: Tier,
    target: &Target,
    settings: &Settings,
) -> anyhow::Result<Deployed> {
    let (action, version) = match target {
        Target::Release(version) => ("deploy", version.as_str()),
        Target::Previous => ("rollback", "(the previous release)"),
    };
    let holder = Holder {
        who: who(),
        tier: tier.name().to_owned(),
        action: action.to_owned(),
        version: version.to_owned(),
        since: now(),
        token: token(),
        restore: None,
        interrupted: None,
    };
    let mut lock = lock::take(
        ctx,
        &bucket(ctx),
        holder,
        settings.lock_wait,
        settings.force,
    )
    .await?;
    let ending = locked(ctx, tier, target, settings, &mut lock).await;
    if ending.keep_lock {
        return ending.result;
    }
    give_back(ctx, Some(lock), ending.result).await
}

/// How a deploy under the lock ended, and whether the lock must stay (the
/// group could not be put back: `--force` finishes that from the lock).
struct Ending {
    result: anyhow::Result<Deployed>,
    keep_lock: bool,
}

/// Everything a deploy does while it holds the lock.
async fn locked(
    ctx: &Ctx,
    tier: Tier,
    target: &Target,
    settings: &Settings,
    lock: &mut lock::Lock,
) -> Ending {
    // Before anything changes, a failure only gives the lock up.
    macro_rules! or_give_up {
        ($step:expr) => {
            match $step {
                Ok(value) => value,
                Err(error) => {
                    return Ending {
                        result: Err(error),
                        keep_lock: false,
                    };
                }
            }
        };
    }
    let bucket = bucket(ctx);
    // A rollback that takes over an interrupted deploy of its tier goes back
    // to the release that ran before it: (that release, the interrupted one).
    let mut back_to: Option<(String, String)> = None;
    // Taking over a dead deploy: what it changed is put back first, from
    // what it recorded, so that this run starts from a consistent stack (a
    // blue-green one's listeners on the colour that has its instances). The
    // lock keeps that record until it is done.
    if let Some(dead) = lock.holder.restore.clone() {
        let started = now();
        let took = std::time::Instant::now();
        if let Err(error) = put_back(ctx, &dead, true).await {
            return Ending {
                result: Err(error.context(
                    "cannot put back what the interrupted deploy changed; the lock keeps its record for another --force",
                )),
                keep_lock: true,
            };
        }
        let interrupted = lock.holder.interrupted.clone();
        let what = interrupted.as_ref().map_or_else(
            || "the interrupted deploy".to_owned(),
            |i| format!("{} {} {} by {}", i.action, i.tier, i.version, i.who),
        );
        ctx.progress.done(
            "<",
            &dead.groups(),
            "put back",
            &format!("what {what} changed"),
            took.elapsed(),
        );
        // Rolling back an interrupted deploy of this tier: to the release
        // before it (instances it already replaced go back too), or, when
        // it was the first, only that put-back.
        if let (Target::Previous, Some(interrupted)) = (target, &interrupted)
            && interrupted.tier == tier.name()
            && let Some(release) = dead.release_before(&interrupted.version)
        {
            back_to = Some((release.clone(), interrupted.version.clone()));
        }
        if let (Target::Previous, Some(interrupted), None) = (target, &interrupted, &back_to)
            && interrupted.tier == tier.name()
        {
            let to = "none".to_owned();
            let record = Record {
                who: lock.holder.who.clone(),
                tier: tier.name().to_owned(),
                action: "rollback".to_owned(),
                from: Some(interrupted.version.clone()),
                to: to.clone(),
                started,
                ended: now(),
                outcome: "succeeded".to_owned(),
                reason: Some(format!("put back what {what} changed")),
            };
            let started_ms = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis();
            let recorded =
                history::append(ctx, &bucket, &record, started_ms, &lock.holder.token).await;
            return Ending {
                result: recorded.map(|()| Deployed {
                    tier: tier.name().to_owned(),
                    action: "rollback".to_owned(),
                    from: Some(interrupted.version.clone()),
                    to,
                    snapshot: None,
                    rolled: None,
                    switched: None,
                }),
                keep_lock: false,
            };
        }
    }
    let mut before: Restore = match tier {
        Tier::Api => Restore::BlueGreen(or_give_up!(bluegreen::before(ctx).await)),
        Tier::Worker => Restore::Rolling(or_give_up!(rolling::before(ctx, tier.name()).await)),
    };
    let version = match (target, &back_to) {
        (Target::Release(version), _) => version.clone(),
        (Target::Previous, Some((release, _))) => release.clone(),
        (Target::Previous, None) => or_give_up!(previous(ctx, tier, &before).await),
    };
    let action = match target {
        Target::Release(_) => "deploy",
        Target::Previous => "rollback",
    };
    let Some(manifest) = or_give_up!(release::manifest(ctx, &version).await) else {
        return Ending {
            result: Err(anyhow::anyhow!(
                "release {version} is not published (`accunode releases` lists what is): publish it with `accunode release --version {version}`"
            )),
            keep_lock: false,
        };
    };
    lock.holder.version.clone_from(&version);
    or_give_up!(lock.record(ctx, before.clone()).await);
    let started = now();
    let started_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let previous_version = before.previous_version().cloned();
    // What the history says this went from: for a rollback of an
    // interrupted deploy, the release that deploy was putting on.
    let from = back_to
        .map(|(_, interrupted)| interrupted)
        .or_else(|| previous_version.clone());
    let live_before = match &before {
        Restore::BlueGreen(colours) => Some(colours.live),
        Restore::Rolling(_) => None,
    };
    let mut rolled = Rolled::default();
    let mut switched = Switched::default();
    let mut snapshot_taken = None;
    let (outcome, interrupted) = tokio::select! {
        result = async {
            // Scaling stops first, so the snapshot's minutes do not move a group's size.
            match &before {
                Restore::Rolling(group) => rolling::suspend(ctx, group).await?,
                Restore::BlueGreen(colours) => bluegreen::suspend(ctx, colours).await?,
            }
            let migrations = before_migrations(ctx, previous_version.as_ref(), &manifest).await?;
            if !migrations.is_empty() {
                ctx.progress.done(
                    "+",
                    "database",
                    "snapshot",
                    &format!("{version} brings {} new migrations: {}", migrations.len(), migrations.join(", ")),
                    std::time::Duration::ZERO,
                );
                snapshot_taken = Some(snapshot::take(ctx, &version, started_ms).await?);
            }
            match &mut before {
                Restore::Rolling(group) => rolling::replace(ctx, tier.name(), group, &version, settings.batch_percent, lock, &mut rolled).await,
                Restore::BlueGreen(colours) => bluegreen::switch(ctx, colours, &version, &settings.blue_green, lock, &mut switched).await,
            }
        } => (result, false),
        _ = tokio::signal::ctrl_c() => (Err(anyhow::anyhow!("interrupted (Ctrl-C)")), true),
    };
    // Broken by a forced run that is putting back or redoing this one's
    // changes: nothing more is touched, not even the lock.
    if let Err(error) = &outcome
        && error.is::<lock::LockLost>()
    {
        return Ending {
            result: Err(outcome
                .err()
                .unwrap_or_else(|| anyhow::anyhow!("lock lost"))),
            keep_lock: true,
        };
    }
    let failed = outcome.is_err();
    let put_back = put_back(ctx, &before, failed)
        .await
        .map(|moved| switched.alarms_moved = moved);
    // A blue-green deploy that failed after its commit (the old colour
    // scaling down) is done once the put-back has finished that.
    let committed =
        matches!(&before, Restore::BlueGreen(colours) if Some(colours.live) != live_before);
    let outcome = if committed && put_back.is_ok() {
        Ok(())
    } else {
        outcome
    };
    let record = Record {
        who: lock.holder.who.clone(),
        tier: tier.name().to_owned(),
        action: action.to_owned(),
        from: from.clone(),
        to: version.clone(),
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
    let recorded = history::append(ctx, &bucket, &record, started_ms, &lock.holder.token).await;
    let outcome = outcome.map_err(|error| {
        let stopped = match &before {
            Restore::Rolling(_) => {
                let again = match &previous_version {
                    Some(previous) => format!(
                        "new instances launch with {previous} again; `accunode deploy {tier} --version {previous}` replaces any on {version}",
                        tier = tier.name()
                    ),
                    None => "new instances wait for a release again".to_owned(),
                };
                format!("stopped after {} of its batches; {again}", rolled.batches.len())
            }
            Restore::BlueGreen(colours) => format!(
                "rolled back: the listeners forward to {} ({}) again, {} is back at {} instances",
                colours.live.name(),
                previous_version.as_deref().unwrap_or("no release"),
                colours.idle_group.group,
                colours.idle_group.desired
            ),
        };
        error.context(format!("{action} of {} to {version} {stopped}", tier.name()))
    });
    if let Err(error) = put_back {
        let why = match &outcome {
            Ok(()) => String::new(),
            Err(failed) => format!(" (after: {failed:#})"),
        };
        return Ending {
            result: Err(error.context(format!(
                "the deploy could not put {} back as it was{why}; the lock is kept for `accunode deploy {} … --force` to finish it",
                before.groups(),
                tier.name()
            ))),
            keep_lock: true,
        };
    }
    let result = match (outcome, recorded) {
        (Err(error), _) => Err(error),
        (Ok(()), Err(error)) => Err(error.context(format!(
            "{action} of {} to {version} succeeded, but its record could not be written",
            tier.name()
        ))),
        (Ok(()), Ok(())) => Ok(Deployed {
            tier: tier.name().to_owned(),
            action: action.to_owned(),
            from,
            to: version.clone(),
            snapshot: snapshot_taken,
            rolled: matches!(before, Restore::Rolling(_)).then_some(rolled),
            switched: matches!(before, Restore::BlueGreen(_)).then_some(switched),
        }),
    };
    Ending {
        result,
        keep_lock: false,
    }
}

/// Puts back what `restore` records: the scaling a deploy suspended always;
/// after a failure also the sizes, releases and listeners. The alarms the
/// API's colours moved, by name.
async fn put_back(ctx: &Ctx, restore: &Restore, failed: bool) -> anyhow::Result<Vec<String>> {
    match restore {
        Restore::Rolling(group) => rolling::put_back(ctx, group, failed)
            .await
            .map(|()| Vec::new()),
        Restore::BlueGreen(colours) => bluegreen::put_back(ctx, colours, failed).await,
    }
}

/// The migrations `next` brings that the tier's running release does not
/// (none when the tier runs no release yet: nothing serves from the schema).
async fn before_migrations(
    ctx: &Ctx,
    running: Option<&String>,
    next: &release::Manifest,
) -> anyhow::Result<Vec<String>> {
    let Some(running) = running else {
        return Ok(Vec::new());
    };
    let running = release::manifest(ctx, running)
        .await?
        .with_context(|| format!("the running release {running} has no manifest"))?;
    Ok(snapshot::new_migrations(&running, next))
}

/// The release a rollback of `tier` goes back to: the one the tier ran
/// before the deploy (or rollback) that put its current release there.
async fn previous(ctx: &Ctx, tier: Tier, before: &Restore) -> anyhow::Result<String> {
    let Some(current) = before.previous_version() else {
        bail!(
            "nothing to roll {} back from: no release is deployed to it",
            tier.name()
        );
    };
    let records = history::list(ctx, &bucket(ctx)).await?;
    records
        .iter()
        .rev()
        .filter(|r| r.tier == tier.name() && r.outcome == "succeeded" && &r.to == current)
        .find_map(|r| r.from.clone().filter(|from| from != current))
        .with_context(|| {
            format!(
                "nothing to roll {} back to: no deploy recorded what ran before {current} (`accunode deploys`)",
                tier.name()
            )
        })
}

/// `accunode deploys`: the history and who holds the lock now.
pub async fn deploys(ctx: &Ctx) -> anyhow::Result<(Vec<Record>, Option<Holder>)> {
    let bucket = bucket(ctx);
    Ok((
        history::list(ctx, &bucket).await?,
        lock::holder(ctx, &bucket).await?,
    ))
}

/// A tier's group as `status` shows it: the workers', or one of the API's colours.
#[derive(Debug, Serialize)]
pub struct TierStatus {
    pub tier: String,
    /// The API's colour of this group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub colour: Option<Colour>,
    /// Whether the listeners forward to this colour.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live: Option<bool>,
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

/// The groups the stack has (`known`, as discovered), the API's colours
/// with each instance's health in its target group.
pub async fn status(ctx: &Ctx, known: &Known) -> anyhow::Result<DeployStatus> {
    let bucket = bucket(ctx);
    let live = live_colour(known);
    let mut groups: Vec<(String, Option<Colour>)> = Colour::BOTH
        .into_iter()
        .map(|colour| (colour.tier(), Some(colour)))
        .collect();
    groups.push(("worker".to_owned(), None));
    let mut shown = Vec::new();
    for (tier, colour) in groups {
        if !known.contains_key(&format!("asg-{tier}")) {
            continue;
        }
        let mut group = rolling::describe(ctx, &tier).await?;
        if let Some(target_group) = colour.and_then(|c| known.get(&c.target_group())) {
            rolling::read_target_health(ctx, &target_group.id, &mut group.members).await?;
        }
        shown.push(TierStatus {
            tier: if colour.is_some() { "api" } else { "worker" }.to_owned(),
            colour,
            live: colour.map(|c| c == live),
            release: group.release.clone(),
            desired: group.desired,
            in_service: group.in_service().count(),
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
        // Filtered here too: moto ignores StateValue beside a name prefix.
        alarms_firing: alarms
            .metric_alarms()
            .iter()
            .filter(|a| a.state_value() == Some(&aws_sdk_cloudwatch::types::StateValue::Alarm))
            .filter_map(|a| a.alarm_name())
            .map(str::to_owned)
            .collect(),
    })
}

/// Holds the deploy lock for `command` (`provision`, `destroy`) while it
/// changes the stack, so that no deploy resizes a group it is converging and
/// it converges none a deploy is replacing. A stack without a bucket yet
/// has nothing deployed and nowhere to keep a lock: `None` then.
pub async fn hold_for(ctx: &Ctx, command: &str) -> anyhow::Result<Option<lock::Lock>> {
    let bucket = bucket(ctx);
    // Another provision or destroy (most likely one that was killed) is
    // taken over: both converge the stack from what exists, so a re-run
    // after a kill goes on. A deploy is waited out.
    let earlier = lock::holder(ctx, &bucket).await?;
    if let Some(holder) = &earlier
        && !holder.tier.is_empty()
    {
        bail!(
            "{holder} holds the stack's deploy lock; {command} once it has ended (`accunode deploys` shows it), or if it died, take it over with `accunode deploy {} --version … --force`, which puts back what it changed",
            holder.tier
        );
    }
    let holder = Holder {
        who: who(),
        tier: String::new(),
        action: command.to_owned(),
        version: String::new(),
        since: now(),
        token: token(),
        restore: None,
        interrupted: None,
    };
    match lock::take(ctx, &bucket, holder, Duration::ZERO, earlier.is_some()).await {
        Ok(lock) => Ok(Some(lock)),
        Err(error) if error.is::<super::aws::NoBucket>() => Ok(None),
        Err(error) => Err(error),
    }
}

/// Gives the lock `hold_for` took back, whatever `result` is; a stack
/// destroyed with its bucket took the lock with it.
pub async fn give_back<T>(
    ctx: &Ctx,
    lock: Option<lock::Lock>,
    result: anyhow::Result<T>,
) -> anyhow::Result<T> {
    let Some(lock) = lock else {
        return result;
    };
    match (result, lock.release(ctx).await) {
        (result, Ok(())) => result,
        (Ok(_), Err(error)) => Err(error.context("done, but the stack's lock could not be given up; `accunode unlock --force` removes it")),
        (Err(error), Err(_)) => Err(error),
    }
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
