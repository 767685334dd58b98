//! The application load balancer, the API target group (health check and
//! deregistration delay as the original design says) and the listeners: HTTP forwarding
//! to the API, or, with a certificate, HTTPS forwarding and HTTP redirecting.

use anyhow::{Context, bail};
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, Certificate, LoadBalancerSchemeEnum, LoadBalancerTypeEnum,
    ProtocolEnum, RedirectActionConfig, RedirectActionStatusCodeEnum, Tag, TargetGroupAttribute,
    TargetTypeEnum,
};

use super::{Ctx, Known, Poll, adopt, create_once, created, existing, id, ids, tagged, wait_for};
use crate::stack::aws::{EXISTS, GONE, OrAlready, aws_error, error_code};
use crate::stack::spec::{Existing, Kind, Resource};

const DEREGISTRATION_DELAY: &str = "deregistration_delay.timeout_seconds";

fn tags(ctx: &Ctx, resource: &Resource) -> Vec<Tag> {
    ctx.tags(&resource.component, &resource.name)
        .into_iter()
        .map(|(key, value)| Tag::builder().key(key).value(value).build())
        .collect()
}

/// ARN → component, for the ARNs that carry the stack's tag.
async fn components(ctx: &Ctx, arns: Vec<String>) -> anyhow::Result<Vec<(String, String)>> {
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

pub async fn discover(ctx: &Ctx) -> anyhow::Result<Vec<Existing>> {
    let elb = &ctx.aws.elb;
    let mut found = Vec::new();
    let target_group_name = format!("{}-api-targets", ctx.stack);
    match elb
        .describe_target_groups()
        .names(&target_group_name)
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
                    target_group_name.clone(),
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
    let balancer_name = format!("{}-alb", ctx.stack);
    match elb
        .describe_load_balancers()
        .names(&balancer_name)
        .send()
        .await
    {
        Ok(balancers) => {
            let arns = balancers
                .load_balancers()
                .iter()
                .filter_map(|b| b.load_balancer_arn())
                .map(str::to_owned)
                .collect();
            let ours = components(ctx, arns).await?;
            for balancer in balancers.load_balancers() {
                let arn = balancer.load_balancer_arn().unwrap_or_default();
                let Some((_, component)) = ours.iter().find(|(a, _)| a == arn) else {
                    bail!(
                        "the load balancer {balancer_name} exists without the tag accunode:stack={}: not this stack's, not touched",
                        ctx.stack
                    );
                };
                let subnets: Vec<&str> = balancer
                    .availability_zones()
                    .iter()
                    .filter_map(|z| z.subnet_id())
                    .collect();
                let mut e = existing(
                    component.clone(),
                    Kind::LoadBalancer,
                    balancer_name.clone(),
                    arn.to_owned(),
                    &[
                        (
                            "scheme",
                            balancer
                                .scheme()
                                .map(|s| s.as_str().to_owned())
                                .unwrap_or_default(),
                        ),
                        ("subnets", subnets.join(",")),
                        ("security_groups", balancer.security_groups().join(",")),
                    ],
                );
                let dimension = metric_dimension(arn);
                e.aliases.push(dimension.clone());
                e.attrs.insert("metric_dimension".into(), dimension);
                e.attrs.insert(
                    "dns_name".into(),
                    balancer.dns_name().unwrap_or_default().to_owned(),
                );
                e.attrs.insert(
                    "state".into(),
                    balancer
                        .state()
                        .and_then(|s| s.code())
                        .map(|c| c.as_str().to_owned())
                        .unwrap_or_default(),
                );
                found.extend(discover_listeners(ctx, arn).await?);
                found.push(e);
            }
        }
        Err(error) if error_code(&error) == Some("LoadBalancerNotFound") => {}
        Err(error) => return Err(aws_error(error)).context("cannot look up the load balancer"),
    }
    Ok(found)
}

/// `app/<name>/<id>`: how CloudWatch names a load balancer in its metrics.
fn metric_dimension(arn: &str) -> String {
    arn.split_once(":loadbalancer/")
        .map_or(arn, |(_, suffix)| suffix)
        .to_owned()
}

/// The listeners of the stack's load balancer are the stack's: named by port.
async fn discover_listeners(ctx: &Ctx, balancer_arn: &str) -> anyhow::Result<Vec<Existing>> {
    let listeners = ctx
        .aws
        .elb
        .describe_listeners()
        .load_balancer_arn(balancer_arn)
        .send()
        .await
        .map_err(aws_error)?;
    let mut found = Vec::new();
    for listener in listeners.listeners() {
        let port = listener.port().unwrap_or_default();
        let component = match port {
            80 => "listener-http",
            443 => "listener-https",
            _ => continue,
        };
        let action = listener
            .default_actions()
            .first()
            .map(describe_action)
            .unwrap_or_default();
        let mut props = vec![
            ("port", port.to_string()),
            (
                "protocol",
                listener
                    .protocol()
                    .map(|p| p.as_str().to_owned())
                    .unwrap_or_default(),
            ),
            ("action", action),
        ];
        if let Some(certificate) = listener
            .certificates()
            .first()
            .and_then(|c| c.certificate_arn())
        {
            props.push(("certificate", certificate.to_owned()));
        }
        found.push(existing(
            component.to_owned(),
            Kind::Listener,
            format!(
                "{}-{}",
                ctx.stack,
                component.trim_start_matches("listener-")
            ),
            listener.listener_arn().unwrap_or_default().to_owned(),
            &props,
        ));
    }
    Ok(found)
}

fn describe_action(action: &Action) -> String {
    match (
        action.r#type(),
        action.target_group_arn(),
        action.redirect_config(),
    ) {
        (Some(ActionTypeEnum::Forward), Some(target), _) => format!("forward {target}"),
        (Some(ActionTypeEnum::Redirect), _, Some(redirect)) => format!(
            "redirect {} {}",
            redirect.protocol().unwrap_or_default().to_lowercase(),
            redirect.port().unwrap_or_default()
        ),
        (kind, _, _) => kind.map(|k| k.as_str().to_owned()).unwrap_or_default(),
    }
}

pub async fn create_target_group(
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

pub async fn update_target_group(
    ctx: &Ctx,
    resource: &Resource,
    current: &Existing,
    changed: &dyn Fn(&str) -> bool,
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
    .any(|key| changed(key))
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
    if changed("deregistration_delay") {
        set_deregistration_delay(ctx, &current.id, &p["deregistration_delay"]).await?;
    }
    Ok(created(resource, current.id.clone()))
}

pub async fn create_load_balancer(
    ctx: &Ctx,
    known: &Known,
    resource: &Resource,
) -> anyhow::Result<Existing> {
    let p = &resource.props;
    let (subnets, groups) = (
        ids(known, &p["subnets"])?,
        ids(known, &p["security_groups"])?,
    );
    // AWS answers a resend with the same balancer; not every stand-in does
    // (moto 5.2.5 makes a second one), so a lost answer is looked up first.
    let (arn, dns_name) = create_once(
        ctx,
        "the load balancer",
        || async {
            let balancer = ctx
                .aws
                .elb_once
                .create_load_balancer()
                .name(&resource.name)
                .r#type(LoadBalancerTypeEnum::Application)
                .scheme(LoadBalancerSchemeEnum::from(p["scheme"].as_str()))
                .set_subnets(Some(subnets.clone()))
                .set_security_groups(Some(groups.clone()))
                .set_tags(Some(tags(ctx, resource)))
                .send()
                .await?;
            let balancer = balancer.load_balancers().first();
            Ok((
                balancer
                    .and_then(|b| b.load_balancer_arn())
                    .map(str::to_owned),
                balancer
                    .and_then(|b| b.dns_name())
                    .unwrap_or_default()
                    .to_owned(),
            ))
        },
        || async {
            Ok(discover(ctx)
                .await?
                .into_iter()
                .find(|found| found.component == resource.component)
                .map(|found| {
                    let dns_name = found.attrs.get("dns_name").cloned().unwrap_or_default();
                    (Some(found.id), dns_name)
                }))
        },
    )
    .await?;
    let arn = arn.context("no load balancer ARN")?;
    wait_active(ctx, &resource.component, &arn).await?;
    let mut current = created(resource, arn.clone());
    current
        .attrs
        .insert("metric_dimension".into(), metric_dimension(&arn));
    current.attrs.insert("dns_name".into(), dns_name);
    Ok(current)
}

pub async fn wait_active(ctx: &Ctx, component: &str, arn: &str) -> anyhow::Result<()> {
    wait_for(ctx, component, || async {
        let balancers = ctx
            .aws
            .elb
            .describe_load_balancers()
            .load_balancer_arns(arn)
            .send()
            .await
            .map_err(aws_error)?;
        let state = balancers
            .load_balancers()
            .first()
            .and_then(|b| b.state())
            .and_then(|s| s.code());
        Ok(match state.map(|s| s.as_str()) {
            Some("active") => Poll::Ready(()),
            Some("failed") => bail!("the load balancer failed to provision"),
            other => Poll::Pending(other.unwrap_or("unknown").to_owned()),
        })
    })
    .await
}

pub async fn update_load_balancer(
    ctx: &Ctx,
    known: &Known,
    resource: &Resource,
    current: &Existing,
    changed: &dyn Fn(&str) -> bool,
) -> anyhow::Result<Existing> {
    if changed("subnets") {
        ctx.aws
            .elb
            .set_subnets()
            .load_balancer_arn(&current.id)
            .set_subnets(Some(ids(known, &resource.props["subnets"])?))
            .send()
            .await
            .map_err(aws_error)?;
    }
    if changed("security_groups") {
        ctx.aws
            .elb
            .set_security_groups()
            .load_balancer_arn(&current.id)
            .set_security_groups(Some(ids(known, &resource.props["security_groups"])?))
            .send()
            .await
            .map_err(aws_error)?;
    }
    let mut updated = created(resource, current.id.clone());
    updated.attrs = current.attrs.clone();
    Ok(updated)
}

fn action(known: &Known, description: &str) -> anyhow::Result<Action> {
    let words: Vec<&str> = description.split(' ').collect();
    Ok(match words[..] {
        ["forward", target] => Action::builder()
            .r#type(ActionTypeEnum::Forward)
            .target_group_arn(id(known, target)?)
            .build(),
        ["redirect", protocol, port] => Action::builder()
            .r#type(ActionTypeEnum::Redirect)
            .redirect_config(
                RedirectActionConfig::builder()
                    .protocol(protocol.to_uppercase())
                    .port(port)
                    .status_code(RedirectActionStatusCodeEnum::Http301)
                    .build(),
            )
            .build(),
        _ => bail!("unknown listener action {description:?}"),
    })
}

pub async fn create_listener(
    ctx: &Ctx,
    known: &Known,
    resource: &Resource,
) -> anyhow::Result<Existing> {
    let p = &resource.props;
    let balancer = id(known, "load-balancer")?;
    let (port, default_action) = (p["port"].parse()?, action(known, &p["action"])?);
    let arn = create_once(
        ctx,
        "the listener",
        || async {
            let listener = ctx
                .aws
                .elb_once
                .create_listener()
                .load_balancer_arn(balancer)
                .port(port)
                .protocol(ProtocolEnum::from(p["protocol"].as_str()))
                .default_actions(default_action.clone())
                .set_certificates(
                    p.get("certificate")
                        .map(|arn| vec![Certificate::builder().certificate_arn(arn).build()]),
                )
                .set_tags(Some(tags(ctx, resource)))
                .send()
                .await?;
            Ok(listener
                .listeners()
                .first()
                .and_then(|l| l.listener_arn())
                .map(str::to_owned))
        },
        || async {
            Ok(discover_listeners(ctx, balancer)
                .await?
                .into_iter()
                .find(|found| found.component == resource.component)
                .map(|found| Some(found.id)))
        },
    )
    .await?
    .context("no listener ARN")?;
    Ok(created(resource, arn))
}

pub async fn update_listener(
    ctx: &Ctx,
    known: &Known,
    resource: &Resource,
    current: &Existing,
) -> anyhow::Result<Existing> {
    let p = &resource.props;
    ctx.aws
        .elb
        .modify_listener()
        .listener_arn(&current.id)
        .port(p["port"].parse()?)
        .protocol(ProtocolEnum::from(p["protocol"].as_str()))
        .default_actions(action(known, &p["action"])?)
        .set_certificates(
            p.get("certificate")
                .map(|arn| vec![Certificate::builder().certificate_arn(arn).build()]),
        )
        .send()
        .await
        .map_err(aws_error)?;
    Ok(created(resource, current.id.clone()))
}

pub async fn delete_listener(ctx: &Ctx, current: &Existing) -> anyhow::Result<()> {
    ctx.aws
        .elb
        .delete_listener()
        .listener_arn(&current.id)
        .send()
        .await
        .or_already(GONE)?;
    Ok(())
}

pub async fn delete_load_balancer(ctx: &Ctx, current: &Existing) -> anyhow::Result<()> {
    ctx.aws
        .elb
        .delete_load_balancer()
        .load_balancer_arn(&current.id)
        .send()
        .await
        .or_already(GONE)?;
    wait_for(ctx, &current.component, || async {
        match ctx
            .aws
            .elb
            .describe_load_balancers()
            .load_balancer_arns(&current.id)
            .send()
            .await
        {
            Err(error) if error_code(&error) == Some("LoadBalancerNotFound") => Ok(Poll::Ready(())),
            Err(error) => Err(aws_error(error)),
            Ok(found) if found.load_balancers().is_empty() => Ok(Poll::Ready(())),
            Ok(_) => Ok(Poll::Pending("deleting".to_owned())),
        }
    })
    .await
}

/// AWS says ResourceInUse for a while after the listener that forwarded to
/// the group is deleted: that is waited out.
pub async fn delete_target_group(ctx: &Ctx, current: &Existing) -> anyhow::Result<()> {
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
