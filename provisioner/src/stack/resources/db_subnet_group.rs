//! The RDS subnet group the database runs in: the stack's private subnets,
//! changed in place. How RDS resources carry and show the stack's tags is
//! here too; the database's file uses it.

use anyhow::Context;
use aws_sdk_rds::types::Tag;

use super::find::adopt;
use super::tags::tagged;
use super::{Changed, Ctx, Known, ResourceKind, Wanted, created, existing, ids, resource};
use crate::stack::aws::{EXISTS, GONE, OrAlready, aws_error, error_code};
use crate::stack::spec::{Existing, Kind, Resource};

pub struct DbSubnetGroup;

impl ResourceKind for DbSubnetGroup {
    fn kind(&self) -> Kind {
        Kind::DbSubnetGroup
    }

    fn label(&self) -> &'static str {
        "db subnet group"
    }

    fn desired(&self, wanted: &Wanted<'_>) -> Vec<Resource> {
        let subnets = wanted.subnets("private");
        let depends_on: Vec<&str> = subnets.iter().map(String::as_str).collect();
        vec![resource(
            "db-subnet-group",
            Kind::DbSubnetGroup,
            wanted.name("db-subnets"),
            &[("subnets", wanted.subnet_list("private"))],
            &depends_on,
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
        resource: &Resource,
        current: &Existing,
        _changed: &Changed,
    ) -> anyhow::Result<Existing> {
        update(ctx, known, resource, current).await
    }

    async fn delete(&self, ctx: &Ctx, current: &Existing) -> anyhow::Result<()> {
        delete(ctx, current).await
    }
}

/// The stack's tags as RDS takes them, in the call that creates the resource.
pub(super) fn tags(ctx: &Ctx, resource: &Resource) -> Vec<Tag> {
    ctx.tags(&resource.component, &resource.name)
        .into_iter()
        .map(|(key, value)| Tag::builder().key(key).value(value).build())
        .collect()
}

/// The component of an RDS resource with these tags, when it is the stack's.
pub(super) fn ours(ctx: &Ctx, tags: &[Tag]) -> Option<String> {
    tagged(
        &ctx.stack,
        tags.iter()
            .map(|t| (t.key().unwrap_or(""), t.value().unwrap_or(""))),
    )
    .map(|(c, _)| c)
}

fn subnet_group_name(ctx: &Ctx) -> String {
    format!("{}-db-subnets", ctx.stack)
}

async fn discover(ctx: &Ctx) -> anyhow::Result<Vec<Existing>> {
    let rds = &ctx.aws.rds;
    let mut found = Vec::new();
    let group_name = subnet_group_name(ctx);
    match rds
        .describe_db_subnet_groups()
        .db_subnet_group_name(&group_name)
        .send()
        .await
    {
        Ok(groups) => {
            for group in groups.db_subnet_groups() {
                let arn = group.db_subnet_group_arn().unwrap_or_default();
                let tags = rds
                    .list_tags_for_resource()
                    .resource_name(arn)
                    .send()
                    .await
                    .map_err(aws_error)?;
                let Some(component) = ours(ctx, tags.tag_list()) else {
                    anyhow::bail!(
                        "the DB subnet group {group_name} exists without the tag accunode:stack={}: not this stack's, not touched",
                        ctx.stack
                    );
                };
                let subnets: Vec<&str> = group
                    .subnets()
                    .iter()
                    .filter_map(|s| s.subnet_identifier())
                    .collect();
                let mut e = existing(
                    component,
                    Kind::DbSubnetGroup,
                    group_name.clone(),
                    group_name.clone(),
                    &[("subnets", subnets.join(","))],
                );
                e.aliases.push(arn.to_owned());
                found.push(e);
            }
        }
        Err(error) if error_code(&error) == Some("DBSubnetGroupNotFoundFault") => {}
        Err(error) => return Err(aws_error(error)).context("cannot look up the DB subnet group"),
    }
    Ok(found)
}

async fn create(ctx: &Ctx, known: &Known, resource: &Resource) -> anyhow::Result<Existing> {
    if ctx
        .aws
        .rds
        .create_db_subnet_group()
        .db_subnet_group_name(&resource.name)
        .db_subnet_group_description(format!("AccuNode {} database: private subnets", ctx.stack))
        .set_subnet_ids(Some(ids(known, &resource.props["subnets"])?))
        .set_tags(Some(tags(ctx, resource)))
        .send()
        .await
        .or_already(EXISTS)?
        .is_none()
    {
        adopt(ctx, resource, discover(ctx).await?)?;
    }
    Ok(created(resource, resource.name.clone()))
}

async fn update(
    ctx: &Ctx,
    known: &Known,
    resource: &Resource,
    current: &Existing,
) -> anyhow::Result<Existing> {
    ctx.aws
        .rds
        .modify_db_subnet_group()
        .db_subnet_group_name(&current.id)
        .set_subnet_ids(Some(ids(known, &resource.props["subnets"])?))
        .send()
        .await
        .map_err(aws_error)?;
    Ok(created(resource, current.id.clone()))
}

async fn delete(ctx: &Ctx, current: &Existing) -> anyhow::Result<()> {
    ctx.aws
        .rds
        .delete_db_subnet_group()
        .db_subnet_group_name(&current.id)
        .send()
        .await
        .or_already(GONE)?;
    Ok(())
}
