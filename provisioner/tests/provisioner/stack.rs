//! `accunode plan | provision | destroy | status | outputs | cost` against moto:
//! every setting checked with describe calls (not by reading our own
//! definition back), no change → no mutating call, phases changed in place,
//! applies interrupted part-way converging, destroy leaving nothing tagged,
//! untagged look-alikes and neighbouring stacks left alone, and secrets never
//! printed. Each test uses its own stack name.

use std::collections::{BTreeMap, BTreeSet};
use std::pin::Pin;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use accunode_testkit::aws_endpoint_url;
use aws_sdk_ec2::types::{
    Filter, LaunchTemplateVersion, NatGatewayState, RequestLaunchTemplateData, ResourceType, Tag,
    TagSpecification,
};
use aws_sdk_rds::error::{ProvideErrorMetadata, SdkError};

use crate::support::{ACCUNODE, stderr, succeeded};

pub(crate) fn unique_stack(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}{:x}{}",
        (nanos ^ std::process::id()) & 0xfffff,
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// `accunode ARGS --stack STACK` against moto.
pub(crate) fn command(stack: &str, args: &[&str]) -> Command {
    let mut command = Command::new(ACCUNODE);
    command
        .args(args)
        .args(["--stack", stack])
        .env("AWS_ENDPOINT_URL", aws_endpoint_url());
    command
}

pub(crate) fn accunode(stack: &str, args: &[&str]) -> Output {
    command(stack, args).output().unwrap()
}

pub(crate) fn json(output: &Output) -> serde_json::Value {
    serde_json::from_str(&succeeded(output)).unwrap()
}

pub(crate) struct Clients {
    pub(crate) ec2: aws_sdk_ec2::Client,
    autoscaling: aws_sdk_autoscaling::Client,
    elb: aws_sdk_elasticloadbalancingv2::Client,
    pub(crate) rds: aws_sdk_rds::Client,
    pub(crate) elasticache: aws_sdk_elasticache::Client,
    cloudwatch: aws_sdk_cloudwatch::Client,
    pub(crate) ssm: aws_sdk_ssm::Client,
    iam: aws_sdk_iam::Client,
    s3: aws_sdk_s3::Client,
}

pub(crate) async fn clients() -> Clients {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(aws_endpoint_url())
        .region(aws_config::Region::new("us-east-1"))
        .load()
        .await;
    Clients {
        ec2: aws_sdk_ec2::Client::new(&config),
        autoscaling: aws_sdk_autoscaling::Client::new(&config),
        elb: aws_sdk_elasticloadbalancingv2::Client::new(&config),
        rds: aws_sdk_rds::Client::new(&config),
        elasticache: aws_sdk_elasticache::Client::new(&config),
        cloudwatch: aws_sdk_cloudwatch::Client::new(&config),
        ssm: aws_sdk_ssm::Client::new(&config),
        iam: aws_sdk_iam::Client::new(&config),
        s3: accunode_testkit::s3_client().await,
    }
}

pub(crate) fn stack_filter(stack: &str) -> Filter {
    Filter::builder()
        .name("tag:accunode:stack")
        .values(stack)
        .build()
}

/// NAT gateways not deleted (moto lists deleted ones forever, which slows
/// every unfiltered describe as the test run goes on).
fn not_deleted() -> Filter {
    Filter::builder()
        .name("state")
        .values("pending")
        .values("available")
        .values("failed")
        .build()
}

/// How many EC2 network resources of each type carry the stack's tag.
async fn network_counts(aws: &Clients, stack: &str) -> [usize; 8] {
    let ec2 = &aws.ec2;
    let nats = ec2
        .describe_nat_gateways()
        .filter(stack_filter(stack))
        .filter(not_deleted())
        .send()
        .await
        .unwrap();
    // moto ignores tag filters on DescribeNatGateways: check the tags here.
    let live_nats = nats
        .nat_gateways()
        .iter()
        .filter(|n| {
            n.tags()
                .iter()
                .any(|t| t.key() == Some("accunode:stack") && t.value() == Some(stack))
        })
        .filter(|n| n.state().map(|s| s.as_str()) == Some("available"))
        .count();
    [
        ec2.describe_vpcs()
            .filters(stack_filter(stack))
            .send()
            .await
            .unwrap()
            .vpcs()
            .len(),
        ec2.describe_subnets()
            .filters(stack_filter(stack))
            .send()
            .await
            .unwrap()
            .subnets()
            .len(),
        ec2.describe_security_groups()
            .filters(stack_filter(stack))
            .send()
            .await
            .unwrap()
            .security_groups()
            .len(),
        ec2.describe_internet_gateways()
            .filters(stack_filter(stack))
            .send()
            .await
            .unwrap()
            .internet_gateways()
            .len(),
        ec2.describe_addresses()
            .filters(stack_filter(stack))
            .send()
            .await
            .unwrap()
            .addresses()
            .len(),
        live_nats,
        ec2.describe_route_tables()
            .filters(stack_filter(stack))
            .send()
            .await
            .unwrap()
            .route_tables()
            .len(),
        ec2.describe_launch_templates()
            .filters(stack_filter(stack))
            .send()
            .await
            .unwrap()
            .launch_templates()
            .len(),
    ]
}

const ONE_OF_EACH: [usize; 8] = [1, 4, 5, 1, 1, 1, 2, 2];

/// What exists of a stack: kind (as plans name it) → ids (ARNs where AWS gives them).
pub(crate) type Inventory = BTreeMap<&'static str, BTreeSet<String>>;

fn ids<'a>(found: impl IntoIterator<Item = Option<&'a str>>) -> BTreeSet<String> {
    found.into_iter().flatten().map(str::to_owned).collect()
}

/// The answer of a lookup by name, or `None` when AWS answers with the error
/// code `missing` (there is no such resource); any other error fails the test.
fn unless_missing<T, E, R>(answer: Result<T, SdkError<E, R>>, missing: &str) -> Option<T>
where
    E: ProvideErrorMetadata + std::fmt::Debug,
    R: std::fmt::Debug,
{
    match answer {
        Ok(found) => Some(found),
        Err(error) if error.code() == Some(missing) => None,
        Err(error) => panic!("{error:?}"),
    }
}

