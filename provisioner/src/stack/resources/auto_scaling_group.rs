//! The Auto Scaling groups: the instances of each tier, from its launch
//! template, in the private subnets. The API has one group per colour, each
//! behind its colour's target group with the load balancer's health check:
//! the live colour (the one the listener forwards to) at the phase's size,
//! the idle one at zero, both launching from the API's launch template.
//! Sizes change in place with UpdateAutoScalingGroup; a delete terminates
//! the instances.

use anyhow::{Context, bail};
use aws_sdk_autoscaling::types::{
    AutoScalingGroup as AwsAutoScalingGroup, LaunchTemplateSpecification, Tag,
};

use super::find::adopt;
use super::listener::live_colour;
use super::tags::tagged;
use super::wait::{Poll, wait_for};
use super::{Changed, Ctx, Known, ResourceKind, Wanted, created, existing, id, ids, resource};
use crate::stack::aws::{EXISTS, GONE, OrAlready, aws_error};
use crate::stack::definition::Definition;
use crate::stack::spec::{Colour, Existing, Kind, Props, Resource};

/// What the groups are named after: the API's colours and the workers; and
/// "api", the one API group of stacks provisioned before the colours,
/// discovered so that a converge removes it.
const TIERS: [&str; 4] = ["api-blue", "api-green", "worker", "api"];

fn group_name(ctx: &Ctx, tier: &str) -> String {
    format!("{}-{tier}-asg", ctx.stack)
}

pub struct AutoScalingGroup;

impl ResourceKind for AutoScalingGroup {
    fn kind(&self) -> Kind {
        Kind::AutoScalingGroup
    }

    fn label(&self) -> &'static str {
        "auto scaling group"
    }

    fn desired(&self, wanted: &Wanted<'_>) -> Vec<Resource> {
        let scaling = &wanted.definition.autoscaling;
        let phase = wanted.phase;
        let live = live_colour(wanted.existing);
        let mut groups: Vec<Resource> = Colour::BOTH
            .into_iter()
            .map(|colour| {
                let (min, desired) = if colour == live {
                    (scaling.api_min, phase.api_desired)
                } else {
                    (0, 0)
                };
                let sizes = Sizes {
                    min,
                    max: scaling.api_max,
                    desired,
                };
                group(
                    wanted,
                    &colour.tier(),
                    "launch-template-api",
                    sizes,
                    Some(&colour.target_group()),
                )
            })
            .collect();
        let workers = Sizes {
            min: scaling.worker_min,
            max: scaling.worker_max,
            desired: phase.worker_desired,
        };
        groups.push(group(
            wanted,
            "worker",
            "launch-template-worker",
            workers,
            None,
        ));
        groups
    }

    /// The instances it keeps running: each at the definition's instance
    /// price plus its root volume.
    fn monthly_cost(&self, definition: &Definition, props: &Props) -> f64 {
        let prices = &definition.prices;
        let instances = &definition.instances;
        let instance = prices
            .ec2_hourly
            .get(&instances.instance_type)
            .copied()
            .unwrap_or(0.0);
        let volume = f64::from(instances.root_volume_gb) * prices.ebs_gp3_gb_month;
        let desired = props
            .get("desired")
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        desired * (instance * prices.hours_per_month + volume)
    }

    fn status(&self, current: &Existing) -> String {
        format!(
            "{} of {} desired in service",
            current.attrs.get("in_service").map_or("0", String::as_str),
            current.props.get("desired").map_or("?", String::as_str)
        )
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
        create(ctx, known, resource).await
    }

    async fn update(
        &self,
        ctx: &Ctx,
        known: &Known,
        resource: &Resource,
        current: &Existing,
        _changed: &Changed,
    ) -> anyhow::Result<Existing> {
        update(ctx, known, resource, current).await
    }

    async fn delete(&self, ctx: &Ctx, current: &Existing) -> anyhow::Result<()> {
        delete(ctx, current).await
    }
}

struct Sizes {
    min: i32,
    max: i32,
    desired: i32,
}

/// The group `asg-<tier>`; behind `target_group` with the load balancer's
/// health check, or on its own with EC2's.
fn group(
    wanted: &Wanted<'_>,
    tier: &str,
    template: &str,
    sizes: Sizes,
    target_group: Option<&str>,
) -> Resource {
    let scaling = &wanted.definition.autoscaling;
    let private_subnets = wanted.subnets("private");
    let props = [
        ("launch_template", template.to_owned()),
        ("min", sizes.min.to_string()),
        ("max", sizes.max.to_string()),
        ("desired", sizes.desired.to_string()),
        ("subnets", wanted.subnet_list("private")),
        ("cooldown", scaling.cooldown_secs.to_string()),
        ("health_check_grace", "300".to_owned()),
        (
            "health_check_type",
            if target_group.is_some() { "ELB" } else { "EC2" }.to_owned(),
        ),
        ("target_groups", target_group.unwrap_or_default().to_owned()),
    ];
    let mut deps = vec![template, "route-table-private"];
    deps.extend(target_group);
    deps.extend(private_subnets.iter().map(String::as_str));
    resource(
        &format!("asg-{tier}"),
        Kind::AutoScalingGroup,
        wanted.name(&format!("{tier}-asg")),
        &props,
        &deps,
    )
}

/// The stack's Auto Scaling groups as AWS describes them, each with its
/// component (a group of the stack's name without the stack's tag is
/// refused). The scaling policies' discovery starts from here: the stack's
/// policies are those of its groups.
pub(super) async fn stack_groups(ctx: &Ctx) -> anyhow::Result<Vec<(String, AwsAutoScalingGroup)>> {
    let names: Vec<String> = TIERS.iter().map(|tier| group_name(ctx, tier)).collect();
    let groups = ctx
        .aws
        .autoscaling
        .describe_auto_scaling_groups()
        .set_auto_scaling_group_names(Some(names))
        .send()
        .await
        .map_err(aws_error)
        .context("cannot look up the Auto Scaling groups")?;
    let mut found = Vec::new();
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
        found.push((component, group.clone()));
    }
    Ok(found)
}

async fn discover(ctx: &Ctx) -> anyhow::Result<Vec<Existing>> {
    let mut found = Vec::new();
    for (component, group) in stack_groups(ctx).await? {
        let name = group.auto_scaling_group_name().unwrap_or_default();
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
        found.push(e);
    }
    Ok(found)
}

async fn create(ctx: &Ctx, known: &Known, resource: &Resource) -> anyhow::Result<Existing> {
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

async fn update(
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
async fn delete(ctx: &Ctx, current: &Existing) -> anyhow::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::definition::BUILT_IN;

    #[test]
    fn servers_are_priced_from_the_table() {
        let definition = Definition::parse(BUILT_IN).unwrap();
        let props: Props = [("desired".to_owned(), "2".to_owned())]
            .into_iter()
            .collect();
        // Two t3.small at $0.0208/h plus 8 GB gp3 each: the original design's "$30/month".
        let servers = AutoScalingGroup.monthly_cost(&definition, &props);
        assert!((servers - 2.0 * (0.0208 * 730.0 + 8.0 * 0.08)).abs() < 1e-9);
    }
}
