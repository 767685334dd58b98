//! Security groups and their inbound rules ("tcp PORT from CIDR-or-group"),
//! converged rule by rule: missing rules are added, extra ones revoked.

use anyhow::{Context, bail};
use aws_sdk_ec2::types::{IpPermission, IpRange, ResourceType, UserIdGroupPair};

use super::network::{ec2_tagged, stack_filter, tag_spec};
use super::{Ctx, Known, adopt, created, existing, id};
use crate::stack::aws::{EXISTS, GONE, OrAlready, aws_error};
use crate::stack::spec::{Existing, Kind, Resource};

pub async fn discover(ctx: &Ctx) -> anyhow::Result<Vec<Existing>> {
    let groups = ctx
        .aws
        .ec2
        .describe_security_groups()
        .filters(stack_filter(ctx))
        .send()
        .await
        .map_err(aws_error)
        .context("cannot list the stack's security groups")?;
    let mut found = Vec::new();
    for group in groups.security_groups() {
        let Some((component, name)) = ec2_tagged(ctx, group.tags()) else {
            continue;
        };
        let mut rules = Vec::new();
        for permission in group.ip_permissions() {
            let protocol = permission.ip_protocol().unwrap_or("-1");
            let port = permission
                .from_port()
                .map_or("all".to_owned(), |p| p.to_string());
            for range in permission.ip_ranges() {
                rules.push(format!(
                    "{protocol} {port} from {}",
                    range.cidr_ip().unwrap_or_default()
                ));
            }
            for pair in permission.user_id_group_pairs() {
                rules.push(format!(
                    "{protocol} {port} from {}",
                    pair.group_id().unwrap_or_default()
                ));
            }
        }
        rules.sort();
        found.push(existing(
            component,
            Kind::SecurityGroup,
            name,
            group.group_id().unwrap_or_default().to_owned(),
            &[
                ("vpc", group.vpc_id().unwrap_or_default().to_owned()),
                (
                    "description",
                    group.description().unwrap_or_default().to_owned(),
                ),
                ("ingress", rules.join(",")),
            ],
        ));
    }
    Ok(found)
}

pub async fn create(ctx: &Ctx, known: &Known, resource: &Resource) -> anyhow::Result<Existing> {
    let group = ctx
        .aws
        .ec2
        .create_security_group()
        .group_name(&resource.name)
        .description(&resource.props["description"])
        .vpc_id(id(known, "vpc")?)
        .tag_specifications(tag_spec(ctx, ResourceType::SecurityGroup, resource))
        .send()
        .await
        .or_already(EXISTS)?;
    let group_id = match group {
        Some(group) => group
            .group_id()
            .context("CreateSecurityGroup returned no id")?
            .to_owned(),
        None => adopt(ctx, resource, discover(ctx).await?)?.id,
    };
    let mut current = created(resource, group_id);
    current.props.insert("ingress".into(), String::new());
    update(ctx, known, resource, &current).await
}

pub async fn update(
    ctx: &Ctx,
    known: &Known,
    resource: &Resource,
    current: &Existing,
) -> anyhow::Result<Existing> {
    let rules = |value: &str| -> Vec<String> {
        value
            .split(',')
            .filter(|r| !r.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let wanted = rules(&resource.props["ingress"]);
    let have = rules(&current.props["ingress"]);
    let missing: Vec<IpPermission> = wanted
        .iter()
        .filter(|r| !have.contains(r))
        .map(|r| permission(known, r))
        .collect::<anyhow::Result<_>>()?;
    let extra: Vec<IpPermission> = have
        .iter()
        .filter(|r| !wanted.contains(r))
        .map(|r| permission(known, r))
        .collect::<anyhow::Result<_>>()?;
    if !extra.is_empty() {
        // All or nothing: when one is gone already (a resend after a lost
        // answer), the rest go one by one.
        let revoke = |permissions: Vec<IpPermission>| {
            ctx.aws
                .ec2
                .revoke_security_group_ingress()
                .group_id(&current.id)
                .set_ip_permissions(Some(permissions))
                .send()
        };
        if revoke(extra.clone())
            .await
            .or_already(&[GONE_RULE])?
            .is_none()
        {
            for permission in extra {
                revoke(vec![permission]).await.or_already(&[GONE_RULE])?;
            }
        }
    }
    if !missing.is_empty() {
        // All or nothing too: when one is there already, the rest one by one.
        let authorize = |permissions: Vec<IpPermission>| {
            ctx.aws
                .ec2
                .authorize_security_group_ingress()
                .group_id(&current.id)
                .set_ip_permissions(Some(permissions))
                .send()
        };
        if authorize(missing.clone())
            .await
            .or_already(&[DUPLICATE_RULE])?
            .is_none()
        {
            for permission in missing {
                authorize(vec![permission])
                    .await
                    .or_already(&[DUPLICATE_RULE])?;
            }
        }
    }
    Ok(created(resource, current.id.clone()))
}

const DUPLICATE_RULE: &str = "InvalidPermission.Duplicate";
const GONE_RULE: &str = "InvalidPermission.NotFound";

/// "tcp 8000 from sg-alb" or "tcp 22 from 203.0.113.0/24" as an EC2 permission.
fn permission(known: &Known, rule: &str) -> anyhow::Result<IpPermission> {
    let parts: Vec<&str> = rule.split(' ').collect();
    let [protocol, port, "from", source] = parts[..] else {
        bail!("malformed rule {rule:?}")
    };
    let mut permission = IpPermission::builder().ip_protocol(protocol);
    if let Ok(port) = port.parse::<i32>() {
        permission = permission.from_port(port).to_port(port);
    }
    permission = if source.contains('/') {
        permission.ip_ranges(IpRange::builder().cidr_ip(source).build())
    } else {
        // A component name, or an AWS group id that is not (or no longer) the stack's.
        let group = known.get(source).map_or(source, |e| e.id.as_str());
        permission.user_id_group_pairs(UserIdGroupPair::builder().group_id(group).build())
    };
    Ok(permission.build())
}

pub async fn delete(ctx: &Ctx, current: &Existing) -> anyhow::Result<()> {
    ctx.aws
        .ec2
        .delete_security_group()
        .group_id(&current.id)
        .send()
        .await
        .or_already(GONE)?;
    Ok(())
}
