//! The API and worker Auto Scaling groups and their scaling policies: target
//! tracking on CPU for the API, step scaling for workers, triggered by the
//! definition's alarms on the workers' queue length and task wait time
//! (`AccuNode/Workers`, dimension `Stack`).
//! Sizes change in place with UpdateAutoScalingGroup.

use anyhow::{Context, bail};
use aws_sdk_autoscaling::types::{
    LaunchTemplateSpecification, MetricType, PredefinedMetricSpecification, StepAdjustment, Tag,
    TargetTrackingConfiguration,
};

use super::{Ctx, Known, Poll, adopt, created, existing, id, ids, tagged, wait_for};
use crate::stack::aws::{EXISTS, GONE, OrAlready, aws_error};
use crate::stack::spec::{Existing, Kind, Resource};

const TIERS: [&str; 2] = ["api", "worker"];

fn group_name(ctx: &Ctx, tier: &str) -> String {
    format!("{}-{tier}-asg", ctx.stack)
}

pub async fn discover(ctx: &Ctx) -> anyhow::Result<Vec<Existing>> {
    let autoscaling = &ctx.aws.autoscaling;
    let names: Vec<String> = TIERS.iter().map(|tier| group_name(ctx, tier)).collect();
    let groups = autoscaling
        .describe_auto_scaling_groups()
        .set_auto_scaling_group_names(Some(names.clone()))
        .send()
        .await
        .map_err(aws_error)
        .context("cannot look up the Auto Scaling groups")?;
    let mut found = Vec::new();
    let mut ours = Vec::new();
    for group in groups.auto_scaling_groups() {
        let name = group.auto_scaling_group_name().unwrap_or_default();
        let tags = group
            .tags()
            .iter()
            .map(|t| (t.key().unwrap_or(""), t.value().unwrap_or("")));
        let Some((component, _)) = tagged(&ctx.stack, tags) else {
            bail!(
                "the Auto Scaling group {name} exists without the tag accunode:stack={}: not this stack's, not touched",
                ctx.stack
            );
        };
        let number = |n: Option<i32>| n.unwrap_or_default().to_string();
        let template = group
            .launch_template()
            .and_then(|t| t.launch_template_id())
            .unwrap_or_default();
        let subnets: Vec<&str> = group
            .vpc_zone_identifier()
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        let mut e = existing(
            component,
            Kind::AutoScalingGroup,
            name.to_owned(),
            name.to_owned(),
            &[
                ("launch_template", template.to_owned()),
                ("min", number(group.min_size())),
                ("max", number(group.max_size())),
                ("desired", number(group.desired_capacity())),
                ("subnets", subnets.join(",")),
                ("cooldown", number(group.default_cooldown())),
                (
                    "health_check_grace",
                    number(group.health_check_grace_period()),
                ),
                (
                    "health_check_type",
                    group.health_check_type().unwrap_or_default().to_owned(),
                ),
                ("target_groups", group.target_group_arns().join(",")),
            ],
        );
        let in_service = group
            .instances()
            .iter()
            .filter(|i| i.lifecycle_state().map(|s| s.as_str()) == Some("InService"))
            .count();
        e.attrs
            .insert("instances".into(), group.instances().len().to_string());
        e.attrs.insert("in_service".into(), in_service.to_string());
        ours.push(name.to_owned());
        found.push(e);
    }
    if !ours.is_empty() {
        let policies = autoscaling
            .describe_policies()
            .set_auto_scaling_group_name(None)
            .send()
            .await
            .map_err(aws_error)
            .context("cannot list the scaling policies")?;
        for policy in policies.scaling_policies() {
            let group = policy.auto_scaling_group_name().unwrap_or_default();
            let name = policy.policy_name().unwrap_or_default();
            let Some(suffix) = name.strip_prefix(&format!("{}-", ctx.stack)) else {
                continue;
            };
            if !ours.iter().any(|g| g == group) {
                continue;
            }
            let target = policy
                .target_tracking_configuration()
                .map(|t| {
                    let metric = t
                        .predefined_metric_specification()
                        .and_then(|m| m.predefined_metric_type())
                        .map(|m| m.as_str().to_owned())
                        .unwrap_or_default();
                    format!("{metric} {}", t.target_value().unwrap_or_default())
                })
                .unwrap_or_default();
            let mut props = vec![
                ("group", group.to_owned()),
                ("type", policy.policy_type().unwrap_or_default().to_owned()),
                (
                    "warmup",
                    policy
                        .estimated_instance_warmup()
                        .unwrap_or_default()
                        .to_string(),
                ),
            ];
            if target.is_empty() {
                props.push(("steps", steps_text(policy.step_adjustments())));
            } else {
                props.push(("target", target));
            }
            let mut e = existing(
                format!("policy-{suffix}"),
                Kind::ScalingPolicy,
                name.to_owned(),
                policy.policy_arn().unwrap_or_default().to_owned(),
                &props,
            );
            e.attrs.insert("group_name".into(), group.to_owned());
            found.push(e);
        }
    }
    Ok(found)
}

