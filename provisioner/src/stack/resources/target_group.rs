//! The API target groups, one per colour (`<stack>-api-blue`, `-green`): the
//! instances of that colour's Auto Scaling group behind the load balancer,
//! with the health check and deregistration delay the original design says. What the three ELB kinds share, how their resources are
//! tagged (`tags`) and which ARNs are the stack's (`components`), is here
//! too: the load balancer and the listeners import it.

use anyhow::{Context, bail};
use aws_sdk_elasticloadbalancingv2::types::{
    ProtocolEnum, Tag, TargetGroupAttribute, TargetTypeEnum,
};

use super::find::adopt;
use super::tags::tagged;
use super::wait::{Poll, wait_for};
use super::{Changed, Ctx, Known, ResourceKind, Wanted, created, existing, id, resource};
use crate::stack::aws::{EXISTS, GONE, OrAlready, aws_error, error_code};
use crate::stack::spec::{Colour, Existing, Kind, Resource};

const DEREGISTRATION_DELAY: &str = "deregistration_delay.timeout_seconds";

pub struct TargetGroup;

impl ResourceKind for TargetGroup {
    fn kind(&self) -> Kind {
        Kind::TargetGroup
    }

    fn label(&self) -> &'static str {
        "target group"
    }

    fn desired(&self, wanted: &Wanted<'_>) -> Vec<Resource> {
        let lb = &wanted.definition.load_balancer;
        Colour::BOTH
            .map(|colour| {
                resource(
                    &colour.target_group(),
                    Kind::TargetGroup,
                    wanted.name(&colour.tier()),
                    &[
                        ("vpc", "vpc".into()),
                        ("protocol", "HTTP".into()),
                        ("port", wanted.definition.instances.api_port.to_string()),
                        ("health_check_path", lb.health_check_path.clone()),
                        (
                            "health_check_interval",
                            lb.health_check_interval_secs.to_string(),
                        ),
                        (
                            "health_check_timeout",
                            lb.health_check_timeout_secs.to_string(),
                        ),
                        ("healthy_threshold", lb.healthy_threshold.to_string()),
                        ("unhealthy_threshold", lb.unhealthy_threshold.to_string()),
                        (
                            "deregistration_delay",
                            lb.deregistration_delay_secs.to_string(),
                        ),
                    ],
                    &["vpc"],
                )
            })
            .to_vec()
    }

    fn forces_replacement(&self, key: &str) -> bool {
        matches!(key, "vpc" | "protocol" | "port")
    }

    fn status(&self, current: &Existing) -> String {
        format!(
            "{} of {} targets healthy",
            current
                .attrs
                .get("healthy_targets")
                .map_or("0", String::as_str),
            current.attrs.get("targets").map_or("0", String::as_str)
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
        _known: &Known,
        resource: &Resource,
        current: &Existing,
        changed: &Changed,
    ) -> anyhow::Result<Existing> {
        update(ctx, resource, current, changed).await
    }

    async fn delete(&self, ctx: &Ctx, current: &Existing) -> anyhow::Result<()> {
        delete(ctx, current).await
    }
}

/// The tags of an ELB resource (target group, load balancer, listener), made
/// in the call that creates it.
pub(super) fn tags(ctx: &Ctx, resource: &Resource) -> Vec<Tag> {
    ctx.tags(&resource.component, &resource.name)
        .into_iter()
        .map(|(key, value)| Tag::builder().key(key).value(value).build())
        .collect()
}

/// ARN → component, for the ARNs that carry the stack's tag.
pub(super) async fn components(
    ctx: &Ctx,
    arns: Vec<String>,
) -> anyhow::Result<Vec<(String, String)>> {
    if arns.is_empty() {
        return Ok(vec![]);
    }
    let described = ctx
        .aws
        .elb
        .describe_tags()
        .set_resource_arns(Some(arns))
        .send()
        .await
        .map_err(aws_error)?;
    Ok(described
        .tag_descriptions()
        .iter()
        .filter_map(|d| {
            let tags = d
                .tags()
                .iter()
                .map(|t| (t.key().unwrap_or(""), t.value().unwrap_or("")));
            Some((d.resource_arn()?.to_owned(), tagged(&ctx.stack, tags)?.0))
        })
        .collect())
}

