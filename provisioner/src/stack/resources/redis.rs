//! ElastiCache Redis as a replication group (the form that later takes a
//! replica and automatic failover without re-creation) and its subnet group.
//! In-transit encryption and the AUTH token (the stack's SSM parameter,
//! generated before the group) are set at creation.
//! The node type changes in place with ModifyReplicationGroup. The engine
//! version, subnet group and security groups are set at creation:
//! DescribeReplicationGroups does not report them, so plans do not compare them.

use anyhow::Context;
use aws_sdk_elasticache::types::Tag;

use super::{Ctx, Known, Poll, adopt, created, existing, id, ids, tagged, wait_for, with_endpoint};
use crate::stack::aws::{EXISTS, Failure, GONE, OrAlready, aws_error, error_code, failure};
use crate::stack::spec::{Existing, Kind, Resource};

fn tags(ctx: &Ctx, resource: &Resource) -> Vec<Tag> {
    ctx.tags(&resource.component, &resource.name)
        .into_iter()
        .map(|(key, value)| Tag::builder().key(key).value(value).build())
        .collect()
}

async fn component_of(ctx: &Ctx, arn: &str) -> anyhow::Result<Option<String>> {
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

pub async fn discover(ctx: &Ctx) -> anyhow::Result<Vec<Existing>> {
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
    let name = format!("{}-redis", ctx.stack);
    match cache
        .describe_replication_groups()
        .replication_group_id(&name)
        .send()
        .await
    {
        Ok(groups) => {
            for group in groups.replication_groups() {
                let status = group.status().unwrap_or_default();
                if matches!(status, "deleting" | "deleted") {
                    continue;
                }
                let Some(component) = component_of(ctx, group.arn().unwrap_or_default()).await?
                else {
                    anyhow::bail!(
                        "the Redis replication group {name} exists without the tag accunode:stack={}: not this stack's, not touched",
                        ctx.stack
                    );
                };
                let mut e = existing(
                    component,
                    Kind::Redis,
                    name.clone(),
                    name.clone(),
                    &[
                        ("engine", group.engine().unwrap_or("redis").to_owned()),
                        (
                            "node_type",
                            group.cache_node_type().unwrap_or_default().to_owned(),
                        ),
                        ("nodes", group.member_clusters().len().to_string()),
                        (
                            "encrypted_at_rest",
                            group
                                .at_rest_encryption_enabled()
                                .unwrap_or(false)
                                .to_string(),
                        ),
                        (
                            "encrypted_in_transit",
                            group
                                .transit_encryption_enabled()
                                .unwrap_or(false)
                                .to_string(),
                        ),
                        (
                            "auth_token",
                            group.auth_token_enabled().unwrap_or(false).to_string(),
                        ),
                    ],
                );
                e.attrs.insert("status".into(), status.to_owned());
                if let Some(endpoint) = primary_endpoint(group) {
                    e.attrs.insert("endpoint".into(), endpoint);
                }
                found.push(e);
            }
        }
        Err(error) if error_code(&error) == Some("ReplicationGroupNotFoundFault") => {}
        Err(error) => {
            return Err(aws_error(error)).context("cannot look up the Redis replication group");
        }
    }
    Ok(found)
}

fn primary_endpoint(group: &aws_sdk_elasticache::types::ReplicationGroup) -> Option<String> {
    group
        .node_groups()
        .first()
        .and_then(|n| n.primary_endpoint())
        .and_then(|e| e.address())
        .map(str::to_owned)
}

pub async fn create_subnet_group(
    ctx: &Ctx,
    known: &Known,
    resource: &Resource,
) -> anyhow::Result<Existing> {
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

pub async fn update_subnet_group(
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

pub async fn create(ctx: &Ctx, known: &Known, resource: &Resource) -> anyhow::Result<Existing> {
    let p = &resource.props;
    if ctx
        .aws
        .elasticache
        .create_replication_group()
        .replication_group_id(&resource.name)
        .replication_group_description(format!("AccuNode {} task queue and cache", ctx.stack))
        .engine(&p["engine"])
        .engine_version(&p["engine_version"])
        .cache_node_type(&p["node_type"])
        .num_cache_clusters(p["nodes"].parse()?)
        .at_rest_encryption_enabled(p["encrypted_at_rest"] == "true")
        .transit_encryption_enabled(p["encrypted_in_transit"] == "true")
        .set_auth_token(if p["auth_token"] == "true" {
            Some(super::parameter::redis_auth_token(ctx).await?)
        } else {
            None
        })
        .cache_subnet_group_name(id(known, &p["subnet_group"])?)
        .set_security_group_ids(Some(ids(known, &p["security_groups"])?))
        .set_tags(Some(tags(ctx, resource)))
        .send()
        .await
        .or_already(EXISTS)?
        .is_none()
    {
        adopt(ctx, resource, discover(ctx).await?)?;
    }
    wait_available(ctx, &resource.component, &resource.name)
        .await
        .map(|endpoint| with_endpoint(resource, endpoint))
}

pub async fn update(
    ctx: &Ctx,
    known: &Known,
    resource: &Resource,
    current: &Existing,
    changed: &dyn Fn(&str) -> bool,
) -> anyhow::Result<Existing> {
    let mut request = ctx
        .aws
        .elasticache
        .modify_replication_group()
        .replication_group_id(&current.id)
        .apply_immediately(true);
    if changed("node_type") {
        request = request.cache_node_type(&resource.props["node_type"]);
    }
    if changed("security_groups") {
        request =
            request.set_security_group_ids(Some(ids(known, &resource.props["security_groups"])?));
    }
    // A resend after a lost answer finds it modifying already: wait for that below.
    request
        .send()
        .await
        .or_already(&["InvalidReplicationGroupState"])?;
    wait_available(ctx, &resource.component, &resource.name)
        .await
        .map(|endpoint| with_endpoint(resource, endpoint))
}

/// Waits until the group is available and returns its primary endpoint.
pub async fn wait_available(ctx: &Ctx, component: &str, name: &str) -> anyhow::Result<String> {
    wait_for(ctx, component, || async {
        let groups = ctx
            .aws
            .elasticache
            .describe_replication_groups()
            .replication_group_id(name)
            .send()
            .await
            .map_err(aws_error)?;
        let group = groups
            .replication_groups()
            .first()
            .context("the replication group vanished while waiting")?;
        Ok(match (group.status(), primary_endpoint(group)) {
            (Some("available"), Some(endpoint)) => Poll::Ready(endpoint),
            (status, _) => Poll::Pending(status.unwrap_or("unknown").to_owned()),
        })
    })
    .await
}

pub async fn delete(ctx: &Ctx, current: &Existing) -> anyhow::Result<()> {
    ctx.aws
        .elasticache
        .delete_replication_group()
        .replication_group_id(&current.id)
        .send()
        .await
        // A resend after a lost answer finds it deleting already.
        .or_already(&[GONE, &["InvalidReplicationGroupState"]].concat())?;
    Ok(())
}

/// The subnet group can go only once the replication group is gone: AWS says
/// CacheSubnetGroupInUse until then, so this retries within the wait timeout.
pub async fn delete_subnet_group(ctx: &Ctx, current: &Existing) -> anyhow::Result<()> {
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
