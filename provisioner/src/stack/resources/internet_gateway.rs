//! The internet gateway, attached to the stack's VPC: the public route
//! table's default route.

use anyhow::Context;
use aws_sdk_ec2::types::ResourceType;

use super::find::create_once;
use super::tags::{component_filters, ec2_tagged, stack_filter, tag_spec};
use super::{Changed, Ctx, Known, ResourceKind, Wanted, created, existing, id, resource};
use crate::stack::aws::{GONE, OrAlready, aws_error};
use crate::stack::spec::{Existing, Kind, Resource};

pub struct InternetGateway;

impl ResourceKind for InternetGateway {
    fn kind(&self) -> Kind {
        Kind::InternetGateway
    }

    fn label(&self) -> &'static str {
        "internet gateway"
    }

    fn desired(&self, wanted: &Wanted<'_>) -> Vec<Resource> {
        vec![resource(
            "internet-gateway",
            Kind::InternetGateway,
            wanted.name("igw"),
            &[("vpc", "vpc".into())],
            &["vpc"],
        )]
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
        _resource: &Resource,
        current: &Existing,
        _changed: &Changed,
    ) -> anyhow::Result<Existing> {
        update(ctx, known, current).await
    }

    async fn delete(&self, ctx: &Ctx, current: &Existing) -> anyhow::Result<()> {
        delete(ctx, current).await
    }
}

async fn discover(ctx: &Ctx) -> anyhow::Result<Vec<Existing>> {
    let gateways = ctx
        .aws
        .ec2
        .describe_internet_gateways()
        .filters(stack_filter(ctx))
        .send()
        .await
        .map_err(aws_error)
        .context("cannot list the stack's internet gateways (ec2:DescribeInternetGateways)")?;
    let mut found = Vec::new();
    for gateway in gateways.internet_gateways() {
        let Some((component, name)) = ec2_tagged(ctx, gateway.tags()) else {
            continue;
        };
        let vpc = gateway
            .attachments()
            .iter()
            .filter_map(|a| a.vpc_id())
            .collect::<Vec<_>>()
            .join(",");
        found.push(existing(
            component,
            Kind::InternetGateway,
            name,
            gateway.internet_gateway_id().unwrap_or_default().to_owned(),
            &[("vpc", vpc)],
        ));
    }
    Ok(found)
}

async fn create(ctx: &Ctx, known: &Known, resource: &Resource) -> anyhow::Result<Existing> {
    let (gateway_id, attached) = create_once(
        ctx,
        "the internet gateway",
        || async {
            let gateway = ctx
                .aws
                .ec2_once
                .create_internet_gateway()
                .tag_specifications(tag_spec(ctx, ResourceType::InternetGateway, resource))
                .send()
                .await?;
            Ok((
                gateway
                    .internet_gateway()
                    .and_then(|g| g.internet_gateway_id())
                    .map(str::to_owned),
                String::new(),
            ))
        },
        || async {
            let found = ctx
                .aws
                .ec2
                .describe_internet_gateways()
                .set_filters(Some(component_filters(ctx, &resource.component).into()))
                .send()
                .await
                .map_err(aws_error)?;
            Ok(found.internet_gateways().first().map(|g| {
                let attached: Vec<&str> =
                    g.attachments().iter().filter_map(|a| a.vpc_id()).collect();
                (
                    g.internet_gateway_id().map(str::to_owned),
                    attached.join(","),
                )
            }))
        },
    )
    .await?;
    let gateway_id = gateway_id.context("CreateInternetGateway returned no id")?;
    let mut current = created(resource, gateway_id.clone());
    // An adopted gateway may be attached already (ids here, as discovery reads them).
    let vpc = id(known, "vpc")?;
    let attached = if attached == vpc {
        "vpc".to_owned()
    } else {
        attached
    };
    current.props.insert("vpc".into(), attached);
    update(ctx, known, &current).await?;
    Ok(created(resource, gateway_id))
}

async fn update(ctx: &Ctx, known: &Known, current: &Existing) -> anyhow::Result<Existing> {
    let vpc = id(known, "vpc")?;
    for attached in current.props["vpc"]
        .split(',')
        .filter(|v| !v.is_empty() && *v != "vpc")
    {
        let attached_id = known.get(attached).map_or(attached, |e| e.id.as_str());
        ctx.aws
            .ec2
            .detach_internet_gateway()
            .internet_gateway_id(&current.id)
            .vpc_id(attached_id)
            .send()
            .await
            .or_already(GONE)?;
    }
    if current.props["vpc"] != "vpc"
        && ctx
            .aws
            .ec2
            .attach_internet_gateway()
            .internet_gateway_id(&current.id)
            .vpc_id(vpc)
            .send()
            .await
            .or_already(&["Resource.AlreadyAssociated"])?
            .is_none()
    {
        // Attached already: to this VPC is what a resend after a lost answer finds.
        let found = ctx
            .aws
            .ec2
            .describe_internet_gateways()
            .internet_gateway_ids(&current.id)
            .send()
            .await
            .map_err(aws_error)?;
        let attached: Vec<&str> = found
            .internet_gateways()
            .iter()
            .flat_map(|g| g.attachments())
            .filter_map(|a| a.vpc_id())
            .collect();
        anyhow::ensure!(
            attached == [vpc],
            "internet gateway {} is attached to {attached:?}, not to the stack's VPC {vpc}",
            current.id
        );
    }
    let mut updated = current.clone();
    updated.props.insert("vpc".into(), "vpc".into());
    Ok(updated)
}

async fn delete(ctx: &Ctx, current: &Existing) -> anyhow::Result<()> {
    let gateways = ctx
        .aws
        .ec2
        .describe_internet_gateways()
        .internet_gateway_ids(&current.id)
        .send()
        .await
        .map_err(aws_error)?;
    for attachment in gateways
        .internet_gateways()
        .iter()
        .flat_map(|g| g.attachments())
    {
        if let Some(vpc) = attachment.vpc_id() {
            ctx.aws
                .ec2
                .detach_internet_gateway()
                .internet_gateway_id(&current.id)
                .vpc_id(vpc)
                .send()
                .await
                .or_already(GONE)?;
        }
    }
    ctx.aws
        .ec2
        .delete_internet_gateway()
        .internet_gateway_id(&current.id)
        .send()
        .await
        .or_already(GONE)?;
    Ok(())
}