fn bound(value: Option<f64>) -> String {
    value.map(|v| v.to_string()).unwrap_or_default()
}

/// Steps as "0..20:+1,20..:+2" (bounds are relative to the alarm threshold).
fn steps_text(steps: &[StepAdjustment]) -> String {
    steps
        .iter()
        .map(|s| {
            format!(
                "{}..{}:{:+}",
                bound(s.metric_interval_lower_bound()),
                bound(s.metric_interval_upper_bound()),
                s.scaling_adjustment().unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn parse_steps(text: &str) -> anyhow::Result<Vec<StepAdjustment>> {
    text.split(',')
        .map(|step| {
            let (range, adjustment) = step
                .split_once(':')
                .with_context(|| format!("malformed step {step:?}"))?;
            let (lower, upper) = range
                .split_once("..")
                .with_context(|| format!("malformed step {step:?}"))?;
            let bound = |b: &str| {
                if b.is_empty() {
                    Ok(None)
                } else {
                    b.parse::<f64>().map(Some)
                }
            };
            Ok(StepAdjustment::builder()
                .set_metric_interval_lower_bound(bound(lower)?)
                .set_metric_interval_upper_bound(bound(upper)?)
                .scaling_adjustment(adjustment.parse()?)
                .build())
        })
        .collect()
}

pub async fn create_group(
    ctx: &Ctx,
    known: &Known,
    resource: &Resource,
) -> anyhow::Result<Existing> {
    let p = &resource.props;
    let number = |key: &str| {
        p[key]
            .parse::<i32>()
            .with_context(|| format!("{key} is not a number"))
    };
    let tags = ctx
        .tags(&resource.component, &resource.name)
        .into_iter()
        .map(|(key, value)| {
            Tag::builder()
                .key(key)
                .value(value)
                .resource_id(&resource.name)
                .resource_type("auto-scaling-group")
                .propagate_at_launch(true)
                .build()
        })
        .collect();
    let target_groups = ids(known, &p["target_groups"])?;
    if ctx
        .aws
        .autoscaling
        .create_auto_scaling_group()
        .auto_scaling_group_name(&resource.name)
        .launch_template(
            LaunchTemplateSpecification::builder()
                .launch_template_id(id(known, &p["launch_template"])?)
                .version("$Default")
                .build(),
        )
        .min_size(number("min")?)
        .max_size(number("max")?)
        .desired_capacity(number("desired")?)
        .vpc_zone_identifier(ids(known, &p["subnets"])?.join(","))
        .default_cooldown(number("cooldown")?)
        .health_check_grace_period(number("health_check_grace")?)
        .health_check_type(&p["health_check_type"])
        .set_target_group_arns((!target_groups.is_empty()).then_some(target_groups))
        .set_tags(Some(tags))
        .send()
        .await
        .or_already(EXISTS)?
        .is_none()
    {
        adopt(ctx, resource, discover(ctx).await?)?;
    }
    Ok(created(resource, resource.name.clone()))
}

pub async fn update_group(
    ctx: &Ctx,
    known: &Known,
    resource: &Resource,
    current: &Existing,
) -> anyhow::Result<Existing> {
    let p = &resource.props;
    let number = |key: &str| {
        p[key]
            .parse::<i32>()
            .with_context(|| format!("{key} is not a number"))
    };
    ctx.aws
        .autoscaling
        .update_auto_scaling_group()
        .auto_scaling_group_name(&current.id)
        .launch_template(
            LaunchTemplateSpecification::builder()
                .launch_template_id(id(known, &p["launch_template"])?)
                .version("$Default")
                .build(),
        )
        .min_size(number("min")?)
        .max_size(number("max")?)
        .desired_capacity(number("desired")?)
        .vpc_zone_identifier(ids(known, &p["subnets"])?.join(","))
        .default_cooldown(number("cooldown")?)
        .health_check_grace_period(number("health_check_grace")?)
        .health_check_type(&p["health_check_type"])
        .send()
        .await
        .map_err(aws_error)?;
    let wanted = ids(known, &p["target_groups"])?;
    let have = ids(known, &current.props["target_groups"]).unwrap_or_default();
    let missing: Vec<String> = wanted
        .iter()
        .filter(|t| !have.contains(t))
        .cloned()
        .collect();
    let extra: Vec<String> = have
        .iter()
        .filter(|t| !wanted.contains(t))
        .cloned()
        .collect();
    if !missing.is_empty() {
        ctx.aws
            .autoscaling
            .attach_load_balancer_target_groups()
            .auto_scaling_group_name(&current.id)
            .set_target_group_arns(Some(missing))
            .send()
            .await
            .map_err(aws_error)?;
    }
    if !extra.is_empty() {
        ctx.aws
            .autoscaling
            .detach_load_balancer_target_groups()
            .auto_scaling_group_name(&current.id)
            .set_target_group_arns(Some(extra))
            .send()
            .await
            .or_already(GONE)?;
    }
    Ok(created(resource, current.id.clone()))
}

/// Force-deletes the group (its instances are terminated) and waits until it is gone.
pub async fn delete_group(ctx: &Ctx, current: &Existing) -> anyhow::Result<()> {
    ctx.aws
        .autoscaling
        .delete_auto_scaling_group()
        .auto_scaling_group_name(&current.id)
        .force_delete(true)
        .send()
        .await
        .or_already(GONE)?;
    wait_for(ctx, &current.component, || async {
        let groups = ctx
            .aws
            .autoscaling
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(&current.id)
            .send()
            .await
            .map_err(aws_error)?;
        Ok(match groups.auto_scaling_groups().first() {
            None => Poll::Ready(()),
            Some(group) => Poll::Pending(group.status().unwrap_or("deleting").to_owned()),
        })
    })
    .await
}

/// Creates or replaces a policy (PutScalingPolicy is both), and reads its ARN
/// back with DescribePolicies: some endpoints leave it out of the answer.
pub async fn put_policy(ctx: &Ctx, known: &Known, resource: &Resource) -> anyhow::Result<Existing> {
    let p = &resource.props;
    let group = id(known, &p["group"])?;
    let mut request = ctx
        .aws
        .autoscaling
        .put_scaling_policy()
        .auto_scaling_group_name(group)
        .policy_name(&resource.name)
        .policy_type(&p["type"])
        .estimated_instance_warmup(p["warmup"].parse()?);
    if let Some(target) = p.get("target") {
        let (metric, value) = target.split_once(' ').context("malformed target")?;
        request = request.target_tracking_configuration(
            TargetTrackingConfiguration::builder()
                .predefined_metric_specification(
                    PredefinedMetricSpecification::builder()
                        .predefined_metric_type(MetricType::from(metric))
                        .build(),
                )
                .target_value(value.parse()?)
                .build(),
        );
    } else {
        request = request
            .adjustment_type("ChangeInCapacity")
            .metric_aggregation_type("Average")
            .set_step_adjustments(Some(parse_steps(&p["steps"])?));
    }
    request.send().await.map_err(aws_error)?;
    let policies = ctx
        .aws
        .autoscaling
        .describe_policies()
        .auto_scaling_group_name(group)
        .policy_names(&resource.name)
        .send()
        .await
        .map_err(aws_error)?;
    let arn = policies
        .scaling_policies()
        .first()
        .and_then(|p| p.policy_arn())
        .context("the policy has no ARN")?;
    Ok(created(resource, arn.to_owned()))
}

pub async fn delete_policy(ctx: &Ctx, current: &Existing) -> anyhow::Result<()> {
    let group_name = current
        .attrs
        .get("group_name")
        .context("the policy has no group")?;
    ctx.aws
        .autoscaling
        .delete_policy()
        .auto_scaling_group_name(group_name)
        .policy_name(&current.name)
        .send()
        .await
        .or_already(GONE)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_round_trip() {
        for text in ["0..20:+1,20..:+2", "..0:-1"] {
            assert_eq!(steps_text(&parse_steps(text).unwrap()), text);
        }
    }
}
