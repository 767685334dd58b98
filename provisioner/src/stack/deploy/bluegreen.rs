//! The API's blue-green deploy. The API has two colours, each its own Auto
//! Scaling group and target group (both in the stack definition); the
//! listener forwards to the live one and the idle one is at zero. A deploy
//! brings the idle colour up on the new release at the live colour's current
//! size, waits until every one of its instances is healthy in its target
//! group (the gate), optionally sends it a canary share of the requests while
//! it watches the API's alarms, switches the listeners, lets the old colour
//! drain, then scales it to zero. Until the old colour starts scaling down,
//! any failure, a canary alarm or Ctrl-C puts everything back as it was: the
//! listeners on the old colour, the new one at its former size and release.
//!
//! From the moment the old colour starts scaling down, the deploy is
//! committed: the lock records the new colour as the one to keep, so neither
//! a failure nor a forced take-over ever points the listeners at a colour
//! without instances.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use aws_sdk_cloudwatch::types::StateValue;
use serde::Serialize;

use super::lock::{Colours, GroupState, Lock, Restore};
use super::rolling;
use crate::stack::aws::aws_error;
use crate::stack::resources::wait::{Poll, wait_then};
use crate::stack::resources::{Ctx, Known, ListenerAction, alarm, live_colour, set_action};
use crate::stack::spec::{Colour, Kind};

/// What a wait that times out before the switch leads to.
const ROLLS_BACK: &str = "the deploy rolls back";
/// How often a canary looks at the alarms.
const CANARY_POLL: Duration = Duration::from_secs(2);

/// The blue-green flags of `deploy api` and `rollback api`.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The share of requests the new colour gets before the switch (0: no canary).
    pub canary_percent: u8,
    pub canary_wait: Duration,
    /// How long the old colour keeps its instances after the switch (None:
    /// its target group's deregistration delay).
    pub drain: Option<Duration>,
}

/// What the canary did.
#[derive(Debug, Serialize)]
pub struct Canary {
    pub percent: u8,
    pub seconds: f64,
    pub alarms_watched: Vec<String>,
}

/// What a blue-green deploy did.
#[derive(Debug, Default, Serialize)]
pub struct Switched {
    pub from_colour: String,
    pub to_colour: String,
    /// The new colour's instances, each healthy in its target group.
    pub instances: Vec<String>,
    pub gate_seconds: f64,
    pub canary: Option<Canary>,
    pub drained_seconds: f64,
    /// The alarms on the API's group, now on the new colour's.
    pub alarms_moved: Vec<String>,
}

/// The colours and listeners as they are before the deploy.
pub async fn before(ctx: &Ctx) -> anyhow::Result<Colours> {
    let known = crate::stack::discover_kinds(
        ctx,
        &[Kind::LoadBalancer, Kind::Listener, Kind::TargetGroup],
    )
    .await?;
    let live = live_colour(&known);
    let listeners: Vec<String> = forwarding_listeners(&known)
        .iter()
        .map(|listener| listener.id.clone())
        .collect();
    if listeners.is_empty() {
        bail!(
            "stack {} has no listener forwarding to the API: run `accunode provision` first",
            ctx.stack
        );
    }
    let mut target_groups = BTreeMap::new();
    for colour in Colour::BOTH {
        let target_group = known.get(&colour.target_group()).with_context(|| {
            format!(
                "stack {} has no {} target group: run `accunode provision` first",
                ctx.stack,
                colour.name()
            )
        })?;
        target_groups.insert(colour.name().to_owned(), target_group.id.clone());
    }
    Ok(Colours {
        live,
        live_group: rolling::before(ctx, &live.tier()).await?,
        idle_group: rolling::before(ctx, &live.other().tier()).await?,
        listeners,
        target_groups,
    })
}

