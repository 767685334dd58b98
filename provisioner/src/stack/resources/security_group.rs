//! Security groups and their inbound rules ([`Rule`]: "tcp PORT from
//! CIDR-or-group"), converged rule by rule: missing rules are added, extra
//! ones revoked. The five groups are the original design's "Security Groups"
//! section; a group depends on the groups its rules admit traffic from.
//!
//! A rule is the security group's typed property: plans show and compare it
//! as text (discovery produces the same text from describe calls), but the
//! code builds and reads it as a [`Rule`], so the text is made and parsed in
//! one place.

use std::fmt;
use std::str::FromStr;

use anyhow::{Context, bail};
use aws_sdk_ec2::types::{IpPermission, IpRange, ResourceType, UserIdGroupPair};

use super::find::adopt;
use super::tags::{ec2_tagged, stack_filter, tag_spec};
use super::{Changed, Ctx, Known, ResourceKind, Wanted, created, existing, id, list, resource};
use crate::stack::aws::{EXISTS, GONE, OrAlready, aws_error};
use crate::stack::spec::{Existing, Kind, Resource};

pub struct SecurityGroup;

impl ResourceKind for SecurityGroup {
    fn kind(&self) -> Kind {
        Kind::SecurityGroup
    }

    fn label(&self) -> &'static str {
        "security group"
    }

    fn desired(&self, wanted: &Wanted<'_>) -> Vec<Resource> {
        // Security groups exactly as the original design's "Security Groups" section.
        let port = wanted.definition.instances.api_port;
        let ssh: Vec<Rule> = wanted
            .inputs
            .admin_cidr
            .map(|cidr| Rule::tcp(22, cidr))
            .into_iter()
            .collect();
        let anywhere = "0.0.0.0/0";
        let groups: [(&str, &str, Vec<Rule>); 5] = [
            (
                "sg-alb",
                "AccuNode load balancer: HTTP and HTTPS from anywhere",
                vec![Rule::tcp(80, anywhere), Rule::tcp(443, anywhere)],
            ),
            (
                "sg-api",
                "AccuNode API servers: the API port from the load balancer only",
                [vec![Rule::tcp(port, "sg-alb")], ssh.clone()].concat(),
            ),
            (
                "sg-worker",
                "AccuNode workers: no inbound traffic but SSH from the admin range",
                ssh,
            ),
            (
                "sg-database",
                "AccuNode PostgreSQL: from the API servers and workers only",
                vec![Rule::tcp(5432, "sg-api"), Rule::tcp(5432, "sg-worker")],
            ),
            (
                "sg-redis",
                "AccuNode Redis: from the API servers and workers only",
                vec![Rule::tcp(6379, "sg-api"), Rule::tcp(6379, "sg-worker")],
            ),
        ];
        groups
            .into_iter()
            .map(|(component, description, rules)| {
                // A group waits for the groups its rules admit traffic from.
                let mut deps = vec!["vpc"];
                deps.extend(rules.iter().filter_map(Rule::source_group));
                resource(
                    component,
                    Kind::SecurityGroup,
                    wanted.name(component),
                    &[
                        ("vpc", "vpc".into()),
                        ("description", description.into()),
                        ("ingress", list(rules.iter().map(Rule::to_string))),
                    ],
                    &deps,
                )
            })
            .collect()
    }

    fn forces_replacement(&self, key: &str) -> bool {
        matches!(key, "vpc" | "description")
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

/// One inbound rule: a protocol, a port (`None`: every port) and where the
/// traffic may come from, a CIDR range or a security group (the stack's
/// component name; discovery reads an AWS id and maps it to one). Plans show
/// and compare it as text, "tcp 8000 from sg-alb"; this type is the one place
/// that text is made and read.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    protocol: String,
    port: Option<i32>,
    from: String,
}

impl Rule {
    fn tcp(port: i32, from: impl Into<String>) -> Rule {
        Rule {
            protocol: "tcp".to_owned(),
            port: Some(port),
            from: from.into(),
        }
    }

    /// The security group the traffic comes from, when it is not a CIDR range.
    fn source_group(&self) -> Option<&str> {
        (!self.from.contains('/')).then_some(self.from.as_str())
    }

