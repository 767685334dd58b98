//! The ElastiCache subnet group Redis runs in: the stack's private subnets,
//! changed in place. It can go only once the replication group is gone, so
//! its delete retries while AWS says it is in use. How ElastiCache resources
//! carry and show the stack's tags is here too; the Redis file uses it.

use anyhow::Context;
use aws_sdk_elasticache::types::Tag;

use super::find::adopt;
use super::tags::tagged;
use super::wait::{Poll, wait_for};
use super::{Changed, Ctx, Known, ResourceKind, Wanted, created, existing, ids, resource};
use crate::stack::aws::{EXISTS, Failure, OrAlready, aws_error, error_code, failure};
use crate::stack::spec::{Existing, Kind, Resource};

pub struct CacheSubnetGroup;

impl ResourceKind for CacheSubnetGroup {
    fn kind(&self) -> Kind {
        Kind::CacheSubnetGroup
    }

    fn label(&self) -> &'static str {
        "cache subnet group"
    }

    fn desired(&self, wanted: &Wanted<'_>) -> Vec<Resource> {
        let subnets = wanted.subnets("private");
        let depends_on: Vec<&str> = subnets.iter().map(String::as_str).collect();
        vec![resource(
            "cache-subnet-group",
            Kind::CacheSubnetGroup,
            wanted.name("redis-subnets"),
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

/// The stack's tags as ElastiCache takes them, in the call that creates the resource.
pub(super) fn tags(ctx: &Ctx, resource: &Resource) -> Vec<Tag> {
    ctx.tags(&resource.component, &resource.name)
        .into_iter()
        .map(|(key, value)| Tag::builder().key(key).value(value).build())
        .collect()
}

/// The component of the ElastiCache resource `arn`, when it is the stack's
/// (ElastiCache answers tags only on their own call).
pub(super) async fn component_of(ctx: &Ctx, arn: &str) -> anyhow::Result<Option<String>> {
    let tags = ctx
        .aws
        .elasticache
        .list_tags_for_resource()
        .resource_name(arn)
        .send()
        .await
        .map_err(aws_error)?;
    Ok(tagged(
        &ctx.stack,
        tags.tag_list()
            .iter()
            .map(|t| (t.key().unwrap_or(""), t.value().unwrap_or(""))),
    )
    .map(|(component, _)| component))
}

async fn discover(ctx: &Ctx) -> anyhow::Result<Vec<Existing>> {
    let cache = &ctx.aws.elasticache;
    let mut found = Vec::new();
    let group_name = format!("{}-redis-subnets", ctx.stack);
    match cache
        .describe_cache_subnet_groups()
        .cache_subnet_group_name(&group_name)
        .send()
        .await
    {
        Ok(groups) => {
            for group in groups.cache_subnet_groups() {
                let arn = group.arn().unwrap_or_default();
                let Some(component) = component_of(ctx, arn).await? else {
                    anyhow::bail!(
                        "the cache subnet group {group_name} exists without the tag accunode:stack={}: not this stack's, not touched",
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
                    Kind::CacheSubnetGroup,
                    group_name.clone(),
                    group_name.clone(),
                    &[("subnets", subnets.join(","))],
                );
                e.aliases.push(arn.to_owned());
                found.push(e);
            }
        }
        Err(error) if error_code(&error) == Some("CacheSubnetGroupNotFoundFault") => {}
        Err(error) => {
            return Err(aws_error(error)).context("cannot look up the cache subnet group");
        }
    }
    Ok(found)
}

async fn create(ctx: &Ctx, known: &Known, resource: &Resource) -> anyhow::Result<Existing> {
    if ctx
        .aws
        .elasticache
        .create_cache_subnet_group()
        .cache_subnet_group_name(&resource.name)
        .cache_subnet_group_description(format!("AccuNode {} Redis: private subnets", ctx.stack))
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
        .elasticache
        .modify_cache_subnet_group()
        .cache_subnet_group_name(&current.id)
        .set_subnet_ids(Some(ids(known, &resource.props["subnets"])?))
        .send()
        .await
        .map_err(aws_error)?;
    Ok(created(resource, current.id.clone()))
}

/// The subnet group can go only once the replication group is gone: AWS says
/// CacheSubnetGroupInUse until then, so this retries within the wait timeout.
async fn delete(ctx: &Ctx, current: &Existing) -> anyhow::Result<()> {
    wait_for(ctx, &current.component, || async {
        // Sent once per poll: this loop is the retry (an endpoint that lacks the
        // call answers 500, which the SDK would otherwise resend ten times).
        let once = aws_sdk_elasticache::config::Builder::default()
            .retry_config(aws_config::retry::RetryConfig::disabled());
        match ctx.aws.elasticache.delete_cache_subnet_group().cache_subnet_group_name(&current.id).customize().config_override(once).send().await {
            Ok(_) => Ok(Poll::Ready(())),
            Err(error) if error_code(&error) == Some("CacheSubnetGroupNotFoundFault") => {
                Ok(Poll::Ready(()))
            }
            Err(error) if error_code(&error) == Some("CacheSubnetGroupInUse") => {
                Ok(Poll::Pending("in use by the replication group being deleted".to_owned()))
            }
            // Local AWS stand-ins (moto 5.2.5) lack this call: say so and go on.
            Err(error) if crate::stack::aws::not_implemented(&error) => {
                eprintln!(
                    "accunode: warning: {} left in place: the endpoint does not implement DeleteCacheSubnetGroup",
                    current.name
                );
                Ok(Poll::Ready(()))
            }
            // Throttled, or the answer lost: the next poll sends it again.
            Err(error) if failure(&error) != Failure::Refused => {
                Ok(Poll::Pending("not answered".to_owned()))
            }
            Err(error) => Err(aws_error(error)),
        }
    })
    .await
}