/// The listeners that forward to the API (with HTTPS, the HTTP one only redirects).
fn forwarding_listeners(known: &Known) -> Vec<&crate::stack::spec::Existing> {
    known
        .values()
        .filter(|e| e.kind == Kind::Listener)
        .filter(|e| {
            e.props
                .get("action")
                .and_then(|action| action.parse::<ListenerAction>().ok())
                .is_some_and(|action| action.serving().is_some())
        })
        .collect()
}

/// Stops scaling by alarms and schedules on both colours.
pub async fn suspend(ctx: &Ctx, colours: &Colours) -> anyhow::Result<()> {
    rolling::suspend(ctx, &colours.live_group).await?;
    rolling::suspend(ctx, &colours.idle_group).await
}

/// Points every forwarding listener at `action`, target groups named by colour.
async fn point(ctx: &Ctx, colours: &Colours, action: &ListenerAction) -> anyhow::Result<()> {
    let arn = |colour: &str| {
        colours
            .target_groups
            .get(colour)
            .cloned()
            .with_context(|| format!("no {colour} target group recorded"))
    };
    for listener in &colours.listeners {
        set_action(ctx, listener, action, arn).await?;
    }
    Ok(())
}

fn forward(colour: Colour) -> ListenerAction {
    ListenerAction::Forward {
        target_group: colour.name().to_owned(),
    }
}

/// Deploys `version` to the idle colour and switches to it. `restore` is
/// what a failure puts back; it becomes the new colour once the deploy is
/// committed (and the lock records that).
pub async fn switch(
    ctx: &Ctx,
    restore: &mut Colours,
    version: &str,
    options: &Options,
    lock: &mut Lock,
    switched: &mut Switched,
) -> anyhow::Result<()> {
    let (old, new) = (restore.live, restore.live.other());
    switched.from_colour = old.name().to_owned();
    if restore.live_group.previous_version.as_deref() == Some(version) {
        // Already live (a re-run after a deploy that got this far): nothing
        // to bring up or switch; the put-back resumes scaling.
        switched.to_colour = old.name().to_owned();
        ctx.progress.done(
            "=",
            &old.group(),
            "blue-green",
            &format!("{version} is live on {} already", old.name()),
            Duration::ZERO,
        );
        return Ok(());
    }
    switched.to_colour = new.name().to_owned();
    // A canary could not judge a release while an alarm it watches is firing
    // already: refused before anything launches.
    let watched = alarm::api_alarms(ctx);
    let baseline = if options.canary_percent > 0 {
        Some(quiet_alarms(ctx, &watched).await?)
    } else {
        None
    };
    // The new colour serves what the old one serves now, scaled or not.
    let size = restore.live_group.desired.max(1);
    let started = Instant::now();
    lock.check(ctx).await?;
    switched.instances = bring_up(ctx, &restore.idle_group, new, version, size).await?;
    ctx.progress.done(
        "+",
        &new.group(),
        "blue-green",
        &format!("{size} on {version} in service"),
        started.elapsed(),
    );
    let gate = Instant::now();
    health_gate(ctx, restore, new, size).await?;
    switched.gate_seconds = gate.elapsed().as_secs_f64();
    ctx.progress.done(
        "✓",
        &new.target_group(),
        "health gate",
        &format!("{size} of {size} targets healthy"),
        gate.elapsed(),
    );
    if let Some(baseline) = baseline {
        lock.check(ctx).await?;
        let canary_run = Canaried { watched, baseline };
        switched.canary = Some(canary(ctx, restore, new, options, canary_run, lock).await?);
    }
    let switching = Instant::now();
    lock.check(ctx).await?;
    point(ctx, restore, &forward(new)).await?;
    ctx.progress.done(
        "~",
        "listener",
        "switch",
        &format!("{} → {}", old.name(), new.name()),
        switching.elapsed(),
    );
    let drain = match options.drain {
        Some(drain) => drain,
        None => deregistration_delay(ctx, restore, old).await?,
    };
    let draining = Instant::now();
    if !drain.is_zero() {
        ctx.progress.waiting(
            &old.group(),
            &format!(
                "draining for {} s before it scales to zero",
                drain.as_secs()
            ),
            Duration::ZERO,
        );
        tokio::time::sleep(drain).await;
    }
    switched.drained_seconds = draining.elapsed().as_secs_f64();
    commit(ctx, restore, size, version, lock).await?;
    scale_to_zero(ctx, &restore.idle_group, old).await
}

