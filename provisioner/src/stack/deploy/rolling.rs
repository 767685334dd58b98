//! The workers' rolling deploy: the group is replaced in batches (50 % of
//! its desired capacity by default, as the original design's manual steps).
//! Each batch first adds that many instances of the new release and waits for
//! them to be in service, then terminates as many old ones (they stop on
//! SIGTERM, finishing or handing back their chunk), so in-service capacity
//! never drops below desired. Scale-in and scale-out by alarms and schedules
//! are suspended meanwhile; whatever happens, the group's maximum and its
//! scaling come back as they were. On a failure the release new instances
//! launch with goes back to the previous one.
//!
//! What an instance runs is its own tag `accunode:release`, which its group
//! puts on every instance it launches (the group's tag, propagated at
//! launch) and which the instance reads at boot through instance metadata:
//! one record, so an instance never runs one release while saying another.

use std::time::Instant;

use anyhow::{Context, bail};
use aws_sdk_autoscaling::types::Tag;
use serde::Serialize;

use super::lock::{GroupState, Lock};
use crate::stack::aws::aws_error;
use crate::stack::resources::Ctx;
use crate::stack::resources::wait::{Poll, wait_for};
use crate::stack::spec::{COMPONENT_TAG, STACK_TAG};

/// The tag that names an instance's release.
pub const RELEASE_TAG: &str = "accunode:release";
/// What a deploy stops while it replaces instances.
const SUSPENDED: [&str; 3] = ["AlarmNotification", "ScheduledActions", "AZRebalance"];

/// An instance of the group.
#[derive(Debug, Clone, Serialize)]
pub struct Member {
    pub id: String,
    pub lifecycle: String,
    pub release: Option<String>,
    /// Its state in its target group (API instances, when asked for).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_health: Option<String>,
}

/// The group as a deploy sees it.
#[derive(Debug)]
pub struct Group {
    pub name: String,
    /// What new instances launch with: the group's propagated release tag.
    pub release: Option<String>,
    pub min: i32,
    pub desired: i32,
    pub max: i32,
    pub suspended: Vec<String>,
    pub members: Vec<Member>,
}

impl Group {
    pub fn in_service(&self) -> impl Iterator<Item = &Member> {
        self.members.iter().filter(|m| m.lifecycle == "InService")
    }
}

/// The stack's group of `tier`, with each instance's release tag.
pub async fn describe(ctx: &Ctx, tier: &str) -> anyhow::Result<Group> {
    let name = format!("{}-{tier}-asg", ctx.stack);
    let groups = ctx
        .aws
        .autoscaling
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(&name)
        .send()
        .await
        .map_err(aws_error)
        .with_context(|| format!("cannot read the {tier} group {name}"))?;
    let Some(group) = groups.auto_scaling_groups().first() else {
        bail!(
            "stack {} has no {tier} group ({name}): run `accunode provision` first",
            ctx.stack
        );
    };
    let tag = |key: &str| {
        group
            .tags()
            .iter()
            .find(|t| t.key() == Some(key))
            .and_then(|t| t.value())
    };
    if tag(STACK_TAG) != Some(ctx.stack.as_str())
        || tag(COMPONENT_TAG) != Some(&*format!("asg-{tier}"))
    {
        bail!(
            "the group {name} is not this stack's (no tags {STACK_TAG}={} {COMPONENT_TAG}=asg-{tier}): not touched",
            ctx.stack
        );
    }
    let ids: Vec<String> = group
        .instances()
        .iter()
        .filter_map(|i| i.instance_id())
        .map(str::to_owned)
        .collect();
    let mut releases = std::collections::BTreeMap::new();
    if !ids.is_empty() {
        let described = ctx
            .aws
            .ec2
            .describe_instances()
            .set_instance_ids(Some(ids))
            .send()
            .await
            .map_err(aws_error)
            .context("cannot read the group's instances")?;
        for instance in described.reservations().iter().flat_map(|r| r.instances()) {
            let release = instance
                .tags()
                .iter()
                .find(|t| t.key() == Some(RELEASE_TAG))
                .and_then(|t| t.value())
                .map(str::to_owned);
            if let Some(id) = instance.instance_id() {
                releases.insert(id.to_owned(), release);
            }
        }
    }
    Ok(Group {
        name: name.clone(),
        release: tag(RELEASE_TAG).map(str::to_owned),
        min: group.min_size().unwrap_or(0),
        desired: group.desired_capacity().unwrap_or(0),
        max: group.max_size().unwrap_or(0),
        suspended: group
            .suspended_processes()
            .iter()
            .filter_map(|p| p.process_name())
            .map(str::to_owned)
            .collect(),
        members: group
            .instances()
            .iter()
            .map(|i| {
                let id = i.instance_id().unwrap_or_default().to_owned();
                Member {
                    release: releases.get(&id).cloned().flatten(),
                    target_health: None,
                    lifecycle: i
                        .lifecycle_state()
                        .map(|s| s.as_str().to_owned())
                        .unwrap_or_default(),
                    id,
                }
            })
            .collect(),
    })
}

