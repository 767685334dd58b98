//! The scaling policies of the Auto Scaling groups: target tracking on CPU
//! for each API colour (it acts on the colour that has instances, the live
//! one: an idle colour at zero has no CPU to track), step scaling for workers, triggered by the definition's
//! alarms on the workers' queue length and task wait time
//! (`AccuNode/Workers`, dimension `Stack`). PutScalingPolicy both creates and
//! changes a policy; a change of its type makes a new one.

use anyhow::Context;
use aws_sdk_autoscaling::types::{
    MetricType, PredefinedMetricSpecification, StepAdjustment, TargetTrackingConfiguration,
};

use super::auto_scaling_group::stack_groups;
use super::{Changed, Ctx, Known, ResourceKind, Wanted, created, existing, id, number, resource};
use crate::stack::aws::{GONE, OrAlready, aws_error};
use crate::stack::spec::{Colour, Existing, Kind, Resource};

pub struct ScalingPolicy;

impl ResourceKind for ScalingPolicy {
    fn kind(&self) -> Kind {
        Kind::ScalingPolicy
    }

    fn label(&self) -> &'static str {
        "scaling policy"
    }

    fn desired(&self, wanted: &Wanted<'_>) -> Vec<Resource> {
        let scaling = &wanted.definition.autoscaling;
        let mut policies: Vec<Resource> = Colour::BOTH
            .into_iter()
            .map(|colour| {
                resource(
                    &format!("policy-{}-cpu", colour.tier()),
                    Kind::ScalingPolicy,
                    wanted.name(&format!("{}-cpu", colour.tier())),
                    &[
                        ("group", colour.group()),
                        ("type", "TargetTrackingScaling".into()),
                        (
                            "target",
                            format!(
                                "ASGAverageCPUUtilization {}",
                                number(scaling.api_cpu_target)
                            ),
                        ),
                        ("warmup", scaling.cooldown_secs.to_string()),
                    ],
                    &[&colour.group()],
                )
            })
            .collect();
        policies.extend([
            resource(
                "policy-worker-scale-up",
                Kind::ScalingPolicy,
                wanted.name("worker-scale-up"),
                &[
                    ("group", "asg-worker".into()),
                    ("type", "StepScaling".into()),
                    ("steps", scaling.worker_scale_up_steps.clone()),
                    ("warmup", scaling.cooldown_secs.to_string()),
                ],
                &["asg-worker"],
            ),
            resource(
                "policy-worker-scale-down",
                Kind::ScalingPolicy,
                wanted.name("worker-scale-down"),
                &[
                    ("group", "asg-worker".into()),
                    ("type", "StepScaling".into()),
                    ("steps", scaling.worker_scale_down_steps.clone()),
                    ("warmup", scaling.cooldown_secs.to_string()),
                ],
                &["asg-worker"],
            ),
        ]);
        policies
    }

    fn forces_replacement(&self, key: &str) -> bool {
        key == "type"
    }

    async fn discover(&self, ctx: &Ctx) -> anyhow::Result<Vec<Existing>> {
        discover(ctx).await
    }

    async fn create(
        &self,
        ctx: &Ctx,
        known: &Known,
        resource: &Resource,
    ) -> anyhow::Result<Existing> {
        put(ctx, known, resource).await
    }

    async fn update(
        &self,
        ctx: &Ctx,
        known: &Known,
        resource: &Resource,
        _current: &Existing,
        _changed: &Changed,
    ) -> anyhow::Result<Existing> {
        put(ctx, known, resource).await
    }

    async fn delete(&self, ctx: &Ctx, current: &Existing) -> anyhow::Result<()> {
        delete(ctx, current).await
    }
}

/// The policies of the stack's groups whose names carry the stack's prefix
/// (policies take no tags).
async fn discover(ctx: &Ctx) -> anyhow::Result<Vec<Existing>> {
    let ours: Vec<String> = stack_groups(ctx)
        .await?
        .iter()
        .map(|(_, group)| {
            group
                .auto_scaling_group_name()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    let mut found = Vec::new();
    if !ours.is_empty() {
        let policies = ctx
            .aws
            .autoscaling
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

/// Creates or replaces a policy (PutScalingPolicy is both), and reads its ARN
/// back with DescribePolicies: some endpoints leave it out of the answer.
async fn put(ctx: &Ctx, known: &Known, resource: &Resource) -> anyhow::Result<Existing> {
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

async fn delete(ctx: &Ctx, current: &Existing) -> anyhow::Result<()> {
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