/// Makes the idle colour `size` instances on `version`, all in service:
/// their ids.
async fn bring_up(
    ctx: &Ctx,
    idle: &GroupState,
    colour: Colour,
    version: &str,
    size: i32,
) -> anyhow::Result<Vec<String>> {
    let tier = colour.tier();
    rolling::set_release(ctx, &idle.group, version).await?;
    // An idle colour is at zero; instances on another release (left by a
    // deploy that died) must not pass the gate for this one.
    let now = rolling::describe(ctx, &tier).await?;
    let strays: Vec<String> = now
        .members
        .iter()
        .filter(|m| rolling::serving(m) && m.release.as_deref() != Some(version))
        .map(|m| m.id.clone())
        .collect();
    rolling::terminate(ctx, &strays).await?;
    ctx.aws
        .autoscaling
        .update_auto_scaling_group()
        .auto_scaling_group_name(&idle.group)
        .max_size(idle.max.max(size))
        .desired_capacity(size)
        .send()
        .await
        .map_err(aws_error)
        .with_context(|| format!("cannot bring {} up", idle.group))?;
    let wanted = usize::try_from(size).unwrap_or(0);
    wait_then(ctx, &colour.group(), ROLLS_BACK, || async {
        let now = rolling::describe(ctx, &tier).await?;
        let ready: Vec<String> = now
            .in_service()
            .filter(|m| m.release.as_deref() == Some(version))
            .map(|m| m.id.clone())
            .collect();
        Ok(if ready.len() >= wanted {
            Poll::Ready(ready)
        } else {
            Poll::Pending(format!("{} of {size} on {version} in service", ready.len()))
        })
    })
    .await
}

/// Waits until every instance the new colour's group has now is `healthy`
/// in its target group. Targets the group no longer has are not looked at
/// (a target group lists terminated instances for a while); anything but
/// `healthy` (initial, unhealthy, draining, unused) keeps the gate shut,
/// and a gate still shut after the wait timeout fails the deploy, naming
/// each target that is not healthy and why.
async fn health_gate(
    ctx: &Ctx,
    colours: &Colours,
    colour: Colour,
    size: i32,
) -> anyhow::Result<()> {
    let target_group = colours
        .target_groups
        .get(colour.name())
        .context("no target group recorded")?;
    wait_then(ctx, &colour.target_group(), ROLLS_BACK, || async {
        // Launching ones count too, as not healthy yet: a replaced instance
        // must not let the gate pass with fewer than `size`.
        let group = rolling::describe(ctx, &colour.tier()).await?;
        let mut members: Vec<rolling::Member> =
            group.members.into_iter().filter(rolling::serving).collect();
        rolling::read_target_health(ctx, target_group, &mut members).await?;
        let states: BTreeMap<&str, &str> = members
            .iter()
            .map(|m| {
                (
                    m.id.as_str(),
                    m.target_health.as_deref().unwrap_or("unknown"),
                )
            })
            .collect();
        let shut: Vec<String> = states
            .iter()
            .filter(|(_, state)| **state != "healthy")
            .map(|(id, state)| format!("{id} {state}"))
            .collect();
        let enough = members.len() >= usize::try_from(size).unwrap_or(usize::MAX);
        Ok(if shut.is_empty() && enough {
            Poll::Ready(())
        } else {
            Poll::Pending(format!(
                "{} of {} targets healthy; {}",
                members.len() - shut.len(),
                members.len(),
                shut.join(", ")
            ))
        })
    })
    .await
    .context("health gate: the new instances are not all healthy")
}

