//! The subnets: one per availability zone in each tier, public (the load
//! balancer, the NAT gateway, public addresses on launch) and private (the
//! instances, the database, Redis).

use anyhow::Context;
use aws_sdk_ec2::types::ResourceType;

use super::find::create_once;
use super::tags::{component_filters, ec2_tagged, stack_filter, tag_spec};
use super::vpc::flag;
use super::{
    Changed, Ctx, Known, ResourceKind, Wanted, created, existing, id, resource, subnet_component,
};
use crate::stack::aws::{GONE, OrAlready, aws_error};
use crate::stack::spec::{Existing, Kind, Resource};

pub struct Subnet;

impl ResourceKind for Subnet {
    fn kind(&self) -> Kind {
        Kind::Subnet
    }

    fn label(&self) -> &'static str {
        "subnet"
    }

    fn desired(&self, wanted: &Wanted<'_>) -> Vec<Resource> {
        let network = &wanted.definition.network;
        let zones = &network.availability_zones;
        let mut subnets = Vec::new();
        for (tier, cidrs) in [
            ("public", &network.public_subnet_cidrs),
            ("private", &network.private_subnet_cidrs),
        ] {
            for (zone, cidr) in zones.iter().zip(cidrs) {
                let component = subnet_component(tier, zone);
                subnets.push(resource(
                    &component,
                    Kind::Subnet,
                    wanted.name(&component),
                    &[
                        ("vpc", "vpc".into()),
                        ("cidr", cidr.clone()),
                        ("zone", format!("{}{zone}", wanted.inputs.region)),
                        ("public_ip_on_launch", (tier == "public").to_string()),
                    ],
                    &["vpc"],
                ));
            }
        }
        subnets
    }

    fn forces_replacement(&self, key: &str) -> bool {
        matches!(key, "vpc" | "cidr" | "zone")
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
        _changed: &Changed,
    ) -> anyhow::Result<Existing> {
        update(ctx, resource, current).await
    }

    async fn delete(&self, ctx: &Ctx, current: &Existing) -> anyhow::Result<()> {
        delete(ctx, current).await
    }
}

async fn discover(ctx: &Ctx) -> anyhow::Result<Vec<Existing>> {
    let subnets = ctx
        .aws
        .ec2
        .describe_subnets()
        .filters(stack_filter(ctx))
        .send()
        .await
        .map_err(aws_error)
        .context("cannot list the stack's subnets (ec2:DescribeSubnets)")?;
    let mut found = Vec::new();
    for subnet in subnets.subnets() {
        let Some((component, name)) = ec2_tagged(ctx, subnet.tags()) else {
            continue;
        };
        found.push(existing(
            component,
            Kind::Subnet,
            name,
            subnet.subnet_id().unwrap_or_default().to_owned(),
            &[
                ("vpc", subnet.vpc_id().unwrap_or_default().to_owned()),
                ("cidr", subnet.cidr_block().unwrap_or_default().to_owned()),
                (
                    "zone",
                    subnet.availability_zone().unwrap_or_default().to_owned(),
                ),
                (
                    "public_ip_on_launch",
                    subnet
                        .map_public_ip_on_launch()
                        .unwrap_or(false)
                        .to_string(),
                ),
            ],
        ));
    }
    Ok(found)
}

async fn create(ctx: &Ctx, known: &Known, resource: &Resource) -> anyhow::Result<Existing> {
    let vpc = id(known, &resource.props["vpc"])?;
    let subnet_id = create_once(
        ctx,
        "the subnet",
        || async {
            let subnet = ctx
                .aws
                .ec2_once
                .create_subnet()
                .vpc_id(vpc)
                .cidr_block(&resource.props["cidr"])
                .availability_zone(&resource.props["zone"])
                .tag_specifications(tag_spec(ctx, ResourceType::Subnet, resource))
                .send()
                .await?;
            Ok(subnet
                .subnet()
                .and_then(|s| s.subnet_id())
                .map(str::to_owned))
        },
        || async {
            let found = ctx
                .aws
                .ec2
                .describe_subnets()
                .set_filters(Some(component_filters(ctx, &resource.component).into()))
                .send()
                .await
                .map_err(aws_error)?;
            Ok(found
                .subnets()
                .first()
                .map(|s| s.subnet_id().map(str::to_owned)))
        },
    )
    .await?
    .context("CreateSubnet returned no id")?;
    let current = created(resource, subnet_id);
    update(ctx, resource, &current).await
}

async fn update(ctx: &Ctx, resource: &Resource, current: &Existing) -> anyhow::Result<Existing> {
    ctx.aws
        .ec2
        .modify_subnet_attribute()
        .subnet_id(&current.id)
        .map_public_ip_on_launch(flag(resource.props["public_ip_on_launch"] == "true"))
        .send()
        .await
        .map_err(aws_error)?;
    Ok(created(resource, current.id.clone()))
}

async fn delete(ctx: &Ctx, current: &Existing) -> anyhow::Result<()> {
    ctx.aws
        .ec2
        .delete_subnet()
        .subnet_id(&current.id)
        .send()
        .await
        .or_already(GONE)?;
    Ok(())
}
