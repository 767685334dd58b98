//! The application load balancer: internet-facing in the public subnets,
//! behind the sg-alb group. It is usable once AWS says it is active (a create
//! or a balancer found still provisioning is waited for). Its ARN's suffix is
//! how CloudWatch names it in metrics (the `metric_dimension` attribute), which
//! the alarms and the dashboard read.

use anyhow::{Context, bail};
use aws_sdk_elasticloadbalancingv2::types::{
    LoadBalancer as AwsLoadBalancer, LoadBalancerSchemeEnum, LoadBalancerTypeEnum,
};

use super::find::create_once;
use super::target_group::{components, tags};
use super::wait::{Poll, wait_for};
use super::{Changed, Ctx, Known, ResourceKind, Wanted, created, existing, ids, resource};
use crate::stack::aws::{GONE, OrAlready, aws_error, error_code};
use crate::stack::definition::Definition;
use crate::stack::spec::{Existing, Kind, Props, Resource};

pub struct LoadBalancer;

impl ResourceKind for LoadBalancer {
    fn kind(&self) -> Kind {
        Kind::LoadBalancer
    }

    fn label(&self) -> &'static str {
        "load balancer"
    }

    fn desired(&self, wanted: &Wanted<'_>) -> Vec<Resource> {
        let public_subnets = wanted.subnets("public");
        let mut depends_on = vec!["sg-alb", "internet-gateway"];
        depends_on.extend(public_subnets.iter().map(String::as_str));
        vec![resource(
            "load-balancer",
            Kind::LoadBalancer,
            wanted.name("alb"),
            &[
                ("scheme", "internet-facing".into()),
                ("subnets", wanted.subnet_list("public")),
                ("security_groups", "sg-alb".into()),
            ],
            &depends_on,
        )]
    }

    fn forces_replacement(&self, key: &str) -> bool {
        key == "scheme"
    }

    fn monthly_cost(&self, definition: &Definition, _props: &Props) -> f64 {
        let prices = &definition.prices;
        (prices.alb_hourly + prices.alb_lcu_hourly) * prices.hours_per_month
    }

    fn in_transition<'e>(&self, current: &'e Existing) -> Option<&'e str> {
        current
            .attrs
            .get("state")
            .map(String::as_str)
            .filter(|state| *state == "provisioning")
    }

    async fn settle(&self, ctx: &Ctx, current: &mut Existing) -> anyhow::Result<()> {
        wait_active(ctx, &current.component, &current.id).await?;
        current.attrs.insert("state".into(), "active".into());
        Ok(())
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
        changed: &Changed,
    ) -> anyhow::Result<Existing> {
        update(ctx, known, resource, current, changed).await
    }

    async fn delete(&self, ctx: &Ctx, current: &Existing) -> anyhow::Result<()> {
        delete(ctx, current).await
    }
}

fn balancer_name(ctx: &Ctx) -> String {
    format!("{}-alb", ctx.stack)
}

/// The stack's load balancers as AWS describes them, each with its component
/// (a balancer of the stack's name without the stack's tag is refused). The
/// listeners' discovery starts from here: a balancer's listeners are the stack's.
pub(super) async fn stack_balancers(ctx: &Ctx) -> anyhow::Result<Vec<(String, AwsLoadBalancer)>> {
    let balancer_name = balancer_name(ctx);
    match ctx
        .aws
        .elb
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
            let mut found = Vec::new();
            for balancer in balancers.load_balancers() {
                let arn = balancer.load_balancer_arn().unwrap_or_default();
                let Some((_, component)) = ours.iter().find(|(a, _)| a == arn) else {
                    bail!(
                        "the load balancer {balancer_name} exists without the tag accunode:stack={}: not this stack's, not touched",
                        ctx.stack
                    );
                };
                found.push((component.clone(), balancer.clone()));
            }
            Ok(found)
        }
        Err(error) if error_code(&error) == Some("LoadBalancerNotFound") => Ok(vec![]),
        Err(error) => Err(aws_error(error)).context("cannot look up the load balancer"),
    }
}

async fn discover(ctx: &Ctx) -> anyhow::Result<Vec<Existing>> {
    let mut found = Vec::new();
    for (component, balancer) in stack_balancers(ctx).await? {
        let arn = balancer.load_balancer_arn().unwrap_or_default();
        let subnets: Vec<&str> = balancer
            .availability_zones()
            .iter()
            .filter_map(|z| z.subnet_id())
            .collect();
        let mut e = existing(
            component,
            Kind::LoadBalancer,
            balancer_name(ctx),
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
        found.push(e);
    }
    Ok(found)
}

/// `app/<name>/<id>`: how CloudWatch names a load balancer in its metrics.
fn metric_dimension(arn: &str) -> String {
    arn.split_once(":loadbalancer/")
        .map_or(arn, |(_, suffix)| suffix)
        .to_owned()
}

async fn create(ctx: &Ctx, known: &Known, resource: &Resource) -> anyhow::Result<Existing> {
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

async fn wait_active(ctx: &Ctx, component: &str, arn: &str) -> anyhow::Result<()> {
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

async fn update(
    ctx: &Ctx,
    known: &Known,
    resource: &Resource,
    current: &Existing,
    changed: &Changed,
) -> anyhow::Result<Existing> {
    if changed.has("subnets") {
        ctx.aws
            .elb
            .set_subnets()
            .load_balancer_arn(&current.id)
            .set_subnets(Some(ids(known, &resource.props["subnets"])?))
            .send()
            .await
            .map_err(aws_error)?;
    }
    if changed.has("security_groups") {
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

async fn delete(ctx: &Ctx, current: &Existing) -> anyhow::Result<()> {
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