/// Alarms by name: state, when it last changed, why.
type AlarmStates = BTreeMap<String, (StateValue, String, String)>;

/// Each watched alarm's state and when it last changed.
async fn alarm_states(ctx: &Ctx, names: &[String]) -> anyhow::Result<AlarmStates> {
    let described = ctx
        .aws
        .cloudwatch
        .describe_alarms()
        .set_alarm_names(Some(names.to_vec()))
        .send()
        .await
        .map_err(aws_error)
        .context("cannot read the API's alarms")?;
    Ok(described
        .metric_alarms()
        .iter()
        .filter_map(|alarm| {
            Some((
                alarm.alarm_name()?.to_owned(),
                (
                    alarm.state_value()?.clone(),
                    alarm
                        .state_updated_timestamp()
                        .map(|t| t.to_string())
                        .unwrap_or_default(),
                    alarm.state_reason().unwrap_or_default().to_owned(),
                ),
            ))
        })
        .collect())
}

/// The watched alarms' states, none of them in ALARM: one firing already
/// could not tell what the new release does.
async fn quiet_alarms(ctx: &Ctx, watched: &[String]) -> anyhow::Result<AlarmStates> {
    let baseline = alarm_states(ctx, watched).await?;
    let firing: Vec<&str> = baseline
        .iter()
        .filter(|(_, (state, _, _))| *state == StateValue::Alarm)
        .map(|(name, _)| name.as_str())
        .collect();
    if !firing.is_empty() {
        bail!(
            "canary: {} already in ALARM, so the canary could not tell what the new release does; deploy once they are OK, or without --canary",
            firing.join(", ")
        );
    }
    Ok(baseline)
}

/// Sends the new colour its share for the canary wait while watching the
/// API's alarms, those on the API's group moved to the new colour's: one
/// that goes into ALARM fails the deploy (the put-back moves them back).
/// The alarms a canary watches and their states before it.
struct Canaried {
    watched: Vec<String>,
    baseline: AlarmStates,
}

async fn canary(
    ctx: &Ctx,
    colours: &Colours,
    new: Colour,
    options: &Options,
    Canaried { watched, baseline }: Canaried,
    lock: &mut Lock,
) -> anyhow::Result<Canary> {
    let known = crate::stack::discover_kinds(
        ctx,
        &[Kind::AutoScalingGroup, Kind::ScalingPolicy, Kind::Alarm],
    )
    .await?;
    alarm::follow_live(ctx, &known, new).await?;
    let percent = options.canary_percent;
    let old = new.other();
    point(
        ctx,
        colours,
        &ListenerAction::Weighted {
            targets: vec![
                (old.name().to_owned(), u32::from(100 - percent)),
                (new.name().to_owned(), u32::from(percent)),
            ],
        },
    )
    .await?;
    let started = Instant::now();
    ctx.progress.waiting(
        "listener",
        &format!(
            "canary: {percent} % to {} for {} s, watching {}",
            new.name(),
            options.canary_wait.as_secs(),
            watched.join(", ")
        ),
        Duration::ZERO,
    );
    loop {
        // A forced run taking the lock over ends the wait too.
        lock.check(ctx).await?;
        let now = alarm_states(ctx, &watched).await?;
        for (name, (state, when, reason)) in &now {
            let changed = baseline
                .get(name)
                .is_none_or(|(_, before, _)| before != when);
            if *state == StateValue::Alarm && changed {
                bail!(
                    "canary: the alarm {name} went into ALARM after {} s with {percent} % on {}: {reason}",
                    started.elapsed().as_secs(),
                    new.name()
                );
            }
        }
        let left = options.canary_wait.saturating_sub(started.elapsed());
        if left.is_zero() {
            break;
        }
        tokio::time::sleep(CANARY_POLL.min(left)).await;
    }
    ctx.progress.done(
        "✓",
        "listener",
        "canary",
        &format!("{percent} % to {}, no alarm", new.name()),
        started.elapsed(),
    );
    Ok(Canary {
        percent,
        seconds: started.elapsed().as_secs_f64(),
        alarms_watched: watched,
    })
}