/// Every resource of `stack` that exists, read with describe calls of every
/// kind the stack has: by the stack's tag where AWS filters by tags or returns
/// them with the resource, by the stack's exact names where it does not (so an
/// untagged look-alike carrying one of those names shows here too). Boxed:
/// inline, the future of all these calls overflows a test thread's stack.
pub(crate) fn inventory<'a>(
    aws: &'a Clients,
    stack: &'a str,
) -> Pin<Box<dyn Future<Output = Inventory> + 'a>> {
    Box::pin(async move {
        let ours = |key: Option<&str>, value: Option<&str>| {
            key == Some("accunode:stack") && value == Some(stack)
        };
        let name = |suffix: &str| format!("{stack}-{suffix}");
        let ec2 = &aws.ec2;
        let vpcs = ec2.describe_vpcs().filters(stack_filter(stack)).send();
        let subnets = ec2.describe_subnets().filters(stack_filter(stack)).send();
        let groups = ec2
            .describe_security_groups()
            .filters(stack_filter(stack))
            .send();
        let gateways = ec2
            .describe_internet_gateways()
            .filters(stack_filter(stack))
            .send();
        let addresses = ec2.describe_addresses().filters(stack_filter(stack)).send();
        // moto ignores tag filters on DescribeNatGateways: the tags are checked below.
        let nats = ec2.describe_nat_gateways().filter(not_deleted()).send();
        let tables = ec2
            .describe_route_tables()
            .filters(stack_filter(stack))
            .send();
        let templates = ec2
            .describe_launch_templates()
            .filters(stack_filter(stack))
            .send();
        let (vpcs, subnets, groups, gateways, addresses, nats, tables, templates) = tokio::join!(
            vpcs, subnets, groups, gateways, addresses, nats, tables, templates
        );
        let mut found = Inventory::from([
            ("vpc", ids(vpcs.unwrap().vpcs().iter().map(|v| v.vpc_id()))),
            (
                "subnet",
                ids(subnets.unwrap().subnets().iter().map(|s| s.subnet_id())),
            ),
            (
                "security-group",
                ids(groups
                    .unwrap()
                    .security_groups()
                    .iter()
                    .map(|g| g.group_id())),
            ),
            (
                "internet-gateway",
                ids(gateways
                    .unwrap()
                    .internet_gateways()
                    .iter()
                    .map(|g| g.internet_gateway_id())),
            ),
            (
                "elastic-ip",
                ids(addresses
                    .unwrap()
                    .addresses()
                    .iter()
                    .map(|a| a.allocation_id())),
            ),
            (
                "nat-gateway",
                ids(nats
                    .unwrap()
                    .nat_gateways()
                    .iter()
                    .filter(|n| n.tags().iter().any(|t| ours(t.key(), t.value())))
                    .filter(|n| {
                        !matches!(
                            n.state(),
                            Some(NatGatewayState::Deleted | NatGatewayState::Deleting)
                        )
                    })
                    .map(|n| n.nat_gateway_id())),
            ),
            (
                "route-table",
                ids(tables
                    .unwrap()
                    .route_tables()
                    .iter()
                    .map(|t| t.route_table_id())),
            ),
            (
                "launch-template",
                ids(templates
                    .unwrap()
                    .launch_templates()
                    .iter()
                    .map(|t| t.launch_template_id())),
            ),
        ]);

        // IAM paths end with a slash, so another stack whose name starts with this
        // one's is not under it; moto ignores the path prefix: compared here too.
        let path = format!("/accunode/{stack}/");
        let roles = aws
            .iam
            .list_roles()
            .path_prefix(&path)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .unwrap();
        found.insert(
            "role",
            ids(roles
                .iter()
                .filter(|r| r.path() == path)
                .map(|r| Some(r.arn()))),
        );
        let profiles = aws
            .iam
            .list_instance_profiles()
            .path_prefix(&path)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .unwrap();
        found.insert(
            "instance-profile",
            ids(profiles
                .iter()
                .filter(|p| p.path() == path)
                .map(|p| Some(p.arn()))),
        );
        let buckets = aws.s3.list_buckets().send().await.unwrap();
        found.insert(
            "bucket",
            ids(buckets
                .buckets()
                .iter()
                .map(|b| b.name())
                .filter(|n| n.is_some_and(|n| n.starts_with(&name("ml-models-"))))),
        );
        let parameters = aws
            .ssm
            .get_parameters_by_path()
            .path(&path)
            .send()
            .await
            .unwrap();
        found.insert(
            "parameter",
            ids(parameters.parameters().iter().map(|p| p.name())),
        );

        let db_subnet_groups = unless_missing(
            aws.rds
                .describe_db_subnet_groups()
                .db_subnet_group_name(name("db-subnets"))
                .send()
                .await,
            "DBSubnetGroupNotFoundFault",
        );
        found.insert(
            "db-subnet-group",
            ids(db_subnet_groups
                .iter()
                .flat_map(|g| g.db_subnet_groups())
                .map(|g| g.db_subnet_group_arn())),
        );
        let databases = unless_missing(
            aws.rds
                .describe_db_instances()
                .db_instance_identifier(name("db"))
                .send()
                .await,
            "DBInstanceNotFound",
        );
        found.insert(
            "database",
            ids(databases
                .iter()
                .flat_map(|d| d.db_instances())
                .filter(|d| d.db_instance_status() != Some("deleting"))
                .map(|d| d.db_instance_arn())),
        );
        let cache_subnet_groups = unless_missing(
            aws.elasticache
                .describe_cache_subnet_groups()
                .cache_subnet_group_name(name("redis-subnets"))
                .send()
                .await,
            "CacheSubnetGroupNotFoundFault",
        );
        found.insert(
            "cache-subnet-group",
            ids(cache_subnet_groups
                .iter()
                .flat_map(|g| g.cache_subnet_groups())
                .map(|g| g.arn())),
        );
        let redis = unless_missing(
            aws.elasticache
                .describe_replication_groups()
                .replication_group_id(name("redis"))
                .send()
                .await,
            "ReplicationGroupNotFoundFault",
        );
        found.insert(
            "redis",
            ids(redis
                .iter()
                .flat_map(|r| r.replication_groups())
                .filter(|r| r.status() != Some("deleting"))
                .map(|r| r.arn())),
        );

        // One target group per colour, looked up by name one at a time (a
        // list is refused when any name is missing).
        let mut target_group_arns = BTreeSet::new();
        for colour in ["api-blue", "api-green"] {
            let target_groups = unless_missing(
                aws.elb
                    .describe_target_groups()
                    .names(name(colour))
                    .send()
                    .await,
                "TargetGroupNotFound",
            );
            target_group_arns.extend(ids(target_groups
                .iter()
                .flat_map(|t| t.target_groups())
                .map(|t| t.target_group_arn())));
        }
        found.insert("target-group", target_group_arns);
        // All balancers, matched by name here: moto answers a describe by
        // name with only the last balancer of that name, hiding a duplicate.
        let balancers = aws.elb.describe_load_balancers().send().await.unwrap();
        let balancer_name = name("alb");
        let balancer_arns = ids(balancers
            .load_balancers()
            .iter()
            .filter(|b| b.load_balancer_name() == Some(balancer_name.as_str()))
            .map(|b| b.load_balancer_arn()));
        let mut listener_arns = BTreeSet::new();
        for balancer in &balancer_arns {
            let listeners = aws
                .elb
                .describe_listeners()
                .load_balancer_arn(balancer)
                .send()
                .await
                .unwrap();
            listener_arns.extend(ids(listeners.listeners().iter().map(|l| l.listener_arn())));
        }
        found.insert("load-balancer", balancer_arns);
        found.insert("listener", listener_arns);

        let scaling_groups = aws
            .autoscaling
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(name("api-blue-asg"))
            .auto_scaling_group_names(name("api-green-asg"))
            .auto_scaling_group_names(name("worker-asg"))
            .send()
            .await
            .unwrap();
        let mut policy_arns = BTreeSet::new();
        for group in scaling_groups.auto_scaling_groups() {
            let policies = aws
                .autoscaling
                .describe_policies()
                .set_auto_scaling_group_name(group.auto_scaling_group_name().map(str::to_owned))
                .send()
                .await
                .unwrap();
            policy_arns.extend(ids(policies
                .scaling_policies()
                .iter()
                .map(|p| p.policy_arn())));
        }
        found.insert(
            "auto-scaling-group",
            ids(scaling_groups
                .auto_scaling_groups()
                .iter()
                .map(|g| g.auto_scaling_group_arn())),
        );
        found.insert("scaling-policy", policy_arns);

        // By prefix, the alarms of a stack named after this one plus a suffix come
        // too: only the tag says whose an alarm is.
        let alarms = aws
            .cloudwatch
            .describe_alarms()
            .alarm_name_prefix(name(""))
            .send()
            .await
            .unwrap();
        let mut alarm_arns = BTreeSet::new();
        for alarm in alarms.metric_alarms() {
            let tags = aws
                .cloudwatch
                .list_tags_for_resource()
                .set_resource_arn(alarm.alarm_arn().map(str::to_owned))
                .send()
                .await
                .unwrap();
            if tags.tags().iter().any(|t| ours(t.key(), t.value())) {
                alarm_arns.extend(ids([alarm.alarm_arn()]));
            }
        }
        found.insert("alarm", alarm_arns);
        let dashboard = unless_missing(
            aws.cloudwatch
                .get_dashboard()
                .dashboard_name(name("overview"))
                .send()
                .await,
            "ResourceNotFound",
        );
        found.insert(
            "dashboard",
            ids(dashboard.iter().map(|d| d.dashboard_name())),
        );

        found.retain(|_, ids| !ids.is_empty());
        found
    })
}

