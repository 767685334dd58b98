//! The Elastic IP of the NAT gateway: the address the private subnets reach
//! the internet from. AWS charges for every public IPv4 address.

use anyhow::Context;
use aws_sdk_ec2::types::{DomainType, ResourceType};

use super::find::create_once;
use super::tags::{component_filters, ec2_tagged, stack_filter, tag_spec};
use super::{Ctx, Known, ResourceKind, Wanted, created, existing, resource};
use crate::stack::aws::{GONE, OrAlready, aws_error};
use crate::stack::definition::Definition;
use crate::stack::spec::{Existing, Kind, Props, Resource};

pub struct ElasticIp;

impl ResourceKind for ElasticIp {
    fn kind(&self) -> Kind {
        Kind::ElasticIp
    }

    fn label(&self) -> &'static str {
        "elastic ip"
    }

    fn desired(&self, wanted: &Wanted<'_>) -> Vec<Resource> {
        vec![resource(
            "nat-ip",
            Kind::ElasticIp,
            wanted.name("nat-ip"),
            &[("domain", "vpc".into())],
            &[],
        )]
    }

    fn forces_replacement(&self, key: &str) -> bool {
        key == "domain"
    }

    fn monthly_cost(&self, definition: &Definition, _props: &Props) -> f64 {
        let prices = &definition.prices;
        prices.public_ipv4_hourly * prices.hours_per_month
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

    async fn delete(&self, ctx: &Ctx, current: &Existing) -> anyhow::Result<()> {
        delete(ctx, current).await
    }
}

async fn discover(ctx: &Ctx) -> anyhow::Result<Vec<Existing>> {
    let addresses = ctx
        .aws
        .ec2
        .describe_addresses()
        .filters(stack_filter(ctx))
        .send()
        .await
        .map_err(aws_error)
        .context("cannot list the stack's Elastic IPs (ec2:DescribeAddresses)")?;
    let mut found = Vec::new();
    for address in addresses.addresses() {
        let Some((component, name)) = ec2_tagged(ctx, address.tags()) else {
            continue;
        };
        let mut e = existing(
            component,
            Kind::ElasticIp,
            name,
            address.allocation_id().unwrap_or_default().to_owned(),
            &[(
                "domain",
                address
                    .domain()
                    .map(|d| d.as_str().to_owned())
                    .unwrap_or_default(),
            )],
        );
        e.attrs.insert(
            "public_ip".into(),
            address.public_ip().unwrap_or_default().to_owned(),
        );
        found.push(e);
    }
    Ok(found)
}

async fn create(ctx: &Ctx, resource: &Resource) -> anyhow::Result<Existing> {
    let (allocation, public_ip) = create_once(
        ctx,
        "the Elastic IP",
        || async {
            let address = ctx
                .aws
                .ec2_once
                .allocate_address()
                .domain(DomainType::Vpc)
                .tag_specifications(tag_spec(ctx, ResourceType::ElasticIp, resource))
                .send()
                .await?;
            Ok((
                address.allocation_id().map(str::to_owned),
                address.public_ip().unwrap_or_default().to_owned(),
            ))
        },
        || async {
            let found = ctx
                .aws
                .ec2
                .describe_addresses()
                .set_filters(Some(component_filters(ctx, &resource.component).into()))
                .send()
                .await
                .map_err(aws_error)?;
            Ok(found.addresses().first().map(|a| {
                (
                    a.allocation_id().map(str::to_owned),
                    a.public_ip().unwrap_or_default().to_owned(),
                )
            }))
        },
    )
    .await?;
    let mut current = created(
        resource,
        allocation.context("AllocateAddress returned no id")?,
    );
    current.attrs.insert("public_ip".into(), public_ip);
    Ok(current)
}

async fn delete(ctx: &Ctx, current: &Existing) -> anyhow::Result<()> {
    ctx.aws
        .ec2
        .release_address()
        .allocation_id(&current.id)
        .send()
        .await
        .or_already(GONE)?;
    Ok(())
}
