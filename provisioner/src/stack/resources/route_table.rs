//! The public and private route tables: each sends its tier's subnets to the
//! internet, the public one through the internet gateway, the private one
//! through the NAT gateway.

use anyhow::Context;
use aws_sdk_ec2::types::ResourceType;

use super::find::create_once;
use super::tags::{client_token, component_filters, ec2_tagged, once, stack_filter, tag_spec};
use super::{Changed, Ctx, Known, ResourceKind, Wanted, created, existing, id, resource};
use crate::stack::aws::{GONE, OrAlready, aws_error};
use crate::stack::spec::{Existing, Kind, Resource};

pub struct RouteTable;

impl ResourceKind for RouteTable {
    fn kind(&self) -> Kind {
        Kind::RouteTable
    }

    fn label(&self) -> &'static str {
        "route table"
    }

    fn desired(&self, wanted: &Wanted<'_>) -> Vec<Resource> {
        [("public", "internet-gateway"), ("private", "nat-gateway")]
            .into_iter()
            .map(|(tier, gateway)| {
                let subnets = wanted.subnets(tier);
                let mut depends_on = vec!["vpc", gateway];
                depends_on.extend(subnets.iter().map(String::as_str));
                resource(
                    &format!("route-table-{tier}"),
                    Kind::RouteTable,
                    wanted.name(tier),
                    &[
                        ("vpc", "vpc".into()),
                        ("default_route", gateway.into()),
                        ("subnets", wanted.subnet_list(tier)),
                    ],
                    &depends_on,
                )
            })
            .collect()
    }

    fn forces_replacement(&self, key: &str) -> bool {
        key == "vpc"
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

async fn discover(ctx: &Ctx) -> anyhow::Result<Vec<Existing>> {
    let tables = ctx
        .aws
        .ec2
        .describe_route_tables()
        .filters(stack_filter(ctx))
        .send()
        .await
        .map_err(aws_error)
        .context("cannot list the stack's route tables (ec2:DescribeRouteTables)")?;
    let mut found = Vec::new();
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

async fn create(ctx: &Ctx, known: &Known, resource: &Resource) -> anyhow::Result<Existing> {
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
    let all = Changed(resource.props.keys().cloned().collect());
    update(ctx, known, resource, &current, &all).await
}

async fn update(
    ctx: &Ctx,
    known: &Known,
    resource: &Resource,
    current: &Existing,
    changed: &Changed,
) -> anyhow::Result<Existing> {
    let ec2 = &ctx.aws.ec2;
    if changed.has("default_route") {
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
    if changed.has("subnets") {
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

async fn delete(ctx: &Ctx, current: &Existing) -> anyhow::Result<()> {
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