/// How many resources of each kind an inventory holds.
pub(crate) fn counts(inventory: &Inventory) -> BTreeMap<&'static str, usize> {
    inventory
        .iter()
        .map(|(kind, ids)| (*kind, ids.len()))
        .collect()
}

fn total(inventory: &Inventory) -> usize {
    inventory.values().map(BTreeSet::len).sum()
}

/// What destroy leaves on moto, which does not implement DeleteCacheSubnetGroup.
pub(crate) fn without_moto_leftovers(mut inventory: Inventory) -> Inventory {
    inventory.remove("cache-subnet-group");
    inventory
}

/// The stack's SSM parameters, name → decrypted value.
pub(crate) async fn parameter_values(aws: &Clients, stack: &str) -> BTreeMap<String, String> {
    let parameters = aws
        .ssm
        .get_parameters_by_path()
        .path(format!("/accunode/{stack}/"))
        .with_decryption(true)
        .send()
        .await
        .unwrap();
    parameters
        .parameters()
        .iter()
        .map(|p| (p.name().unwrap().to_owned(), p.value().unwrap().to_owned()))
        .collect()
}

/// Asserts that `plan` and `provision` of `stack` stop with an error naming
/// `look_alike`, before anything is made: what exists under the stack's tag and
/// names is the look-alike alone, before and after.
async fn refused_because_of(aws: &Clients, stack: &str, look_alike: &str) {
    let before = inventory(aws, stack).await;
    assert_eq!(total(&before), 1, "only the look-alike: {before:?}");
    for args in [["plan", "--phase", "1"], ["provision", "--phase", "1"]] {
        let refused = accunode(stack, &args);
        let message = stderr(&refused);
        assert_eq!(
            refused.status.code(),
            Some(1),
            "{args:?} with the untagged {look_alike} present: {}{message}",
            String::from_utf8_lossy(&refused.stdout)
        );
        assert!(
            message.contains(look_alike) && message.contains("without the tag"),
            "{args:?}: {message}"
        );
        assert_eq!(
            inventory(aws, stack).await,
            before,
            "{args:?} with the untagged {look_alike} present made or changed something"
        );
    }
}

async fn asg(aws: &Clients, name: &str) -> Option<aws_sdk_autoscaling::types::AutoScalingGroup> {
    let groups = aws
        .autoscaling
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(name)
        .send()
        .await
        .unwrap();
    groups.auto_scaling_groups().first().cloned()
}

async fn database(aws: &Clients, stack: &str) -> aws_sdk_rds::types::DbInstance {
    let found = aws
        .rds
        .describe_db_instances()
        .db_instance_identifier(format!("{stack}-db"))
        .send()
        .await
        .unwrap();
    found.db_instances()[0].clone()
}

async fn redis_node_type(aws: &Clients, stack: &str) -> String {
    let groups = aws
        .elasticache
        .describe_replication_groups()
        .replication_group_id(format!("{stack}-redis"))
        .send()
        .await
        .unwrap();
    groups.replication_groups()[0]
        .cache_node_type()
        .unwrap()
        .to_owned()
}

/// A policy document as IAM answers it, which may be URL-encoded.
fn url_decoded(document: &str) -> String {
    let mut bytes = Vec::with_capacity(document.len());
    let mut rest = document.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        let escaped = (byte == b'%')
            .then(|| tail.get(..2))
            .flatten()
            .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
        match escaped {
            Some(decoded) => {
                bytes.push(decoded);
                rest = &tail[2..];
            }
            None => {
                bytes.push(byte);
                rest = tail;
            }
        }
    }
    String::from_utf8(bytes).unwrap()
}

/// The name of the stack's model bucket (it carries the account and region).
async fn model_bucket(aws: &Clients, stack: &str) -> String {
    let buckets = aws.s3.list_buckets().send().await.unwrap();
    let prefix = format!("{stack}-ml-models-");
    let names: Vec<&str> = buckets
        .buckets()
        .iter()
        .filter_map(|b| b.name())
        .filter(|n| n.starts_with(&prefix))
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    names[0].to_owned()
}