/// Fills in each member's state in the target group `target_group` (an ARN),
/// with AWS's reason when it gives one: "unhealthy (Target.FailedHealthChecks)".
pub async fn read_target_health(
    ctx: &Ctx,
    target_group: &str,
    members: &mut [Member],
) -> anyhow::Result<()> {
    let health = ctx
        .aws
        .elb
        .describe_target_health()
        .target_group_arn(target_group)
        .send()
        .await
        .map_err(aws_error)
        .context("cannot read the targets' health")?;
    for member in members.iter_mut() {
        let found = health
            .target_health_descriptions()
            .iter()
            .find(|d| d.target().and_then(|t| t.id()) == Some(member.id.as_str()))
            .and_then(|d| d.target_health());
        member.target_health = Some(match found {
            None => "not registered".to_owned(),
            Some(health) => match (health.state(), health.reason()) {
                (Some(state), Some(reason)) => format!("{} ({})", state.as_str(), reason.as_str()),
                (Some(state), None) => state.as_str().to_owned(),
                (None, _) => "unknown".to_owned(),
            },
        });
    }
    Ok(())
}

/// Makes the group's new instances launch with no release again (after a
/// failed first deploy): they wait for one, as before it.
async fn clear_release(ctx: &Ctx, group: &str) -> anyhow::Result<()> {
    ctx.aws
        .autoscaling
        .delete_tags()
        .tags(
            Tag::builder()
                .resource_id(group)
                .resource_type("auto-scaling-group")
                .key(RELEASE_TAG)
                .build(),
        )
        .send()
        .await
        .map_err(aws_error)
        .with_context(|| format!("cannot remove the release tag of {group}"))?;
    Ok(())
}

/// Makes `version` what new instances of the group launch with.
pub(super) async fn set_release(ctx: &Ctx, group: &str, version: &str) -> anyhow::Result<()> {
    ctx.aws
        .autoscaling
        .create_or_update_tags()
        .tags(
            Tag::builder()
                .resource_id(group)
                .resource_type("auto-scaling-group")
                .key(RELEASE_TAG)
                .value(version)
                .propagate_at_launch(true)
                .build(),
        )
        .send()
        .await
        .map_err(aws_error)
        .with_context(|| format!("cannot tag {group} with its release"))?;
    Ok(())
}

/// One batch of the rolling deploy.
#[derive(Debug, Serialize)]
pub struct Batch {
    pub launched: Vec<String>,
    pub terminated: Vec<String>,
    pub seconds: f64,
}

/// What the rolling deploy did.
#[derive(Debug, Default, Serialize)]
pub struct Rolled {
    pub batch_size: i32,
    pub batches: Vec<Batch>,
}

/// The group's settings before the deploy, and the release it ran.
pub async fn before(ctx: &Ctx, tier: &str) -> anyhow::Result<GroupState> {
    let group = describe(ctx, tier).await?;
    Ok(GroupState {
        group: group.name,
        min: group.min,
        desired: group.desired,
        max: group.max,
        suspended_before: group.suspended,
        previous_version: group.release,
    })
}

fn ours(before: &GroupState) -> Vec<String> {
    SUSPENDED
        .iter()
        .filter(|p| !before.suspended_before.iter().any(|s| s == *p))
        .map(|p| (*p).to_owned())
        .collect()
}

/// Stops scale-in and scale-out by alarms and schedules for the deploy's
/// duration (the processes `before` had suspended already stay so).
pub async fn suspend(ctx: &Ctx, before: &GroupState) -> anyhow::Result<()> {
    let suspend = ours(before);
    if !suspend.is_empty() {
        ctx.aws
            .autoscaling
            .suspend_processes()
            .auto_scaling_group_name(&before.group)
            .set_scaling_processes(Some(suspend))
            .send()
            .await
            .map_err(aws_error)
            .context("cannot suspend the group's scaling")?;
    }
    Ok(())
}

/// Whether a member counts as one of the group's instances: launching or in
/// service, not on its way out (terminating, detaching, in standby).
pub(super) fn serving(member: &Member) -> bool {
    member.lifecycle == "InService" || member.lifecycle.starts_with("Pending")
}

