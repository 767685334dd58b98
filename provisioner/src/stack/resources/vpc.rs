//! The stack's VPC, with DNS support and hostnames on: the rest of the
//! network (subnets, gateways, route tables) lives in it.

use anyhow::Context;
use aws_sdk_ec2::types::{AttributeBooleanValue, ResourceType, VpcAttributeName};

use super::find::create_once;
use super::tags::{component_filters, ec2_tagged, stack_filter, tag_spec};
use super::{Changed, Ctx, Known, ResourceKind, Wanted, created, existing, resource};
use crate::stack::aws::{GONE, OrAlready, aws_error};
use crate::stack::spec::{Existing, Kind, Resource};

pub struct Vpc;

impl ResourceKind for Vpc {
    fn kind(&self) -> Kind {
        Kind::Vpc
    }

    fn label(&self) -> &'static str {
        "vpc"
    }

    fn desired(&self, wanted: &Wanted<'_>) -> Vec<Resource> {
        vec![resource(
            "vpc",
            Kind::Vpc,
            wanted.name("vpc"),
            &[
                ("cidr", wanted.definition.network.vpc_cidr.clone()),
                ("dns_hostnames", "true".into()),
                ("dns_support", "true".into()),
            ],
            &[],
        )]
    }

    fn forces_replacement(&self, key: &str) -> bool {
        key == "cidr"
    }

    async fn discover(&self, ctx: &Ctx) -> anyhow::Result<Vec<Existing>> {
        discover(ctx).await
    }

    async fn create(
        &self,
        ctx: &Ctx,
        _known: &Known,
        resource: &Resource,
    ) -> anyhow::Result<Existing> {
        create(ctx, resource).await
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

/// An EC2 boolean attribute as the modify calls take it.
pub(super) fn flag(value: bool) -> AttributeBooleanValue {
    AttributeBooleanValue::builder().value(value).build()
}

async fn discover(ctx: &Ctx) -> anyhow::Result<Vec<Existing>> {
    let ec2 = &ctx.aws.ec2;
    let vpcs = ec2
        .describe_vpcs()
        .filters(stack_filter(ctx))
        .send()
        .await
        .map_err(aws_error)
        .context("cannot list the stack's VPCs (ec2:DescribeVpcs)")?;
    let mut found = Vec::new();
    for vpc in vpcs.vpcs() {
        let Some((component, name)) = ec2_tagged(ctx, vpc.tags()) else {
            continue;
        };
        let vpc_id = vpc.vpc_id().unwrap_or_default().to_owned();
        let (hostnames, support) = tokio::try_join!(
            ec2.describe_vpc_attribute()
                .vpc_id(&vpc_id)
                .attribute(VpcAttributeName::EnableDnsHostnames)
                .send(),
            ec2.describe_vpc_attribute()
                .vpc_id(&vpc_id)
                .attribute(VpcAttributeName::EnableDnsSupport)
                .send(),
        )
        .map_err(aws_error)?;
        let enabled = |value: Option<&AttributeBooleanValue>| {
            value.and_then(|v| v.value()).unwrap_or(false).to_string()
        };
        found.push(existing(
            component,
            Kind::Vpc,
            name,
            vpc_id,
            &[
                ("cidr", vpc.cidr_block().unwrap_or_default().to_owned()),
                ("dns_hostnames", enabled(hostnames.enable_dns_hostnames())),
                ("dns_support", enabled(support.enable_dns_support())),
            ],
        ));
    }
    Ok(found)
}

async fn create(ctx: &Ctx, resource: &Resource) -> anyhow::Result<Existing> {
    let vpc_id = create_once(
        ctx,
        "the VPC",
        || async {
            let vpc = ctx
                .aws
                .ec2_once
                .create_vpc()
                .cidr_block(&resource.props["cidr"])
                .tag_specifications(tag_spec(ctx, ResourceType::Vpc, resource))
                .send()
                .await?;
            Ok(vpc.vpc().and_then(|v| v.vpc_id()).map(str::to_owned))
        },
        || async {
            let found = ctx
                .aws
                .ec2
                .describe_vpcs()
                .set_filters(Some(component_filters(ctx, &resource.component).into()))
                .send()
                .await
                .map_err(aws_error)?;
            Ok(found.vpcs().first().map(|v| v.vpc_id().map(str::to_owned)))
        },
    )
    .await?
    .context("CreateVpc returned no id")?;
    let current = created(resource, vpc_id);
    // A new VPC has AWS's defaults: every attribute is set as wanted.
    let unset = Changed(resource.props.keys().cloned().collect());
    update(ctx, resource, &current, &unset).await
}

async fn update(
    ctx: &Ctx,
    resource: &Resource,
    current: &Existing,
    changed: &Changed,
) -> anyhow::Result<Existing> {
    // One attribute per call: the API refuses both at once.
    if changed.has("dns_support") {
        ctx.aws
            .ec2
            .modify_vpc_attribute()
            .vpc_id(&current.id)
            .enable_dns_support(flag(resource.props["dns_support"] == "true"))
            .send()
            .await
            .map_err(aws_error)?;
    }
    if changed.has("dns_hostnames") {
        ctx.aws
            .ec2
            .modify_vpc_attribute()
            .vpc_id(&current.id)
            .enable_dns_hostnames(flag(resource.props["dns_hostnames"] == "true"))
            .send()
            .await
            .map_err(aws_error)?;
    }
    Ok(created(resource, current.id.clone()))
}

async fn delete(ctx: &Ctx, current: &Existing) -> anyhow::Result<()> {
    ctx.aws
        .ec2
        .delete_vpc()
        .vpc_id(&current.id)
        .send()
        .await
        .or_already(GONE)?;
    Ok(())
}