/// Phase 1 from nothing; every setting read back with describe calls.
async fn verify_phase_one(aws: &Clients, stack: &str) {
    assert_eq!(network_counts(aws, stack).await, ONE_OF_EACH);
    let ec2 = &aws.ec2;
    let vpc = ec2
        .describe_vpcs()
        .filters(stack_filter(stack))
        .send()
        .await
        .unwrap()
        .vpcs()[0]
        .clone();
    assert_eq!(vpc.cidr_block(), Some("10.0.0.0/16"));
    let vpc_id = vpc.vpc_id().unwrap();
    let hostnames = ec2
        .describe_vpc_attribute()
        .vpc_id(vpc_id)
        .attribute(aws_sdk_ec2::types::VpcAttributeName::EnableDnsHostnames)
        .send()
        .await
        .unwrap();
    assert_eq!(
        hostnames.enable_dns_hostnames().and_then(|v| v.value()),
        Some(true)
    );
    let subnets = ec2
        .describe_subnets()
        .filters(stack_filter(stack))
        .send()
        .await
        .unwrap();
    let zones: std::collections::BTreeSet<&str> = subnets
        .subnets()
        .iter()
        .filter_map(|s| s.availability_zone())
        .collect();
    assert_eq!(zones.len(), 2, "subnets in two availability zones");

    // Security groups as the seed says: API 8000 from the ALB group only, no SSH without --admin-cidr.
    let groups = ec2
        .describe_security_groups()
        .filters(stack_filter(stack))
        .send()
        .await
        .unwrap();
    let group = |suffix: &str| {
        groups
            .security_groups()
            .iter()
            .find(|g| g.group_name() == Some(&format!("{stack}-{suffix}")))
            .unwrap()
            .clone()
    };
    let (alb, api, database_group) = (group("sg-alb"), group("sg-api"), group("sg-database"));
    let api_rules = api.ip_permissions();
    assert_eq!(api_rules.len(), 1);
    assert_eq!(api_rules[0].from_port(), Some(8000));
    assert_eq!(
        api_rules[0].user_id_group_pairs()[0].group_id(),
        alb.group_id()
    );
    assert!(api_rules[0].ip_ranges().is_empty());
    let alb_ports: Vec<i32> = alb
        .ip_permissions()
        .iter()
        .filter_map(|p| p.from_port())
        .collect();
    assert!(alb_ports.contains(&80) && alb_ports.contains(&443));
    let database_sources: Vec<&str> = database_group.ip_permissions()[0]
        .user_id_group_pairs()
        .iter()
        .filter_map(|p| p.group_id())
        .collect();
    assert_eq!(database_sources.len(), 2);
    assert!(database_group.ip_permissions()[0].ip_ranges().is_empty());

    // Target groups, one per colour: HTTP 8000, /health every 30 s, timeout
    // 10, healthy 2, unhealthy 3, deregistration 30 s. Blue is live.
    let target_groups = aws
        .elb
        .describe_target_groups()
        .names(format!("{stack}-api-blue"))
        .names(format!("{stack}-api-green"))
        .send()
        .await
        .unwrap();
    assert_eq!(target_groups.target_groups().len(), 2);
    let named = |colour: &str| {
        target_groups
            .target_groups()
            .iter()
            .find(|t| t.target_group_name() == Some(format!("{stack}-api-{colour}").as_str()))
            .unwrap()
    };
    let (target_group, idle_target_group) = (named("blue"), named("green"));
    assert_eq!(target_group.port(), Some(8000));
    assert_eq!(target_group.health_check_path(), Some("/health"));
    assert_eq!(target_group.health_check_interval_seconds(), Some(30));
    assert_eq!(target_group.health_check_timeout_seconds(), Some(10));
    assert_eq!(target_group.healthy_threshold_count(), Some(2));
    assert_eq!(target_group.unhealthy_threshold_count(), Some(3));
    let attributes = aws
        .elb
        .describe_target_group_attributes()
        .target_group_arn(target_group.target_group_arn().unwrap())
        .send()
        .await
        .unwrap();
    let delay = attributes
        .attributes()
        .iter()
        .find(|a| a.key() == Some("deregistration_delay.timeout_seconds"));
    assert_eq!(delay.and_then(|a| a.value()), Some("30"));
    let balancers = aws
        .elb
        .describe_load_balancers()
        .names(format!("{stack}-alb"))
        .send()
        .await
        .unwrap();
    let balancer = &balancers.load_balancers()[0];
    let listeners = aws
        .elb
        .describe_listeners()
        .load_balancer_arn(balancer.load_balancer_arn().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(listeners.listeners()[0].port(), Some(80));
    assert_eq!(
        listeners.listeners()[0].default_actions()[0].target_group_arn(),
        target_group.target_group_arn()
    );

    // Groups: the live API colour 2..4 behind its target group, the idle one
    // 0..4 at zero behind its own, workers 2..6, phase 1 desired 2 and 2.
    let idle_group = asg(aws, &format!("{stack}-api-green-asg")).await.unwrap();
    assert_eq!(
        (
            idle_group.min_size(),
            idle_group.max_size(),
            idle_group.desired_capacity()
        ),
        (Some(0), Some(4), Some(0))
    );
    assert_eq!(
        idle_group.target_group_arns(),
        [idle_target_group.target_group_arn().unwrap().to_owned()]
    );
    let api_group = asg(aws, &format!("{stack}-api-blue-asg")).await.unwrap();
    assert_eq!(
        (
            api_group.min_size(),
            api_group.max_size(),
            api_group.desired_capacity()
        ),
        (Some(2), Some(4), Some(2))
    );
    assert_eq!(
        api_group.target_group_arns(),
        [target_group.target_group_arn().unwrap().to_owned()]
    );
    assert_eq!(api_group.default_cooldown(), Some(300));
    let worker_group = asg(aws, &format!("{stack}-worker-asg")).await.unwrap();
    assert_eq!(
        (
            worker_group.min_size(),
            worker_group.max_size(),
            worker_group.desired_capacity()
        ),
        (Some(2), Some(6), Some(2))
    );

    let policies = aws
        .autoscaling
        .describe_policies()
        .auto_scaling_group_name(format!("{stack}-api-blue-asg"))
        .send()
        .await
        .unwrap();
    let cpu = policies.scaling_policies()[0]
        .target_tracking_configuration()
        .unwrap();
    assert_eq!(cpu.target_value(), Some(70.0));
    let worker_policies = aws
        .autoscaling
        .describe_policies()
        .auto_scaling_group_name(format!("{stack}-worker-asg"))
        .send()
        .await
        .unwrap();
    assert_eq!(worker_policies.scaling_policies().len(), 2);
    assert!(
        worker_policies
            .scaling_policies()
            .iter()
            .all(|p| p.policy_type() == Some("StepScaling"))
    );

    // Database and Redis sized for phase 1.
    let db = database(aws, stack).await;
    assert_eq!(db.db_instance_class(), Some("db.t3.micro"));
    assert_eq!(db.allocated_storage(), Some(20));
    assert_eq!(db.backup_retention_period(), Some(1));
    assert_eq!(db.publicly_accessible(), Some(false));
    assert_eq!(redis_node_type(aws, stack).await, "cache.t3.micro");

    // Secrets: SecureString, generated, never in user data.
    let parameters = aws
        .ssm
        .get_parameters_by_path()
        .path(format!("/accunode/{stack}/"))
        .with_decryption(true)
        .send()
        .await
        .unwrap();
    let mut names: Vec<&str> = parameters
        .parameters()
        .iter()
        .filter_map(|p| p.name())
        .collect();
    names.sort_unstable();
    let prefix = format!("/accunode/{stack}/");
    assert_eq!(
        names,
        [
            "database-password",
            "database-url",
            "jwt-secret",
            "redis-auth-token",
            "redis-url"
        ]
        .map(|n| format!("{prefix}{n}"))
    );
    assert!(
        parameters
            .parameters()
            .iter()
            .all(|p| p.r#type().map(|t| t.as_str()) == Some("SecureString"))
    );
    let secret = parameters
        .parameters()
        .iter()
        .find(|p| p.name().unwrap().ends_with("jwt-secret"))
        .unwrap();
    assert_eq!(secret.value().unwrap().len(), 64);
    let url = parameters
        .parameters()
        .iter()
        .find(|p| p.name().unwrap().ends_with("database-url"))
        .unwrap();
    assert!(
        url.value()
            .unwrap()
            .contains(db.endpoint().unwrap().address().unwrap())
    );
    let bucket = model_bucket(aws, stack).await;
    let templates = aws
        .ec2
        .describe_launch_templates()
        .filters(stack_filter(stack))
        .send()
        .await
        .unwrap();
    for template in templates.launch_templates() {
        let versions = aws
            .ec2
            .describe_launch_template_versions()
            .launch_template_id(template.launch_template_id().unwrap())
            .versions("$Default")
            .send()
            .await
            .unwrap();
        let data = versions.launch_template_versions()[0]
            .launch_template_data()
            .unwrap();
        assert_eq!(data.instance_type().map(|t| t.as_str()), Some("t3.small"));
        // IMDSv2 only, with the instance's tags readable: user data reads its
        // release from its accunode:release tag there.
        let metadata = data.metadata_options().unwrap();
        assert_eq!(metadata.http_tokens().map(|t| t.as_str()), Some("required"));
        assert_eq!(
            metadata.instance_metadata_tags().map(|t| t.as_str()),
            Some("enabled")
        );
        use base64::Engine;
        let script = base64::engine::general_purpose::STANDARD
            .decode(data.user_data().unwrap())
            .unwrap();
        let script = String::from_utf8(script).unwrap();
        assert!(script.contains("get-parameter") && !script.contains(secret.value().unwrap()));
        // Both tiers publish their metrics by stack and find the uploads.
        for line in [
            format!("STACK=\"{stack}\""),
            format!("UPLOADS=\"s3://{bucket}/uploads\""),
            "STACK_NAME=$STACK".to_owned(),
            "BULK_UPLOAD_PATH=$UPLOADS".to_owned(),
            "CLOUDWATCH_METRICS_SECS=60".to_owned(),
        ] {
            assert!(script.lines().any(|l| l == line), "{line} in {script}");
        }
    }

    // The seed's alarms, with their thresholds.
    let alarms = aws
        .cloudwatch
        .describe_alarms()
        .alarm_name_prefix(format!("{stack}-"))
        .send()
        .await
        .unwrap();
    let alarm = |name: &str| {
        alarms
            .metric_alarms()
            .iter()
            .find(|a| a.alarm_name() == Some(&format!("{stack}-{name}")))
            .unwrap()
            .clone()
    };
    assert_eq!(alarms.metric_alarms().len(), 10);
    let server_errors = alarm("ApiServerErrors");
    assert_eq!(
        (
            server_errors.metric_name(),
            server_errors.threshold(),
            server_errors.statistic().map(|s| s.as_str())
        ),
        (Some("HTTPCode_Target_5XX_Count"), Some(10.0), Some("Sum"))
    );
    let response_time = alarm("HighResponseTime");
    assert_eq!(
        (
            response_time.threshold(),
            response_time.period(),
            response_time.evaluation_periods()
        ),
        (Some(0.5), Some(300), Some(2))
    );
    assert_eq!(response_time.namespace(), Some("AWS/ApplicationELB"));
    let queue = alarm("HighQueueLength");
    assert_eq!(
        (queue.threshold(), queue.namespace()),
        (Some(50.0), Some("AccuNode/Workers"))
    );
    assert_eq!(alarm("WorkerQueueScaleUp").alarm_actions().len(), 1);
    let wait = alarm("WorkerWaitScaleUp");
    assert_eq!(
        (wait.metric_name(), wait.threshold()),
        (Some("TaskWaitTime"), Some(60.0))
    );
    assert_eq!(
        wait.alarm_actions(),
        alarm("WorkerQueueScaleUp").alarm_actions(),
        "queue length and wait time both add workers"
    );
    // Our own metrics are read as the API and worker publish them: Stack=<stack>;
    // AWS metrics by their own dimensions.
    for read in alarms.metric_alarms() {
        let dimensions: Vec<(&str, &str)> = read
            .dimensions()
            .iter()
            .map(|d| (d.name().unwrap(), d.value().unwrap()))
            .collect();
        let (namespace, metric) = (read.namespace().unwrap(), read.metric_name().unwrap());
        if namespace.starts_with("AccuNode/") {
            assert!(
                accunode_core::published_metrics::is_published(namespace, metric),
                "{namespace} {metric}"
            );
            assert_eq!(dimensions, [("Stack", stack)], "{namespace} {metric}");
        } else {
            assert!(
                !dimensions.is_empty() && dimensions.iter().all(|(name, _)| *name != "Stack"),
                "{namespace} {metric}: {dimensions:?}"
            );
        }
    }
    let dashboard = aws
        .cloudwatch
        .get_dashboard()
        .dashboard_name(format!("{stack}-overview"))
        .send()
        .await
        .unwrap();
    let body = dashboard.dashboard_body().unwrap();
    assert!(
        body.contains(&format!(
            r#"["AccuNode/Workers","QueueLength","Stack","{stack}"]"#
        )),
        "{body}"
    );

    // The bucket expires bulk uploads (and only them).
    let lifecycle = aws
        .s3
        .get_bucket_lifecycle_configuration()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    let [rule] = lifecycle.rules() else {
        panic!("one lifecycle rule: {lifecycle:?}")
    };
    assert_eq!(
        rule.filter().and_then(|f| f.prefix()),
        Some("uploads/"),
        "{rule:?}"
    );
    assert_eq!(rule.expiration().and_then(|e| e.days()), Some(30));
    assert_eq!(
        rule.abort_incomplete_multipart_upload()
            .and_then(|a| a.days_after_initiation()),
        Some(1)
    );

    // IAM: instance roles under the stack's path; the API writes bulk uploads,
    // workers only read them; each publishes to its own namespace.
    let roles = aws
        .iam
        .list_roles()
        .path_prefix(format!("/accunode/{stack}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(roles.roles().len(), 2);
    let worker_policy = aws
        .iam
        .get_role_policy()
        .role_name(format!("{stack}-worker-role"))
        .policy_name("accunode")
        .send()
        .await
        .unwrap();
    let document = url_decoded(worker_policy.policy_document());
    assert!(!document.contains("PutObject"), "{document}");
    assert!(document.contains("/uploads/*"), "{document}");
    assert!(document.contains("AccuNode/Workers"), "{document}");
    assert!(!document.contains("AccuNode/API"), "{document}");
    let api_policy = aws
        .iam
        .get_role_policy()
        .role_name(format!("{stack}-api-role"))
        .policy_name("accunode")
        .send()
        .await
        .unwrap();
    // The API publishes its custom metrics, to its own namespace only.
    let document = url_decoded(api_policy.policy_document());
    assert!(document.contains("PutMetricData"), "{document}");
    assert!(document.contains("AccuNode/API"), "{document}");
    assert!(!document.contains("AccuNode/Workers"), "{document}");
    let policy: serde_json::Value = serde_json::from_str(&document).unwrap();
    let put = policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Action"].to_string().contains("s3:PutObject"))
        .expect("the API may write uploads");
    assert_eq!(
        put["Resource"],
        serde_json::json!([format!("arn:aws:s3:::{bucket}/uploads/*")])
    );
}

#[tokio::test]
async fn phases_from_nothing_converge_in_place_and_destroy_leaves_nothing() {
    let stack = unique_stack("ph");
    let aws = clients().await;

    let first = json(&accunode(
        &stack,
        &["provision", "--phase", "1", "--output", "json"],
    ));
    assert!(
        first["calls"]["mutating"].as_u64().unwrap() > 40,
        "{}",
        first["calls"]
    );
    verify_phase_one(&aws, &stack).await;

    // Nothing changed: the plan says so (exit 0) and a re-run changes nothing.
    let plan = accunode(&stack, &["plan", "--phase", "1", "--detailed-exitcode"]);
    assert_eq!(
        plan.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&plan.stdout)
    );
    let again = json(&accunode(
        &stack,
        &["provision", "--phase", "1", "--output", "json"],
    ));
    assert_eq!(again["calls"]["mutating"], 0, "{}", again["calls"]);

    // A bucket whose uploads rule went missing (a stack from before it, or a
    // hand edit): the plan shows it, provision puts it back, then no change.
    let bucket = model_bucket(&aws, &stack).await;
    aws.s3
        .delete_bucket_lifecycle()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    let drifted = accunode(&stack, &["plan", "--phase", "1", "--detailed-exitcode"]);
    let shown = String::from_utf8_lossy(&drifted.stdout);
    assert_eq!(drifted.status.code(), Some(2), "{shown}");
    assert!(
        shown.contains("lifecycle") && shown.contains("uploads/: expire after 30 d"),
        "{shown}"
    );
    succeeded(&accunode(&stack, &["provision", "--phase", "1"]));
    let rules = aws
        .s3
        .get_bucket_lifecycle_configuration()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    assert_eq!(rules.rules().len(), 1);
    let settled = accunode(&stack, &["plan", "--phase", "1", "--detailed-exitcode"]);
    assert_eq!(
        settled.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&settled.stdout)
    );

    let vpc_before = network_counts(&aws, &stack).await;
    let db_before = database(&aws, &stack)
        .await
        .db_instance_arn()
        .unwrap()
        .to_owned();
    // Storage as provisioner/phases.toml sizes each phase (20, 50, 100 GB),
    // except back at phase 1: RDS storage cannot shrink, so it stays at 100.
    for (phase, api, workers, class, storage, node) in [
        (2, 3, 4, "db.t3.small", 50, "cache.t3.small"),
        (3, 4, 6, "db.t3.medium", 100, "cache.t3.small"),
        (1, 2, 2, "db.t3.micro", 100, "cache.t3.micro"),
    ] {
        let phase_text = phase.to_string();
        let plan = accunode(
            &stack,
            &["plan", "--phase", &phase_text, "--detailed-exitcode"],
        );
        assert_eq!(plan.status.code(), Some(2), "phase {phase} has changes");
        let applied = json(&accunode(
            &stack,
            &["provision", "--phase", &phase_text, "--output", "json"],
        ));
        // In place: only modifications, never a create or delete (but of
        // the stack's deploy lock, an object held while the change is applied).
        for operation in applied["calls"]["mutating_operations"]
            .as_object()
            .unwrap()
            .keys()
            .filter(|operation| !["S3:PutObject", "S3:DeleteObject"].contains(&operation.as_str()))
        {
            assert!(
                ["Modify", "Update"]
                    .iter()
                    .any(|verb| operation.contains(&format!(":{verb}"))),
                "phase {phase}: {operation} is not an in-place change"
            );
        }
        assert_eq!(
            asg(&aws, &format!("{stack}-api-blue-asg"))
                .await
                .unwrap()
                .desired_capacity(),
            Some(api)
        );
        assert_eq!(
            asg(&aws, &format!("{stack}-worker-asg"))
                .await
                .unwrap()
                .desired_capacity(),
            Some(workers)
        );
        let db = database(&aws, &stack).await;
        assert_eq!(db.db_instance_class(), Some(class));
        assert_eq!(db.db_instance_arn(), Some(db_before.as_str()));
        assert_eq!(
            db.allocated_storage(),
            Some(storage),
            "phase {phase}: storage grows with the phase and never shrinks"
        );
        assert_eq!(redis_node_type(&aws, &stack).await, node);
        assert_eq!(network_counts(&aws, &stack).await, vpc_before);
        let settled = accunode(
            &stack,
            &["plan", "--phase", &phase_text, "--detailed-exitcode"],
        );
        assert_eq!(
            settled.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&settled.stdout)
        );
    }

    let status = succeeded(&accunode(&stack, &["status"]));
    assert!(status.contains("2 of 2 desired in service"), "{status}");
    let outputs = json(&accunode(&stack, &["outputs", "--output", "json"]));
    assert!(
        outputs["api_url"].as_str().unwrap().starts_with("http://"),
        "{outputs}"
    );
    assert!(
        outputs["database_endpoint"]
            .as_str()
            .unwrap()
            .contains(&format!("{stack}-db"))
    );

    let refused = accunode(&stack, &["destroy"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--yes"));
    succeeded(&accunode(&stack, &["destroy", "--yes"]));
    assert_eq!(network_counts(&aws, &stack).await, [0; 8]);
    assert!(asg(&aws, &format!("{stack}-api-blue-asg")).await.is_none());
    let alarms = aws
        .cloudwatch
        .describe_alarms()
        .alarm_name_prefix(format!("{stack}-"))
        .send()
        .await
        .unwrap();
    assert!(alarms.metric_alarms().is_empty());
    assert!(
        aws.rds
            .describe_db_instances()
            .db_instance_identifier(format!("{stack}-db"))
            .send()
            .await
            .is_err()
    );
    let parameters = aws
        .ssm
        .get_parameters_by_path()
        .path(format!("/accunode/{stack}/"))
        .send()
        .await
        .unwrap();
    assert!(parameters.parameters().is_empty());
    // Without --delete-data the model bucket stays; then it goes too.
    let left = json(&accunode(&stack, &["status", "--output", "json"]));
    let kinds: Vec<&str> = left["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    // moto 5.2.5 does not implement DeleteCacheSubnetGroup: that one stays on moto only.
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k != "cache-subnet-group")
            .collect::<Vec<_>>(),
        [&"bucket"]
    );
    succeeded(&accunode(&stack, &["destroy", "--yes", "--delete-data"]));
    let left = json(&accunode(&stack, &["status", "--output", "json"]));
    assert!(
        left["resources"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["kind"] == "cache-subnet-group"),
        "{left}"
    );
}

#[tokio::test]
async fn untagged_look_alikes_and_other_stacks_are_never_touched() {
    let stack = unique_stack("la");
    // The neighbour's name starts with the stack's, so a lookup by the prefix
    // "<stack>-" (alarms, names) sees the neighbour's resources as well.
    let neighbour = format!("{stack}-n");
    let aws = clients().await;
    succeeded(&accunode(&neighbour, &["provision", "--phase", "1"]));
    let neighbour_before = inventory(&aws, &neighbour).await;
    let neighbour_secrets = parameter_values(&aws, &neighbour).await;
    assert_eq!(network_counts(&aws, &neighbour).await, ONE_OF_EACH);

    // An RDS instance with the name the stack gives its database, untagged.
    let database_name = format!("{stack}-db");
    aws.rds
        .create_db_instance()
        .db_instance_identifier(&database_name)
        .db_instance_class("db.t3.micro")
        .engine("postgres")
        .allocated_storage(20)
        .master_username("someone")
        .master_user_password("someone-elses-password")
        .send()
        .await
        .unwrap();
    refused_because_of(&aws, &stack, &database_name).await;
    aws.rds
        .delete_db_instance()
        .db_instance_identifier(&database_name)
        .skip_final_snapshot(true)
        .send()
        .await
        .unwrap();

    // An Auto Scaling group with the name of the stack's worker group, untagged.
    let group_name = format!("{stack}-worker-asg");
    let template = aws
        .ec2
        .create_launch_template()
        .launch_template_name(format!("someone-elses-{stack}"))
        .launch_template_data(
            RequestLaunchTemplateData::builder()
                .image_id("ami-12c6146b")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let template_id = template
        .launch_template()
        .and_then(|t| t.launch_template_id())
        .unwrap()
        .to_owned();
    aws.autoscaling
        .create_auto_scaling_group()
        .auto_scaling_group_name(&group_name)
        .launch_template(
            aws_sdk_autoscaling::types::LaunchTemplateSpecification::builder()
                .launch_template_id(&template_id)
                .build(),
        )
        .min_size(0)
        .max_size(0)
        .availability_zones("us-east-1a")
        .send()
        .await
        .unwrap();
    refused_because_of(&aws, &stack, &group_name).await;
    aws.autoscaling
        .delete_auto_scaling_group()
        .auto_scaling_group_name(&group_name)
        .force_delete(true)
        .send()
        .await
        .unwrap();
    aws.ec2
        .delete_launch_template()
        .launch_template_id(&template_id)
        .send()
        .await
        .unwrap();

    // A VPC named like the stack's, untagged: discovery by tag never sees it.
    let tag = |key: &str, value: &str| Tag::builder().key(key).value(value).build();
    let look_alike = aws
        .ec2
        .create_vpc()
        .cidr_block("10.0.0.0/16")
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::Vpc)
                .tags(tag("Name", &format!("{stack}-vpc")))
                .tags(tag("accunode:component", "vpc"))
                .build(),
        )
        .send()
        .await
        .unwrap();
    let look_alike = look_alike.vpc().unwrap().vpc_id().unwrap().to_owned();

    succeeded(&accunode(&stack, &["provision", "--phase", "1"]));
    assert_eq!(
        network_counts(&aws, &stack).await,
        ONE_OF_EACH,
        "the look-alike is not adopted"
    );
    assert_eq!(
        inventory(&aws, &neighbour).await,
        neighbour_before,
        "provisioning {stack} changed its neighbour {neighbour}"
    );
    succeeded(&accunode(&stack, &["destroy", "--yes", "--delete-data"]));
    assert_eq!(
        without_moto_leftovers(inventory(&aws, &stack).await),
        Inventory::new()
    );
    let still = aws
        .ec2
        .describe_vpcs()
        .vpc_ids(&look_alike)
        .send()
        .await
        .unwrap();
    assert_eq!(
        still.vpcs().len(),
        1,
        "the untagged look-alike VPC survives destroy"
    );
    aws.ec2
        .delete_vpc()
        .vpc_id(&look_alike)
        .send()
        .await
        .unwrap();

    // The neighbour: the same resources (ids and counts), secrets and settings.
    assert_eq!(
        inventory(&aws, &neighbour).await,
        neighbour_before,
        "destroying {stack} changed its neighbour {neighbour}"
    );
    assert_eq!(parameter_values(&aws, &neighbour).await, neighbour_secrets);
    let replan = accunode(&neighbour, &["plan", "--phase", "1", "--detailed-exitcode"]);
    assert_eq!(
        replan.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&replan.stdout),
        stderr(&replan)
    );
    succeeded(&accunode(
        &neighbour,
        &["destroy", "--yes", "--delete-data"],
    ));
}

