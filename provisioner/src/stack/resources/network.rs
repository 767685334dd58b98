//! The network: VPC, subnets, internet gateway, the NAT gateway and its
//! Elastic IP, and the public and private route tables.

use anyhow::Context;
use aws_sdk_ec2::types::{
    AttributeBooleanValue, DomainType, Filter, ResourceType, Tag, TagSpecification,
    VpcAttributeName,
};

use super::{Ctx, Known, Poll, create_once, created, existing, id, tagged, wait_for};
use crate::stack::aws::{GONE, OrAlready, aws_error};
use crate::stack::spec::{COMPONENT_TAG, Existing, Kind, Resource, STACK_TAG};

pub fn tag_spec(ctx: &Ctx, resource_type: ResourceType, resource: &Resource) -> TagSpecification {
    let mut spec = TagSpecification::builder().resource_type(resource_type);
    for (key, value) in ctx.tags(&resource.component, &resource.name) {
        spec = spec.tags(Tag::builder().key(key).value(value).build());
    }
    spec.build()
}

pub fn stack_filter(ctx: &Ctx) -> Filter {
    Filter::builder()
        .name(format!("tag:{STACK_TAG}"))
        .values(&ctx.stack)
        .build()
}

/// Filters that find what the stack made for `component`: after a lost answer,
/// they tell whether the create happened.
pub fn component_filters(ctx: &Ctx, component: &str) -> [Filter; 2] {
    [
        stack_filter(ctx),
        Filter::builder()
            .name(format!("tag:{COMPONENT_TAG}"))
            .values(component)
            .build(),
    ]
}

