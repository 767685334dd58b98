//! ElastiCache Redis as a replication group (the form that later takes a
//! replica and automatic failover without re-creation). In-transit encryption
//! and the AUTH token (the stack's SSM parameter, generated before the group)
//! are set at creation.
//! The node type changes in place with ModifyReplicationGroup. The engine
//! version, subnet group and security groups are set at creation:
//! DescribeReplicationGroups does not report them, so plans do not compare them.

use anyhow::Context;

use super::cache_subnet_group::{component_of, tags};
use super::find::adopt;
use super::wait::{Poll, wait_for};
use super::{
    Changed, Ctx, Known, ResourceKind, Wanted, existing, id, ids, resource, with_endpoint,
};
use crate::stack::aws::{EXISTS, GONE, OrAlready, aws_error, error_code};
use crate::stack::definition::Definition;
use crate::stack::spec::{Existing, Kind, Props, Resource};

pub struct Redis;

impl ResourceKind for Redis {
    fn kind(&self) -> Kind {
        Kind::Redis
    }

    fn label(&self) -> &'static str {
        "redis group"
    }

    fn desired(&self, wanted: &Wanted<'_>) -> Vec<Resource> {
        let redis = &wanted.definition.redis;
        vec![resource(
            "redis",
            Kind::Redis,
            wanted.name("redis"),
            &[
                ("engine", redis.engine.clone()),
                ("engine_version", redis.engine_version.clone()),
                ("node_type", wanted.phase.redis_node_type.clone()),
                ("nodes", "1".into()),
                ("encrypted_at_rest", "true".into()),
                ("encrypted_in_transit", "true".into()),
                ("auth_token", "true".into()),
                ("subnet_group", "cache-subnet-group".into()),
                ("security_groups", "sg-redis".into()),
            ],
            &["cache-subnet-group", "sg-redis", "param-redis-auth-token"],
        )]
    }

    fn forces_replacement(&self, key: &str) -> bool {
        // Moving a live group to in-transit encryption and AUTH takes AWS's
        // two-step migration, which the provisioner does not drive: replace.
        matches!(
            key,
            "engine" | "encrypted_at_rest" | "nodes" | "encrypted_in_transit" | "auth_token"
        )
    }

    fn monthly_cost(&self, definition: &Definition, props: &Props) -> f64 {
        let prices = &definition.prices;
        let node = props
            .get("node_type")
            .and_then(|t| prices.elasticache_hourly.get(t))
            .copied()
            .unwrap_or(0.0);
        let nodes = props
            .get("nodes")
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        node * prices.hours_per_month * nodes.max(1.0)
    }

    fn in_transition<'e>(&self, current: &'e Existing) -> Option<&'e str> {
        current
            .attrs
            .get("status")
            .map(String::as_str)
            .filter(|s| matches!(*s, "creating" | "modifying" | "snapshotting"))
    }

    async fn settle(&self, ctx: &Ctx, current: &mut Existing) -> anyhow::Result<()> {
        settle(ctx, current).await
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
    let cache = &ctx.aws.elasticache;
    let mut found = Vec::new();
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

async fn create(ctx: &Ctx, known: &Known, resource: &Resource) -> anyhow::Result<Existing> {
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

async fn update(
    ctx: &Ctx,
    known: &Known,
    resource: &Resource,
    current: &Existing,
    changed: &Changed,
) -> anyhow::Result<Existing> {
    let mut request = ctx
        .aws
        .elasticache
        .modify_replication_group()
        .replication_group_id(&current.id)
        .apply_immediately(true);
    if changed.has("node_type") {
        request = request.cache_node_type(&resource.props["node_type"]);
    }
    if changed.has("security_groups") {
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

/// Waits for a group discovery found on its way to available, and records
/// the primary endpoint AWS gives only then.
async fn settle(ctx: &Ctx, current: &mut Existing) -> anyhow::Result<()> {
    let endpoint = wait_available(ctx, &current.component, &current.id).await?;
    current.attrs.insert("endpoint".into(), endpoint);
    current.attrs.insert("status".into(), "available".into());
    Ok(())
}

/// Waits until the group is available and returns its primary endpoint.
async fn wait_available(ctx: &Ctx, component: &str, name: &str) -> anyhow::Result<String> {
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

async fn delete(ctx: &Ctx, current: &Existing) -> anyhow::Result<()> {
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