/// The name of the one API target group of stacks provisioned before the
/// colours: discovered so that a converge removes it.
const BEFORE_COLOURS: &str = "api-targets";

async fn discover(ctx: &Ctx) -> anyhow::Result<Vec<Existing>> {
    let mut found = Vec::new();
    let suffixes = Colour::BOTH.map(Colour::tier);
    for suffix in suffixes.iter().map(String::as_str).chain([BEFORE_COLOURS]) {
        found.extend(discover_named(ctx, &format!("{}-{suffix}", ctx.stack)).await?);
    }
    Ok(found)
}

/// The target group of that name, if it exists (DescribeTargetGroups
/// refuses a list of names when any one is missing).
async fn discover_named(ctx: &Ctx, target_group_name: &str) -> anyhow::Result<Vec<Existing>> {
    let elb = &ctx.aws.elb;
    let mut found = Vec::new();
    match elb
        .describe_target_groups()
        .names(target_group_name)
        .send()
        .await
    {
        Ok(groups) => {
            let arns = groups
                .target_groups()
                .iter()
                .filter_map(|g| g.target_group_arn())
                .map(str::to_owned)
                .collect();
            let ours = components(ctx, arns).await?;
            for group in groups.target_groups() {
                let arn = group.target_group_arn().unwrap_or_default();
                let Some((_, component)) = ours.iter().find(|(a, _)| a == arn) else {
                    bail!(
                        "the target group {target_group_name} exists without the tag accunode:stack={}: not this stack's, not touched",
                        ctx.stack
                    );
                };
                let attributes = elb
                    .describe_target_group_attributes()
                    .target_group_arn(arn)
                    .send()
                    .await
                    .map_err(aws_error)?;
                let delay = attributes
                    .attributes()
                    .iter()
                    .find(|a| a.key() == Some(DEREGISTRATION_DELAY))
                    .and_then(|a| a.value())
                    .unwrap_or("300")
                    .to_owned();
                let number = |n: Option<i32>| n.map(|n| n.to_string()).unwrap_or_default();
                let mut e = existing(
                    component.clone(),
                    Kind::TargetGroup,
                    target_group_name.to_owned(),
                    arn.to_owned(),
                    &[
                        ("vpc", group.vpc_id().unwrap_or_default().to_owned()),
                        (
                            "protocol",
                            group
                                .protocol()
                                .map(|p| p.as_str().to_owned())
                                .unwrap_or_default(),
                        ),
                        ("port", number(group.port())),
                        (
                            "health_check_path",
                            group.health_check_path().unwrap_or_default().to_owned(),
                        ),
                        (
                            "health_check_interval",
                            number(group.health_check_interval_seconds()),
                        ),
                        (
                            "health_check_timeout",
                            number(group.health_check_timeout_seconds()),
                        ),
                        ("healthy_threshold", number(group.healthy_threshold_count())),
                        (
                            "unhealthy_threshold",
                            number(group.unhealthy_threshold_count()),
                        ),
                        ("deregistration_delay", delay),
                    ],
                );
                let health = elb
                    .describe_target_health()
                    .target_group_arn(arn)
                    .send()
                    .await
                    .map_err(aws_error)?;
                let healthy = health
                    .target_health_descriptions()
                    .iter()
                    .filter(|t| {
                        t.target_health()
                            .and_then(|h| h.state())
                            .map(|s| s.as_str())
                            == Some("healthy")
                    })
                    .count();
                e.attrs.insert(
                    "targets".into(),
                    health.target_health_descriptions().len().to_string(),
                );
                e.attrs
                    .insert("healthy_targets".into(), healthy.to_string());
                found.push(e);
            }
        }
        Err(error) if error_code(&error) == Some("TargetGroupNotFound") => {}
        Err(error) => return Err(aws_error(error)).context("cannot look up the target group"),
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
    let group = ctx
        .aws
        .elb
        .create_target_group()
        .name(&resource.name)
        .protocol(ProtocolEnum::from(p["protocol"].as_str()))
        .port(number("port")?)
        .vpc_id(id(known, &p["vpc"])?)
        .target_type(TargetTypeEnum::Instance)
        .health_check_path(&p["health_check_path"])
        .health_check_interval_seconds(number("health_check_interval")?)
        .health_check_timeout_seconds(number("health_check_timeout")?)
        .healthy_threshold_count(number("healthy_threshold")?)
        .unhealthy_threshold_count(number("unhealthy_threshold")?)
        .set_tags(Some(tags(ctx, resource)))
        .send()
        .await
        .or_already(EXISTS)?;
    let arn = match group {
        Some(group) => group
            .target_groups()
            .first()
            .and_then(|g| g.target_group_arn())
            .context("no target group ARN")?
            .to_owned(),
        None => adopt(ctx, resource, discover(ctx).await?)?.id,
    };
    set_deregistration_delay(ctx, &arn, &p["deregistration_delay"]).await?;
    Ok(created(resource, arn))
}

async fn set_deregistration_delay(ctx: &Ctx, arn: &str, seconds: &str) -> anyhow::Result<()> {
    ctx.aws
        .elb
        .modify_target_group_attributes()
        .target_group_arn(arn)
        .attributes(
            TargetGroupAttribute::builder()
                .key(DEREGISTRATION_DELAY)
                .value(seconds)
                .build(),
        )
        .send()
        .await
        .map_err(aws_error)?;
    Ok(())
}

async fn update(
    ctx: &Ctx,
    resource: &Resource,
    current: &Existing,
    changed: &Changed,
) -> anyhow::Result<Existing> {
    let p = &resource.props;
    let number = |key: &str| {
        p[key]
            .parse::<i32>()
            .with_context(|| format!("{key} is not a number"))
    };
    if [
        "health_check_path",
        "health_check_interval",
        "health_check_timeout",
        "healthy_threshold",
        "unhealthy_threshold",
    ]
    .iter()
    .any(|key| changed.has(key))
    {
        ctx.aws
            .elb
            .modify_target_group()
            .target_group_arn(&current.id)
            .health_check_path(&p["health_check_path"])
            .health_check_interval_seconds(number("health_check_interval")?)
            .health_check_timeout_seconds(number("health_check_timeout")?)
            .healthy_threshold_count(number("healthy_threshold")?)
            .unhealthy_threshold_count(number("unhealthy_threshold")?)
            .send()
            .await
            .map_err(aws_error)?;
    }
    if changed.has("deregistration_delay") {
        set_deregistration_delay(ctx, &current.id, &p["deregistration_delay"]).await?;
    }
    Ok(created(resource, current.id.clone()))
}

/// AWS says ResourceInUse for a while after the listener that forwarded to
/// the group is deleted: that is waited out.
async fn delete(ctx: &Ctx, current: &Existing) -> anyhow::Result<()> {
    wait_for(ctx, &current.component, || async {
        match ctx
            .aws
            .elb
            .delete_target_group()
            .target_group_arn(&current.id)
            .send()
            .await
        {
            Ok(_) => Ok(Poll::Ready(())),
            Err(error) if error_code(&error) == Some("ResourceInUse") => Ok(Poll::Pending(
                "in use by a listener being deleted".to_owned(),
            )),
            Err(error) if error_code(&error).is_some_and(|code| GONE.contains(&code)) => {
                Ok(Poll::Ready(()))
            }
            Err(error) => Err(aws_error(error)),
        }
    })
    .await
}