/// An idempotency token for a request: the same for the same stack, component
/// and request, so a resend carries it. Creates whose resource AWS keeps listed
/// after it is deleted or failed (a NAT gateway, a route table) add `once()`:
/// with a token derived from the request alone, re-making one on the same
/// subnet and address would be answered with the old, dead one.
pub fn client_token(ctx: &Ctx, component: &str, request: &[&str]) -> String {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    for part in [ctx.stack.as_str(), component].iter().chain(request) {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    let digest = hash.finalize();
    // EC2 takes up to 64 ASCII characters.
    digest[..20].iter().map(|b| format!("{b:02x}")).collect()
}

/// A value of this create call alone, for [`client_token`]: resends of the
/// call share it; a re-run, which finds what an earlier run made by its tags,
/// does not.
pub fn once() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the system's random source");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// NAT gateways that are on their way or in use.
fn live_nat_gateways() -> Filter {
    Filter::builder()
        .name("state")
        .values("pending")
        .values("available")
        .build()
}

pub fn ec2_tagged(ctx: &Ctx, tags: &[Tag]) -> Option<(String, String)> {
    let (component, name) = tagged(
        &ctx.stack,
        tags.iter()
            .map(|t| (t.key().unwrap_or(""), t.value().unwrap_or(""))),
    )?;
    let name = name.unwrap_or_else(|| component.clone());
    Some((component, name))
}

fn flag(value: bool) -> AttributeBooleanValue {
    AttributeBooleanValue::builder().value(value).build()
}

pub async fn discover(ctx: &Ctx) -> anyhow::Result<Vec<Existing>> {
    let ec2 = &ctx.aws.ec2;
    let (vpcs, subnets, gateways, addresses, nats, tables) = tokio::try_join!(
        async {
            ec2.describe_vpcs()
                .filters(stack_filter(ctx))
                .send()
                .await
                .map_err(aws_error)
        },
        async {
            ec2.describe_subnets()
                .filters(stack_filter(ctx))
                .send()
                .await
                .map_err(aws_error)
        },
        async {
            ec2.describe_internet_gateways()
                .filters(stack_filter(ctx))
                .send()
                .await
                .map_err(aws_error)
        },
        async {
            ec2.describe_addresses()
                .filters(stack_filter(ctx))
                .send()
                .await
                .map_err(aws_error)
        },
        async {
            // Live ones only: AWS lists deleted gateways for an hour, and not
            // every endpoint filters them by tag (moto 5.2.5 lists them all).
            ec2.describe_nat_gateways()
                .filter(stack_filter(ctx))
                .filter(live_nat_gateways())
                .send()
                .await
                .map_err(aws_error)
        },
        async {
            ec2.describe_route_tables()
                .filters(stack_filter(ctx))
                .send()
                .await
                .map_err(aws_error)
        },
    )
    .context("cannot list the stack's network (ec2:Describe*)")?;
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
    for table in tables.route_tables() {
        let Some((component, name)) = ec2_tagged(ctx, table.tags()) else {
            continue;
        };
        let default_route = table
            .routes()
            .iter()
            .find(|r| r.destination_cidr_block() == Some("0.0.0.0/0"))
            .and_then(|r| r.gateway_id().or(r.nat_gateway_id()))
            .unwrap_or_default()
            .to_owned();
        let mut e = existing(
            component,
            Kind::RouteTable,
            name,
            table.route_table_id().unwrap_or_default().to_owned(),
            &[
                ("vpc", table.vpc_id().unwrap_or_default().to_owned()),
                ("default_route", default_route),
                (
                    "subnets",
                    table
                        .associations()
                        .iter()
                        .filter_map(|a| a.subnet_id())
                        .collect::<Vec<_>>()
                        .join(","),
                ),
            ],
        );
        for association in table.associations() {
            if let (Some(subnet), Some(association)) = (
                association.subnet_id(),
                association.route_table_association_id(),
            ) {
                e.attrs
                    .insert(format!("association {subnet}"), association.to_owned());
            }
        }
        found.push(e);
    }
    Ok(found)
}

pub async fn create_vpc(ctx: &Ctx, resource: &Resource) -> anyhow::Result<Existing> {
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
    let unset = |_: &str| true;
    update_vpc(ctx, resource, &current, &unset).await
}

pub async fn update_vpc(
    ctx: &Ctx,
    resource: &Resource,
    current: &Existing,
    changed: &dyn Fn(&str) -> bool,
) -> anyhow::Result<Existing> {
    // One attribute per call: the API refuses both at once.
    if changed("dns_support") {
        ctx.aws
            .ec2
            .modify_vpc_attribute()
            .vpc_id(&current.id)
            .enable_dns_support(flag(resource.props["dns_support"] == "true"))
            .send()
            .await
            .map_err(aws_error)?;
    }
    if changed("dns_hostnames") {
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

pub async fn create_subnet(
    ctx: &Ctx,
    known: &Known,
    resource: &Resource,
) -> anyhow::Result<Existing> {
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
    update_subnet(ctx, resource, &current).await
}

pub async fn update_subnet(
    ctx: &Ctx,
    resource: &Resource,
    current: &Existing,
) -> anyhow::Result<Existing> {
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

pub async fn create_internet_gateway(
    ctx: &Ctx,
    known: &Known,
    resource: &Resource,
) -> anyhow::Result<Existing> {
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
    update_internet_gateway(ctx, known, &current).await?;
    Ok(created(resource, gateway_id))
}

pub async fn update_internet_gateway(
    ctx: &Ctx,
    known: &Known,
    current: &Existing,
) -> anyhow::Result<Existing> {
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

pub async fn create_elastic_ip(ctx: &Ctx, resource: &Resource) -> anyhow::Result<Existing> {
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

pub async fn create_nat_gateway(
    ctx: &Ctx,
    known: &Known,
    resource: &Resource,
) -> anyhow::Result<Existing> {
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

pub async fn wait_nat(
    ctx: &Ctx,
    component: &str,
    nat_id: &str,
    target: &str,
) -> anyhow::Result<()> {
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

pub async fn create_route_table(
    ctx: &Ctx,
    known: &Known,
    resource: &Resource,
) -> anyhow::Result<Existing> {
    let vpc = id(known, "vpc")?;
    let token = client_token(ctx, &resource.component, &[vpc, &once()]);
    let table_id = create_once(
        ctx,
        "the route table",
        || async {
            let table = ctx
                .aws
                .ec2_once
                .create_route_table()
                .client_token(&token)
                .vpc_id(vpc)
                .tag_specifications(tag_spec(ctx, ResourceType::RouteTable, resource))
                .send()
                .await?;
            Ok(table
                .route_table()
                .and_then(|t| t.route_table_id())
                .map(str::to_owned))
        },
        || async {
            let found = ctx
                .aws
                .ec2
                .describe_route_tables()
                .set_filters(Some(component_filters(ctx, &resource.component).into()))
                .send()
                .await
                .map_err(aws_error)?;
            Ok(found
                .route_tables()
                .first()
                .map(|t| t.route_table_id().map(str::to_owned)))
        },
    )
    .await?
    .context("CreateRouteTable returned no id")?;
    let mut current = created(resource, table_id);
    // Routes and associations are (re)made by the update below, which tolerates
    // the ones a lost answer left behind.
    current.props.insert("default_route".into(), String::new());
    current.props.insert("subnets".into(), String::new());
    let all = |_: &str| true;
    update_route_table(ctx, known, resource, &current, &all).await
}

pub async fn update_route_table(
    ctx: &Ctx,
    known: &Known,
    resource: &Resource,
    current: &Existing,
    changed: &dyn Fn(&str) -> bool,
) -> anyhow::Result<Existing> {
    let ec2 = &ctx.aws.ec2;
    if changed("default_route") {
        let target_component = &resource.props["default_route"];
        let target = id(known, target_component)?;
        let is_nat = known.get(target_component).map(|e| e.kind) == Some(Kind::NatGateway);
        let mut replace = !current.props["default_route"].is_empty();
        if !replace {
            let request = ec2
                .create_route()
                .route_table_id(&current.id)
                .destination_cidr_block("0.0.0.0/0");
            let request = if is_nat {
                request.nat_gateway_id(target)
            } else {
                request.gateway_id(target)
            };
            // There already (a resend after a lost answer): pointed at the target below.
            replace = request
                .send()
                .await
                .or_already(&["RouteAlreadyExists"])?
                .is_none();
        }
        if replace {
            let request = ec2
                .replace_route()
                .route_table_id(&current.id)
                .destination_cidr_block("0.0.0.0/0");
            let request = if is_nat {
                request.nat_gateway_id(target)
            } else {
                request.gateway_id(target)
            };
            request.send().await.map_err(aws_error)?;
        }
    }
    if changed("subnets") {
        let wanted: Vec<&str> = resource.props["subnets"].split(',').collect();
        let have: Vec<&str> = current.props["subnets"]
            .split(',')
            .filter(|s| !s.is_empty())
            .collect();
        for subnet in have.iter().filter(|s| !wanted.contains(s)) {
            let subnet_id = known.get(*subnet).map_or(*subnet, |e| e.id.as_str());
            if let Some(association) = current.attrs.get(&format!("association {subnet_id}")) {
                ec2.disassociate_route_table()
                    .association_id(association)
                    .send()
                    .await
                    .or_already(GONE)?;
            }
        }
        for subnet in wanted.iter().filter(|s| !have.contains(s)) {
            let subnet_id = id(known, subnet)?;
            let associated = ec2
                .associate_route_table()
                .route_table_id(&current.id)
                .subnet_id(subnet_id)
                .send()
                .await
                .or_already(&["Resource.AlreadyAssociated"])?;
            if associated.is_none() {
                // Associated already: with this table is what a resend after a lost answer finds.
                let tables = ec2
                    .describe_route_tables()
                    .route_table_ids(&current.id)
                    .send()
                    .await
                    .map_err(aws_error)?;
                let ours = tables
                    .route_tables()
                    .iter()
                    .flat_map(|t| t.associations())
                    .any(|a| a.subnet_id() == Some(subnet_id));
                anyhow::ensure!(
                    ours,
                    "subnet {subnet_id} is associated with another route table than {}",
                    current.id
                );
            }
        }
    }
    Ok(created(resource, current.id.clone()))
}

pub async fn delete_vpc(ctx: &Ctx, current: &Existing) -> anyhow::Result<()> {
    ctx.aws
        .ec2
        .delete_vpc()
        .vpc_id(&current.id)
        .send()
        .await
        .or_already(GONE)?;
    Ok(())
}

pub async fn delete_subnet(ctx: &Ctx, current: &Existing) -> anyhow::Result<()> {
    ctx.aws
        .ec2
        .delete_subnet()
        .subnet_id(&current.id)
        .send()
        .await
        .or_already(GONE)?;
    Ok(())
}

pub async fn delete_internet_gateway(ctx: &Ctx, current: &Existing) -> anyhow::Result<()> {
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

pub async fn delete_elastic_ip(ctx: &Ctx, current: &Existing) -> anyhow::Result<()> {
    ctx.aws
        .ec2
        .release_address()
        .allocation_id(&current.id)
        .send()
        .await
        .or_already(GONE)?;
    Ok(())
}

pub async fn delete_nat_gateway(ctx: &Ctx, current: &Existing) -> anyhow::Result<()> {
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

pub async fn delete_route_table(ctx: &Ctx, current: &Existing) -> anyhow::Result<()> {
    for (key, association) in &current.attrs {
        if key.starts_with("association ") {
            ctx.aws
                .ec2
                .disassociate_route_table()
                .association_id(association)
                .send()
                .await
                .or_already(GONE)?;
        }
    }
    ctx.aws
        .ec2
        .delete_route_table()
        .route_table_id(&current.id)
        .send()
        .await
        .or_already(GONE)?;
    Ok(())
}