/// The old colour's target group's deregistration delay: how long the load
/// balancer lets its requests in flight finish.
async fn deregistration_delay(
    ctx: &Ctx,
    colours: &Colours,
    colour: Colour,
) -> anyhow::Result<Duration> {
    let target_group = colours
        .target_groups
        .get(colour.name())
        .context("no target group recorded")?;
    let attributes = ctx
        .aws
        .elb
        .describe_target_group_attributes()
        .target_group_arn(target_group)
        .send()
        .await
        .map_err(aws_error)
        .context("cannot read the old colour's deregistration delay")?;
    let seconds = attributes
        .attributes()
        .iter()
        .find(|a| a.key() == Some("deregistration_delay.timeout_seconds"))
        .and_then(|a| a.value())
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    Ok(Duration::from_secs(seconds))
}

/// From here on the new colour is the one to keep: the lock records it as
/// live, the old colour at zero, before anything scales down.
async fn commit(
    ctx: &Ctx,
    restore: &mut Colours,
    size: i32,
    version: &str,
    lock: &mut Lock,
) -> anyhow::Result<()> {
    let old_live = restore.live_group.clone();
    let old_idle = restore.idle_group.clone();
    let committed = Colours {
        live: restore.live.other(),
        live_group: GroupState {
            min: old_live.min,
            desired: size,
            max: old_live.max.max(size),
            previous_version: Some(version.to_owned()),
            ..old_idle
        },
        idle_group: GroupState {
            min: 0,
            desired: 0,
            ..old_live
        },
        listeners: restore.listeners.clone(),
        target_groups: restore.target_groups.clone(),
    };
    // Recorded before it is acted on: a failure to record leaves the deploy
    // uncommitted, and its put-back switches back to the colour with instances.
    lock.record(ctx, Restore::BlueGreen(committed.clone()))
        .await?;
    *restore = committed;
    let live = &restore.live_group;
    ctx.aws
        .autoscaling
        .update_auto_scaling_group()
        .auto_scaling_group_name(&live.group)
        .min_size(live.min)
        .max_size(live.max)
        .send()
        .await
        .map_err(aws_error)
        .with_context(|| format!("cannot give {} the live colour's sizes", live.group))?;
    Ok(())
}

/// Scales the old colour to zero (its instances terminate in the minutes
/// after; `status` shows them go).
async fn scale_to_zero(ctx: &Ctx, old: &GroupState, colour: Colour) -> anyhow::Result<()> {
    let started = Instant::now();
    ctx.aws
        .autoscaling
        .update_auto_scaling_group()
        .auto_scaling_group_name(&old.group)
        .min_size(0)
        .desired_capacity(0)
        .send()
        .await
        .map_err(aws_error)
        .with_context(|| format!("cannot scale {} to zero", old.group))?;
    ctx.progress.done(
        "-",
        &colour.group(),
        "blue-green",
        "scaled to zero",
        started.elapsed(),
    );
    Ok(())
}

/// Puts back what the deploy changed: always the scaling it suspended and
/// the groups' minimum and maximum; after a failure also the listeners (on
/// the recorded live colour), each group's size and release. The alarms on
/// the API's group then follow the live colour.
pub async fn put_back(ctx: &Ctx, restore: &Colours, failed: bool) -> anyhow::Result<Vec<String>> {
    if failed {
        point(ctx, restore, &forward(restore.live)).await?;
    }
    rolling::put_back(ctx, &restore.idle_group, failed).await?;
    rolling::put_back(ctx, &restore.live_group, failed).await?;
    // What the alarms read and trigger: the groups and the scaling policies.
    let known = crate::stack::discover_kinds(
        ctx,
        &[Kind::AutoScalingGroup, Kind::ScalingPolicy, Kind::Alarm],
    )
    .await?;
    alarm::follow_live(ctx, &known, restore.live).await
}