/// Replaces every instance of the group that does not run `version`, in
/// batches of `percent` % of the desired capacity. `rolled` tells what is
/// done so far when it fails part-way.
pub async fn replace(
    ctx: &Ctx,
    tier: &str,
    before: &GroupState,
    version: &str,
    percent: u8,
    lock: &mut Lock,
    rolled: &mut Rolled,
) -> anyhow::Result<()> {
    let autoscaling = &ctx.aws.autoscaling;
    let group = before.group.as_str();
    let desired = before.desired;
    set_release(ctx, group, version).await?;
    let batch = ((i64::from(desired) * i64::from(percent) + 99) / 100).max(1);
    let batch = i32::try_from(batch).context("batch size")?;
    rolled.batch_size = batch;
    if before.max < desired + batch {
        autoscaling
            .update_auto_scaling_group()
            .auto_scaling_group_name(group)
            .max_size(desired + batch)
            .send()
            .await
            .map_err(aws_error)
            .context("cannot make room for a batch")?;
    }
    loop {
        lock.check(ctx).await?;
        let now = describe(ctx, tier).await?;
        // Old instances in service go first: they are the ones serving.
        let mut old: Vec<&Member> = now
            .members
            .iter()
            .filter(|m| serving(m) && m.release.as_deref() != Some(version))
            .collect();
        old.sort_by_key(|m| m.lifecycle != "InService");
        let old: Vec<String> = old.into_iter().map(|m| m.id.clone()).collect();
        if old.is_empty() {
            return Ok(());
        }
        // More in service than desired (a dead deploy's batch that never got
        // to its terminations): old ones go first, down to desired.
        let spare = now
            .in_service()
            .count()
            .saturating_sub(usize::try_from(desired).unwrap_or(0));
        if spare > 0 {
            terminate(ctx, &old[..spare.min(old.len())]).await?;
            continue;
        }
        let started = Instant::now();
        let count = batch.min(i32::try_from(old.len()).unwrap_or(i32::MAX));
        let new_before: Vec<String> = now
            .in_service()
            .filter(|m| m.release.as_deref() == Some(version))
            .map(|m| m.id.clone())
            .collect();
        autoscaling
            .set_desired_capacity()
            .auto_scaling_group_name(group)
            .desired_capacity(desired + count)
            .honor_cooldown(false)
            .send()
            .await
            .map_err(aws_error)
            .context("cannot add a batch of instances")?;
        let component = format!("asg-{tier}");
        let launched = wait_for(ctx, &component, || async {
            let now = describe(ctx, tier).await?;
            let new: Vec<String> = now
                .in_service()
                .filter(|m| m.release.as_deref() == Some(version) && !new_before.contains(&m.id))
                .map(|m| m.id.clone())
                .collect();
            let in_service = now.in_service().count();
            Ok(
                if new.len() >= usize::try_from(count).unwrap_or(0)
                    && in_service >= usize::try_from(desired + count).unwrap_or(0)
                {
                    Poll::Ready(new)
                } else {
                    Poll::Pending(format!("{} of {count} new instances in service", new.len()))
                },
            )
        })
        .await?;
        let terminated: Vec<String> = old
            .into_iter()
            .take(usize::try_from(count).unwrap_or(0))
            .collect();
        terminate(ctx, &terminated).await?;
        wait_for(ctx, &component, || async {
            let now = describe(ctx, tier).await?;
            let left = now
                .members
                .iter()
                .filter(|m| terminated.contains(&m.id))
                .count();
            Ok(if left == 0 {
                Poll::Ready(())
            } else {
                Poll::Pending(format!("{left} old instances stopping"))
            })
        })
        .await?;
        ctx.progress.done(
            "~",
            &component,
            "rolling batch",
            &format!(
                "{} on {version} in service, {} old terminated",
                launched.len(),
                terminated.len()
            ),
            started.elapsed(),
        );
        rolled.batches.push(Batch {
            launched,
            terminated,
            seconds: started.elapsed().as_secs_f64(),
        });
    }
}

/// Terminates `ids` in their group, decrementing its desired capacity.
pub(super) async fn terminate(ctx: &Ctx, ids: &[String]) -> anyhow::Result<()> {
    for id in ids {
        ctx.aws
            .autoscaling
            .terminate_instance_in_auto_scaling_group()
            .instance_id(id)
            .should_decrement_desired_capacity(true)
            .send()
            .await
            .map_err(aws_error)
            .with_context(|| format!("cannot terminate the old instance {id}"))?;
    }
    Ok(())
}

/// Puts back what the deploy changed: the minimum, maximum and the scaling it
/// suspended always; after a failure also the release new instances launch
/// with, and the desired capacity.
pub async fn put_back(ctx: &Ctx, before: &GroupState, failed: bool) -> anyhow::Result<()> {
    let autoscaling = &ctx.aws.autoscaling;
    let mut update = autoscaling
        .update_auto_scaling_group()
        .auto_scaling_group_name(&before.group)
        .min_size(before.min)
        .max_size(before.max);
    if failed {
        update = update.desired_capacity(before.desired);
        match &before.previous_version {
            Some(previous) => set_release(ctx, &before.group, previous).await?,
            None => clear_release(ctx, &before.group).await?,
        }
    }
    update
        .send()
        .await
        .map_err(aws_error)
        .context("cannot restore the group's size")?;
    let resume = ours(before);
    if !resume.is_empty() {
        autoscaling
            .resume_processes()
            .auto_scaling_group_name(&before.group)
            .set_scaling_processes(Some(resume))
            .send()
            .await
            .map_err(aws_error)
            .context("cannot resume the group's scaling")?;
    }
    Ok(())
}