    /// The rules of an `ingress` property (comma-separated).
    fn list(value: &str) -> anyhow::Result<Vec<Rule>> {
        value
            .split(',')
            .filter(|r| !r.is_empty())
            .map(str::parse)
            .collect()
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(port) => write!(f, "{} {port} from {}", self.protocol, self.from),
            None => write!(f, "{} all from {}", self.protocol, self.from),
        }
    }
}

impl FromStr for Rule {
    type Err = anyhow::Error;

    fn from_str(rule: &str) -> anyhow::Result<Rule> {
        let parts: Vec<&str> = rule.split(' ').collect();
        let [protocol, port, "from", from] = parts[..] else {
            bail!("malformed rule {rule:?}: expected \"PROTOCOL PORT from SOURCE\"")
        };
        let port = match port {
            "all" => None,
            port => Some(
                port.parse()
                    .with_context(|| format!("malformed rule {rule:?}: port {port:?}"))?,
            ),
        };
        Ok(Rule {
            protocol: protocol.to_owned(),
            port,
            from: from.to_owned(),
        })
    }
}

async fn discover(ctx: &Ctx) -> anyhow::Result<Vec<Existing>> {
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
            let sources = permission
                .ip_ranges()
                .iter()
                .map(|range| range.cidr_ip())
                .chain(
                    permission
                        .user_id_group_pairs()
                        .iter()
                        .map(|pair| pair.group_id()),
                );
            for from in sources {
                let rule = Rule {
                    protocol: permission.ip_protocol().unwrap_or("-1").to_owned(),
                    port: permission.from_port(),
                    from: from.unwrap_or_default().to_owned(),
                };
                rules.push(rule.to_string());
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

async fn create(ctx: &Ctx, known: &Known, resource: &Resource) -> anyhow::Result<Existing> {
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

async fn update(
    ctx: &Ctx,
    known: &Known,
    resource: &Resource,
    current: &Existing,
) -> anyhow::Result<Existing> {
    let wanted = Rule::list(&resource.props["ingress"])?;
    let have = Rule::list(&current.props["ingress"])?;
    let missing: Vec<IpPermission> = wanted
        .iter()
        .filter(|r| !have.contains(r))
        .map(|r| permission(r, known))
        .collect();
    let extra: Vec<IpPermission> = have
        .iter()
        .filter(|r| !wanted.contains(r))
        .map(|r| permission(r, known))
        .collect();
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

/// `rule` as EC2 takes it, with a component's group id from `known`.
fn permission(rule: &Rule, known: &Known) -> IpPermission {
    let mut permission = IpPermission::builder().ip_protocol(&rule.protocol);
    if let Some(port) = rule.port {
        permission = permission.from_port(port).to_port(port);
    }
    permission = match rule.source_group() {
        None => permission.ip_ranges(IpRange::builder().cidr_ip(&rule.from).build()),
        // A component name, or an AWS group id that is not (or no longer) the stack's.
        Some(group) => {
            let id = known.get(group).map_or(group, |e| e.id.as_str());
            permission.user_id_group_pairs(UserIdGroupPair::builder().group_id(id).build())
        }
    };
    permission.build()
}

async fn delete(ctx: &Ctx, current: &Existing) -> anyhow::Result<()> {
    ctx.aws
        .ec2
        .delete_security_group()
        .group_id(&current.id)
        .send()
        .await
        .or_already(GONE)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_read_back_what_they_write() {
        for text in [
            "tcp 8000 from sg-alb",
            "tcp 22 from 203.0.113.0/24",
            "-1 all from sg-1",
        ] {
            let rule: Rule = text.parse().unwrap();
            assert_eq!(rule.to_string(), text);
        }
        let rule = Rule::tcp(5432, "sg-api");
        assert_eq!(
            (rule.to_string().as_str(), rule.source_group()),
            ("tcp 5432 from sg-api", Some("sg-api"))
        );
        assert_eq!(Rule::tcp(22, "10.0.0.0/8").source_group(), None);
        for bad in ["tcp 8000 sg-alb", "tcp eighty from sg-alb", ""] {
            assert!(bad.parse::<Rule>().is_err(), "{bad:?}");
        }
        assert_eq!(
            Rule::list("tcp 80 from 0.0.0.0/0,tcp 443 from 0.0.0.0/0")
                .unwrap()
                .len(),
            2
        );
    }
}
