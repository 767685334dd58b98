//! The NAT gateway in the first public subnet, with the Elastic IP: the
//! private route table's default route. It takes minutes to become available
//! and to go, so its create and delete wait (and a run that finds one still
//! pending waits too); AWS keeps listing deleted ones for an hour, so only
//! live ones are discovered.

use anyhow::Context;
use aws_sdk_ec2::types::{Filter, ResourceType};

use super::find::create_once;
use super::tags::{client_token, component_filters, ec2_tagged, once, stack_filter, tag_spec};
use super::wait::{Poll, wait_for};
use super::{Ctx, Known, ResourceKind, Wanted, created, existing, id, resource, subnet_component};
use crate::stack::aws::{GONE, OrAlready, aws_error};
use crate::stack::definition::Definition;
use crate::stack::spec::{Existing, Kind, Props, Resource};

pub struct NatGateway;

impl ResourceKind for NatGateway {
    fn kind(&self) -> Kind {
        Kind::NatGateway
    }

    fn label(&self) -> &'static str {
        "nat gateway"
    }

    fn desired(&self, wanted: &Wanted<'_>) -> Vec<Resource> {
        let first_public =
            subnet_component("public", &wanted.definition.network.availability_zones[0]);
        vec![resource(
            "nat-gateway",
            Kind::NatGateway,
            wanted.name("nat"),
            &[
                ("subnet", first_public.clone()),
                ("elastic_ip", "nat-ip".into()),
            ],
            &[&first_public, "nat-ip", "internet-gateway"],
        )]
    }

    fn forces_replacement(&self, key: &str) -> bool {
        matches!(key, "subnet" | "elastic_ip")
    }

    fn monthly_cost(&self, definition: &Definition, _props: &Props) -> f64 {
        let prices = &definition.prices;
        prices.nat_gateway_hourly * prices.hours_per_month
    }

    fn in_transition<'e>(&self, current: &'e Existing) -> Option<&'e str> {
        current
            .attrs
            .get("state")
            .map(String::as_str)
            .filter(|state| *state == "pending")
    }

    async fn settle(&self, ctx: &Ctx, current: &mut Existing) -> anyhow::Result<()> {
        wait_nat(ctx, &current.component, &current.id, "available").await?;
        current.attrs.insert("state".into(), "available".into());
        Ok(())
    }

    fn hidden_while_deleting(&self) -> bool {
        true
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

    async fn delete(&self, ctx: &Ctx, current: &Existing) -> anyhow::Result<()> {
        delete(ctx, current).await
    }
}

/// NAT gateways that are on their way or in use.
fn live_nat_gateways() -> Filter {
    Filter::builder()
        .name("state")
        .values("pending")
        .values("available")
        .build()
}

async fn discover(ctx: &Ctx) -> anyhow::Result<Vec<Existing>> {
    // Live ones only: AWS lists deleted gateways for an hour, and not
    // every endpoint filters them by tag (moto 5.2.5 lists them all).
    let nats = ctx
        .aws
        .ec2
        .describe_nat_gateways()
        .filter(stack_filter(ctx))
        .filter(live_nat_gateways())
        .send()
        .await
        .map_err(aws_error)
        .context("cannot list the stack's NAT gateways (ec2:DescribeNatGateways)")?;
    let mut found = Vec::new();
    for nat in nats.nat_gateways() {
        let state = nat
            .state()
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default();
        if matches!(state.as_str(), "deleted" | "deleting" | "failed") {
            continue;
        }
        let Some((component, name)) = ec2_tagged(ctx, nat.tags()) else {
            continue;
        };
        let allocation = nat
            .nat_gateway_addresses()
            .iter()
            .filter_map(|a| a.allocation_id())
            .collect::<Vec<_>>()
            .join(",");
        let mut e = existing(
            component,
            Kind::NatGateway,
            name,
            nat.nat_gateway_id().unwrap_or_default().to_owned(),
            &[
                ("subnet", nat.subnet_id().unwrap_or_default().to_owned()),
                ("elastic_ip", allocation),
            ],
        );
        e.attrs.insert("state".into(), state);
        found.push(e);
    }
    Ok(found)
}

async fn create(ctx: &Ctx, known: &Known, resource: &Resource) -> anyhow::Result<Existing> {
    let subnet = id(known, &resource.props["subnet"])?;
    let allocation = id(known, &resource.props["elastic_ip"])?;
    let token = client_token(ctx, &resource.component, &[subnet, allocation, &once()]);
    let nat_id = create_once(
        ctx,
        "the NAT gateway",
        || async {
            let nat = ctx
                .aws
                .ec2_once
                .create_nat_gateway()
                .client_token(&token)
                .subnet_id(subnet)
                .allocation_id(allocation)
                .tag_specifications(tag_spec(ctx, ResourceType::Natgateway, resource))
                .send()
                .await?;
            Ok(nat
                .nat_gateway()
                .and_then(|n| n.nat_gateway_id())
                .map(str::to_owned))
        },
        || async {
            let found = ctx
                .aws
                .ec2
                .describe_nat_gateways()
                .set_filter(Some(component_filters(ctx, &resource.component).into()))
                .filter(live_nat_gateways())
                .send()
                .await
                .map_err(aws_error)?;
            // Tags are checked here too: not every endpoint applies tag filters
            // to NAT gateways (moto 5.2.5 ignores them).
            Ok(found
                .nat_gateways()
                .iter()
                .filter(|n| ec2_tagged(ctx, n.tags()).is_some_and(|(c, _)| c == resource.component))
                .find(|n| {
                    !matches!(
                        n.state().map(|s| s.as_str()),
                        Some("deleted" | "deleting" | "failed")
                    )
                })
                .map(|n| n.nat_gateway_id().map(str::to_owned)))
        },
    )
    .await?
    .context("CreateNatGateway returned no id")?;
    wait_nat(ctx, &resource.component, &nat_id, "available").await?;
    Ok(created(resource, nat_id))
}

/// Waits until the NAT gateway is in the `target` state ("available", or
/// "deleted", which a gateway no longer listed also is).
async fn wait_nat(ctx: &Ctx, component: &str, nat_id: &str, target: &str) -> anyhow::Result<()> {
    wait_for(ctx, component, || async {
        let nats = ctx
            .aws
            .ec2
            .describe_nat_gateways()
            .nat_gateway_ids(nat_id)
            .send()
            .await
            .map_err(aws_error)?;
        let state = nats
            .nat_gateways()
            .first()
            .and_then(|n| n.state())
            .map(|s| s.as_str().to_owned());
        Ok(match state.as_deref() {
            Some(state) if state == target => Poll::Ready(()),
            None if target == "deleted" => Poll::Ready(()),
            Some("failed") if target != "deleted" => {
                anyhow::bail!(
                    "NAT gateway {nat_id} failed (see ec2:DescribeNatGateways for the reason)"
                )
            }
            Some(state) => Poll::Pending(state.to_owned()),
            None => Poll::Pending("not listed yet".to_owned()),
        })
    })
    .await
}

async fn delete(ctx: &Ctx, current: &Existing) -> anyhow::Result<()> {
    ctx.aws
        .ec2
        .delete_nat_gateway()
        .nat_gateway_id(&current.id)
        .send()
        .await
        .or_already(GONE)?;
    // Its Elastic IP is only released once the gateway is gone.
    wait_nat(ctx, &current.component, &current.id, "deleted").await
}