#[tokio::test]
async fn an_apply_killed_at_any_point_converges_on_the_next_run() {
    let aws = clients().await;
    // A complete run first: how many mutating calls a phase-2 provision makes,
    // and every resource it leaves.
    let reference = unique_stack("kr");
    let complete = json(&accunode(
        &reference,
        &["provision", "--phase", "2", "--output", "json"],
    ));
    let mutating = complete["calls"]["mutating"].as_u64().unwrap();
    assert!(mutating > 40, "{}", complete["calls"]);
    let whole = counts(&inventory(&aws, &reference).await);
    let mut planned = BTreeMap::new();
    for step in complete["plan"]["steps"].as_array().unwrap() {
        *planned.entry(step["kind"].as_str().unwrap()).or_insert(0) += 1;
    }
    assert_eq!(whole, planned, "the inventory sees every resource planned");
    let whole_total: usize = whole.values().sum();
    // Destroys mostly wait on AWS: they run while the next point is tried, and
    // are checked at the end.
    let destroy = |stack: &str| {
        command(stack, &["destroy", "--yes", "--delete-data"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut destroys = vec![(
        "the reference".to_owned(),
        reference.clone(),
        destroy(&reference),
    )];

    // Stopped (as a kill would) at points spread over the whole run, from the
    // first resources to the alarms: each must leave a partial stack that the
    // next run completes without duplicates or orphans.
    for percent in [7, 20, 40, 70, 90] {
        let after = mutating * percent / 100;
        let point = format!("stopped after {after} of {mutating} mutating calls");
        let stack = unique_stack("k");
        let interrupted = command(&stack, &["provision", "--phase", "2"])
            .env("ACCUNODE_TEST_ABORT_AFTER_MUTATIONS", after.to_string())
            .output()
            .unwrap();
        let printed = String::from_utf8_lossy(&interrupted.stdout);
        assert_eq!(
            interrupted.status.code(),
            Some(137),
            "{point}: {printed}{}",
            stderr(&interrupted)
        );
        assert!(!printed.contains("is at phase"), "{point}: {printed}");

        let partial = inventory(&aws, &stack).await;
        let made = total(&partial);
        // The abort comes before the next call is sent, not after the ones in
        // flight are answered: at the earliest point, on a loaded machine,
        // none of the first calls may have completed yet.
        assert!(
            (0 < made || percent < 20) && made < whole_total,
            "{point}: {made} of {whole_total} resources exist, not a partial stack: {partial:?}"
        );
        for (kind, found) in &partial {
            assert!(
                found.len() <= whole.get(kind).copied().unwrap_or(0),
                "{point}: more of {kind} than a whole stack has: {found:?}"
            );
        }

        let resumed = succeeded(&accunode(&stack, &["provision", "--phase", "2"]));
        assert!(resumed.contains("is at phase 2"), "{point}: {resumed}");
        let plan = accunode(&stack, &["plan", "--phase", "2", "--detailed-exitcode"]);
        assert_eq!(
            plan.status.code(),
            Some(0),
            "{point}: {}",
            String::from_utf8_lossy(&plan.stdout)
        );
        assert_eq!(
            network_counts(&aws, &stack).await,
            ONE_OF_EACH,
            "{point}: a duplicate or an orphan"
        );
        let converged = inventory(&aws, &stack).await;
        assert_eq!(counts(&converged), whole, "{point}");
        for (kind, found) in &partial {
            assert!(
                found.is_subset(&converged[kind]),
                "{point}: the re-run did not carry on with the {kind} already made"
            );
        }
        destroys.push((point, stack.clone(), destroy(&stack)));
    }
    for (point, stack, destroy) in destroys {
        succeeded(&destroy.wait_with_output().unwrap());
        assert_eq!(
            without_moto_leftovers(inventory(&aws, &stack).await),
            Inventory::new(),
            "{point}: destroy left something"
        );
    }
}

#[tokio::test]
async fn secrets_are_never_printed_nor_put_in_user_data() {
    let stack = unique_stack("se");
    let aws = clients().await;
    // The first provision creates; the next ones change nothing; phase 2 plans changes.
    let commands: [&[&str]; 12] = [
        &["plan", "--phase", "1"],
        &["provision", "--phase", "1"],
        &["provision", "--phase", "1"],
        &["provision", "--phase", "1", "--output", "json"],
        &["plan", "--phase", "1"],
        &["plan", "--phase", "1", "--output", "json"],
        &["plan", "--phase", "2"],
        &["plan", "--phase", "2", "--output", "json"],
        &["status"],
        &["status", "--output", "json"],
        &["outputs"],
        &["outputs", "--output", "json"],
    ];
    let mut shown: Vec<(String, String)> = Vec::new();
    for args in commands {
        let output = accunode(&stack, args);
        let command = args.join(" ");
        shown.push((format!("{command}: stdout"), succeeded(&output)));
        shown.push((format!("{command}: stderr"), stderr(&output)));
    }
    for version in launch_template_versions(&aws, &stack).await {
        shown.push(user_data(&version));
    }

    let parameters = parameter_values(&aws, &stack).await;
    let value = |key: &str| parameters[&format!("/accunode/{stack}/{key}")].clone();
    let (password, database_url, redis_url) = (
        value("database-password"),
        value("database-url"),
        value("redis-url"),
    );
    assert_eq!(value("jwt-secret").len(), 64);
    assert!(password.len() >= 16);
    assert!(
        database_url.contains(&format!(":{password}@")),
        "the URL holds the password"
    );
    // The URL is shown, with its password masked: a leak would be seen here.
    assert!(
        shown
            .iter()
            .any(|(_, text)| text.contains("postgres://accunode:****@")),
        "the masked database URL is shown somewhere"
    );
    let auth_token = value("redis-auth-token");
    assert_eq!(auth_token.len(), 64);
    assert!(
        redis_url.contains(&format!(":{auth_token}@")),
        "the URL holds the AUTH token"
    );
    assert!(
        shown
            .iter()
            .any(|(_, text)| text.contains("rediss://:****@")),
        "the masked Redis URL is shown somewhere"
    );
    let secrets = [
        ("jwt-secret", value("jwt-secret")),
        ("database-password", password),
        ("database-url", database_url),
        ("redis-auth-token", auth_token),
        ("redis-url", redis_url),
    ];

    let destroyed = accunode(&stack, &["destroy", "--yes", "--delete-data"]);
    shown.push(("destroy: stdout".to_owned(), succeeded(&destroyed)));
    shown.push(("destroy: stderr".to_owned(), stderr(&destroyed)));
    for (place, text) in &shown {
        for (name, secret) in &secrets {
            assert!(
                !text.contains(secret.as_str()),
                "{place} shows the value of the parameter {name}"
            );
        }
    }
}

/// The user data of a launch template version, decoded, with where it comes from.
/// Every version of the stack's two launch templates (API and worker).
pub(crate) async fn launch_template_versions(
    aws: &Clients,
    stack: &str,
) -> Vec<LaunchTemplateVersion> {
    let templates = aws
        .ec2
        .describe_launch_templates()
        .filters(stack_filter(stack))
        .send()
        .await
        .unwrap();
    assert_eq!(templates.launch_templates().len(), 2);
    let mut all = Vec::new();
    for template in templates.launch_templates() {
        let versions = aws
            .ec2
            .describe_launch_template_versions()
            .set_launch_template_id(template.launch_template_id().map(str::to_owned))
            .send()
            .await
            .unwrap();
        all.extend(versions.launch_template_versions().iter().cloned());
    }
    all
}

pub(crate) fn user_data(version: &LaunchTemplateVersion) -> (String, String) {
    use base64::Engine;
    let encoded = version
        .launch_template_data()
        .and_then(|d| d.user_data())
        .unwrap();
    let script = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap();
    (
        format!(
            "the user data of {} version {}",
            version.launch_template_name().unwrap(),
            version.version_number().unwrap()
        ),
        String::from_utf8(script).unwrap(),
    )
}

#[test]
fn bad_flags_are_named_and_refused_before_any_aws_call() {
    let cases: [(&[&str], &str); 5] = [
        (&["plan", "--phase", "4"], "--phase 4"),
        (&["plan", "--phase", "1", "--stack", "Bad_Name"], "--stack"),
        (
            &["plan", "--phase", "1", "--admin-cidr", "0.0.0.0/0"],
            "--admin-cidr",
        ),
        (
            &["plan", "--phase", "1", "--admin-cidr", "300.1.2.3/32"],
            "--admin-cidr",
        ),
        (
            &["plan", "--phase", "1", "--certificate-arn", "nope"],
            "--certificate-arn",
        ),
    ];
    for (args, named) in cases {
        // An endpoint nobody listens on: the error must come before any call.
        let output = Command::new(ACCUNODE)
            .args(args)
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(named), "{args:?}: {stderr}");
    }
    let missing = Command::new(ACCUNODE)
        .args(["plan", "--phase", "1", "--definition", "/nonexistent.toml"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent.toml"));
}

#[test]
fn cost_itemises_each_phase_and_compares_with_the_seed() {
    let mut totals = Vec::new();
    for phase in ["1", "2", "3"] {
        let output = Command::new(ACCUNODE)
            .args(["cost", "--phase", phase, "--output", "json"])
            .output()
            .unwrap();
        let report = json(&output);
        let lines: f64 = report["lines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["monthly"].as_f64().unwrap())
            .sum();
        let total = report["total"].as_f64().unwrap();
        assert!((lines - total).abs() < 1e-6);
        assert!(
            report["lines"]
                .as_array()
                .unwrap()
                .iter()
                .any(|l| l["component"] == "nat-gateway")
        );
        assert!(report["seed_total_stated"].as_f64().unwrap() > 100.0);
        totals.push(total);
    }
    assert!(totals[0] < totals[1] && totals[1] < totals[2], "{totals:?}");
    let text = succeeded(
        &Command::new(ACCUNODE)
            .args(["cost", "--phase", "2"])
            .output()
            .unwrap(),
    );
    assert!(text.contains("$154") && text.contains("$169"), "{text}");
}
