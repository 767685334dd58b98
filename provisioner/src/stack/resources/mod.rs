//! The resource kinds: for each, discovery (what exists, as properties plan can
//! compare), create, update in place and delete. Every create tags the resource
//! in the same call that makes it, so an interrupted run leaves nothing a
//! re-run cannot find.

pub mod autoscaling;
pub mod database;
pub mod iam;
pub mod launch_template;
pub mod load_balancer;
pub mod monitoring;
pub mod network;
pub mod parameter;
pub mod redis;
pub mod security_group;
pub mod storage;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::aws::{Aws, aws_error};
use super::definition::Definition;
use super::plan::Change;
use super::progress::Progress;
use super::spec::{COMPONENT_TAG, Existing, Kind, Resource, STACK_TAG};

/// Everything an operation on a resource needs.
pub struct Ctx {
    pub aws: Aws,
    pub stack: String,
    pub account: String,
    pub definition: Definition,
    pub progress: Progress,
    /// The longest a single wait (RDS, NAT gateway, load balancer…) may take.
    pub wait_timeout: Duration,
}

impl Ctx {
    pub fn region(&self) -> &str {
        &self.aws.region
    }

    /// The two tags every resource carries, plus its name.
    pub fn tags(&self, component: &str, name: &str) -> Vec<(String, String)> {
        vec![
            (STACK_TAG.to_owned(), self.stack.clone()),
            (COMPONENT_TAG.to_owned(), component.to_owned()),
            ("Name".to_owned(), name.to_owned()),
        ]
    }
}

/// Resources resolved so far in a run, by component.
pub type Known = BTreeMap<String, Existing>;

/// The AWS id of a component this one depends on.
pub fn id<'a>(known: &'a Known, component: &str) -> anyhow::Result<&'a str> {
    known
        .get(component)
        .map(|e| e.id.as_str())
        .with_context(|| format!("{component} does not exist yet"))
}

/// The AWS ids of a comma-separated list of components (an empty list is none).
pub fn ids(known: &Known, components: &str) -> anyhow::Result<Vec<String>> {
    components
        .split(',')
        .filter(|c| !c.is_empty())
        .map(|c| id(known, c).map(str::to_owned))
        .collect()
}

/// A resource discovered with the stack's tag: its component and name from its tags.
pub fn tagged<'a>(
    stack: &str,
    tags: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Option<(String, Option<String>)> {
    let tags: BTreeMap<&str, &str> = tags.into_iter().collect();
    if tags.get(STACK_TAG) != Some(&stack) {
        return None;
    }
    let component = tags.get(COMPONENT_TAG)?;
    Some((
        (*component).to_owned(),
        tags.get("Name").map(|n| (*n).to_owned()),
    ))
}

/// Build an `Existing` from discovery.
pub fn existing(
    component: String,
    kind: Kind,
    name: String,
    id: String,
    props: &[(&str, String)],
) -> Existing {
    Existing {
        component,
        kind,
        name,
        id,
        props: props
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
        attrs: BTreeMap::new(),
        aliases: Vec::new(),
    }
}

/// What `create` returns when the desired properties are what AWS now has.
pub fn created(resource: &Resource, id: String) -> Existing {
    Existing {
        component: resource.component.clone(),
        kind: resource.kind,
        name: resource.name.clone(),
        id,
        props: resource.props.clone(),
        attrs: BTreeMap::new(),
        aliases: Vec::new(),
    }
}

/// What `create` returns for a resource whose dependents connect to it.
pub fn with_endpoint(resource: &Resource, endpoint: String) -> Existing {
    let mut current = created(resource, resource.name.clone());
    current.attrs.insert("endpoint".into(), endpoint);
    current
}

/// The status of a resource discovery found on its way to being usable
/// (an RDS instance still creating after a killed run, a NAT gateway pending),
/// or `None` when it is usable or its kind has no such states.
pub fn in_transition(current: &Existing) -> Option<&str> {
    let status = |key: &str| current.attrs.get(key).map(String::as_str);
    match current.kind {
        // On its way to available; a stopped or failed instance is not waited for.
        Kind::Database => status("status").filter(|s| {
            matches!(
                *s,
                "creating"
                    | "modifying"
                    | "backing-up"
                    | "rebooting"
                    | "starting"
                    | "upgrading"
                    | "renaming"
                    | "maintenance"
                    | "resetting-master-credentials"
                    | "storage-optimization"
                    | "configuring-enhanced-monitoring"
                    | "configuring-log-exports"
            )
        }),
        Kind::Redis => {
            status("status").filter(|s| matches!(*s, "creating" | "modifying" | "snapshotting"))
        }
        Kind::NatGateway => status("state").filter(|s| *s == "pending"),
        Kind::LoadBalancer => status("state").filter(|s| *s == "provisioning"),
        _ => None,
    }
}

/// Waits until `current` (see [`in_transition`]) is usable, and updates what
/// dependents read from it (an endpoint AWS gives only then).
pub async fn settle(ctx: &Ctx, current: &mut Existing) -> anyhow::Result<()> {
    let (component, id) = (current.component.as_str(), current.id.as_str());
    match current.kind {
        Kind::Database => {
            let endpoint = database::wait_available(ctx, component, id).await?;
            current.attrs.insert("endpoint".into(), endpoint);
            current.attrs.insert("status".into(), "available".into());
        }
        Kind::Redis => {
            let endpoint = redis::wait_available(ctx, component, id).await?;
            current.attrs.insert("endpoint".into(), endpoint);
            current.attrs.insert("status".into(), "available".into());
        }
        Kind::NatGateway => {
            network::wait_nat(ctx, component, id, "available").await?;
            current.attrs.insert("state".into(), "available".into());
        }
        Kind::LoadBalancer => {
            load_balancer::wait_active(ctx, component, id).await?;
            current.attrs.insert("state".into(), "active".into());
        }
        _ => {}
    }
    Ok(())
}

/// Sends a create that AWS cannot deduplicate (on `aws.ec2_once`, which never
/// resends by itself) so that it makes at most one resource: a throttled
/// create is sent again after a pause; one whose answer was lost (time-out,
/// reset, 5xx) is first looked for with `find` (by the tags it was sent with),
/// adopted when it is there, and only sent again when it is not.
pub async fn create_once<T, E, Send, SendFut, Find, FindFut>(
    ctx: &Ctx,
    what: &str,
    send: Send,
    find: Find,
) -> anyhow::Result<T>
where
    E: std::error::Error
        + aws_smithy_types::error::metadata::ProvideErrorMetadata
        + std::marker::Send
        + Sync
        + 'static,
    Send: Fn() -> SendFut,
    SendFut: Future<
        Output = Result<
            T,
            aws_smithy_runtime_api::client::result::SdkError<
                E,
                aws_smithy_runtime_api::http::Response,
            >,
        >,
    >,
    Find: Fn() -> FindFut,
    FindFut: Future<Output = anyhow::Result<Option<T>>>,
{
    use super::aws::{Failure, failure};
    let mut pause = Duration::from_millis(200);
    for attempt in 1..=super::aws::MAX_ATTEMPTS {
        if attempt > 1 {
            ctx.aws.calls.record_resend();
        }
        let error = match send().await {
            Ok(made) => return Ok(made),
            Err(error) => error,
        };
        let how = failure(&error);
        if how == Failure::Refused || attempt == super::aws::MAX_ATTEMPTS {
            return Err(aws_error(error)).with_context(|| format!("cannot create {what}"));
        }
        // Back off with jitter, as the SDK's retry does.
        tokio::time::sleep(pause.mul_f64(0.5 + jitter())).await;
        pause = (pause * 2).min(Duration::from_secs(10));
        if how == Failure::Unknown {
            // Tags show up within about a second of the create: look twice.
            for look in 0..2 {
                if look > 0 {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                if let Some(found) = find()
                    .await
                    .with_context(|| format!("cannot look for {what} after a lost answer"))?
                {
                    return Ok(found);
                }
            }
        }
    }
    unreachable!("the last attempt returns")
}

/// The resource of `resource.component` among what discovery `found`: what a create
/// adopts when AWS answers that it exists already (its own resend, after the
/// first answer was lost). A look-alike without the stack's tags is refused.
pub fn adopt(ctx: &Ctx, resource: &Resource, found: Vec<Existing>) -> anyhow::Result<Existing> {
    found
        .into_iter()
        .find(|found| found.component == resource.component)
        .with_context(|| {
            format!(
                "{} {} exists without the tags accunode:stack={} accunode:component={}: not this stack's, not touched",
                resource.kind.label(),
                resource.name,
                ctx.stack,
                resource.component
            )
        })
}

/// A number in [0, 1) that differs between calls, for spreading resends.
fn jitter() -> f64 {
    let mut bytes = [0u8; 2];
    getrandom::fill(&mut bytes).map_or(0.5, |()| f64::from(u16::from_le_bytes(bytes)) / 65536.0)
}

/// What a wait's check reports.
pub enum Poll<T> {
    Ready(T),
    Pending(String),
}

/// Poll `check` until it is ready, backing off to 10 s, printing the status
/// every 15 s, and failing after the run's wait timeout.
pub async fn wait_for<T, F, Fut>(ctx: &Ctx, component: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Poll<T>>>,
{
    let started = Instant::now();
    let mut delay: Duration = Duration::from_millis(50);
    let mut last_report = Instant::now();
    loop {
        match check().await? {
            Poll::Ready(value) => return Ok(value),
            Poll::Pending(status) => {
                if started.elapsed() > ctx.wait_timeout {
                    bail!(
                        "{component}: still {status} after {} s (--wait-timeout); run the command again to go on waiting",
                        started.elapsed().as_secs()
                    );
                }
                if last_report.elapsed() >= Duration::from_secs(15) {
                    ctx.progress.waiting(component, &status, started.elapsed());
                    last_report = Instant::now();
                }
            }
        }
        // Polls a quarter of the time waited so far apart: a resource is seen
        // ready at most about 25 % after it is, with a few calls a minute.
        tokio::time::sleep(delay).await;
        delay = (started.elapsed() / 4).clamp(Duration::from_millis(50), Duration::from_secs(10));
    }
}

/// Everything of the stack that exists, discovered kind by kind concurrently.
pub async fn discover(ctx: &Ctx) -> anyhow::Result<Vec<Existing>> {
    let (
        network,
        groups,
        iam,
        storage,
        parameters,
        database,
        redis,
        templates,
        balancer,
        scaling,
        monitoring,
    ) = tokio::try_join!(
        network::discover(ctx),
        security_group::discover(ctx),
        iam::discover(ctx),
        storage::discover(ctx),
        parameter::discover(ctx),
        database::discover(ctx),
        redis::discover(ctx),
        launch_template::discover(ctx),
        load_balancer::discover(ctx),
        autoscaling::discover(ctx),
        monitoring::discover(ctx),
    )?;
    let mut found: Vec<Existing> = [
        network, groups, iam, storage, parameters, database, redis, templates, balancer, scaling,
        monitoring,
    ]
    .concat();
    references_to_components(&mut found);
    Ok(found)
}

/// Discovery reads AWS ids inside properties (a subnet's VPC, a rule's source
/// group); replace each with the component it belongs to so that properties
/// compare with the desired ones.
fn references_to_components(found: &mut [Existing]) {
    let mut by_id: BTreeMap<String, String> = BTreeMap::new();
    for e in found.iter() {
        by_id.insert(e.id.clone(), e.component.clone());
        for alias in &e.aliases {
            by_id.insert(alias.clone(), e.component.clone());
        }
    }
    for e in found.iter_mut() {
        for (key, value) in e.props.iter_mut() {
            if !FREE_TEXT.contains(&key.as_str()) {
                *value = replace_tokens(value, LISTS.contains(&key.as_str()), &by_id);
            }
        }
    }
}

/// Properties that hold text, never another resource's id.
const FREE_TEXT: [&str; 3] = ["policy", "description", "metric"];
/// Properties that are sets, compared sorted.
const LISTS: [&str; 5] = [
    "subnets",
    "security_groups",
    "ingress",
    "target_groups",
    "actions",
];

fn replace_tokens(value: &str, is_list: bool, by_id: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(value.len());
    let mut token = String::new();
    let flush = |token: &mut String, out: &mut String| {
        out.push_str(
            by_id
                .get(token.as_str())
                .map_or(token.as_str(), String::as_str),
        );
        token.clear();
    };
    for c in value.chars() {
        if matches!(c, ',' | ' ' | '=') {
            flush(&mut token, &mut out);
            out.push(c);
        } else {
            token.push(c);
        }
    }
    flush(&mut token, &mut out);
    // Sets are compared sorted: ids sort differently from component names.
    if is_list {
        let mut items: Vec<&str> = out.split(',').collect();
        items.sort_unstable();
        return items.join(",");
    }
    out
}

pub async fn create(ctx: &Ctx, known: &Known, resource: &Resource) -> anyhow::Result<Existing> {
    match resource.kind {
        Kind::Vpc => network::create_vpc(ctx, resource).await,
        Kind::Subnet => network::create_subnet(ctx, known, resource).await,
        Kind::InternetGateway => network::create_internet_gateway(ctx, known, resource).await,
        Kind::ElasticIp => network::create_elastic_ip(ctx, resource).await,
        Kind::NatGateway => network::create_nat_gateway(ctx, known, resource).await,
        Kind::RouteTable => network::create_route_table(ctx, known, resource).await,
        Kind::SecurityGroup => security_group::create(ctx, known, resource).await,
        Kind::Role => iam::create_role(ctx, resource).await,
        Kind::InstanceProfile => iam::create_instance_profile(ctx, known, resource).await,
        Kind::Bucket => storage::create(ctx, resource).await,
        Kind::Parameter => parameter::create(ctx, known, resource).await,
        Kind::DbSubnetGroup => database::create_subnet_group(ctx, known, resource).await,
        Kind::Database => database::create(ctx, known, resource).await,
        Kind::CacheSubnetGroup => redis::create_subnet_group(ctx, known, resource).await,
        Kind::Redis => redis::create(ctx, known, resource).await,
        Kind::LaunchTemplate => launch_template::create(ctx, known, resource).await,
        Kind::TargetGroup => load_balancer::create_target_group(ctx, known, resource).await,
        Kind::LoadBalancer => load_balancer::create_load_balancer(ctx, known, resource).await,
        Kind::Listener => load_balancer::create_listener(ctx, known, resource).await,
        Kind::AutoScalingGroup => autoscaling::create_group(ctx, known, resource).await,
        Kind::ScalingPolicy => autoscaling::put_policy(ctx, known, resource).await,
        Kind::Alarm => monitoring::put_alarm(ctx, known, resource).await,
        Kind::Dashboard => monitoring::put_dashboard(ctx, known, resource).await,
    }
    .with_context(|| format!("cannot create {} {}", resource.kind.label(), resource.name))
}

pub async fn update(
    ctx: &Ctx,
    known: &Known,
    resource: &Resource,
    current: &Existing,
    changes: &[Change],
) -> anyhow::Result<Existing> {
    let changed = |key: &str| changes.iter().any(|c| c.key == key);
    match resource.kind {
        Kind::Vpc => network::update_vpc(ctx, resource, current, &changed).await,
        Kind::Subnet => network::update_subnet(ctx, resource, current).await,
        Kind::InternetGateway => network::update_internet_gateway(ctx, known, current).await,
        Kind::RouteTable => {
            network::update_route_table(ctx, known, resource, current, &changed).await
        }
        Kind::SecurityGroup => security_group::update(ctx, known, resource, current).await,
        Kind::Role => iam::update_role(ctx, resource, current).await,
        Kind::InstanceProfile => iam::update_instance_profile(ctx, known, resource, current).await,
        Kind::Bucket => storage::update(ctx, resource, current).await,
        Kind::Parameter => parameter::update(ctx, known, resource, current).await,
        Kind::DbSubnetGroup => database::update_subnet_group(ctx, known, resource, current).await,
        Kind::Database => database::update(ctx, known, resource, current, &changed).await,
        Kind::CacheSubnetGroup => redis::update_subnet_group(ctx, known, resource, current).await,
        Kind::Redis => redis::update(ctx, known, resource, current, &changed).await,
        Kind::LaunchTemplate => launch_template::update(ctx, known, resource, current).await,
        Kind::TargetGroup => {
            load_balancer::update_target_group(ctx, resource, current, &changed).await
        }
        Kind::LoadBalancer => {
            load_balancer::update_load_balancer(ctx, known, resource, current, &changed).await
        }
        Kind::Listener => load_balancer::update_listener(ctx, known, resource, current).await,
        Kind::AutoScalingGroup => autoscaling::update_group(ctx, known, resource, current).await,
        Kind::ScalingPolicy => autoscaling::put_policy(ctx, known, resource).await,
        Kind::Alarm => monitoring::put_alarm(ctx, known, resource).await,
        Kind::Dashboard => monitoring::put_dashboard(ctx, known, resource).await,
        Kind::ElasticIp | Kind::NatGateway => {
            bail!("{} cannot change in place", resource.kind.label())
        }
    }
    .with_context(|| format!("cannot update {} {}", resource.kind.label(), resource.name))
}

/// Deletes `current`. When the delete fails, AWS is asked whether the
/// resource is still there: a delete resent after its first answer was lost
/// finds nothing to delete, and gone is what was asked for.
pub async fn delete(ctx: &Ctx, current: &Existing) -> anyhow::Result<()> {
    let Err(error) = delete_once(ctx, current).await else {
        return Ok(());
    };
    // Discovery leaves out these kinds while they are deleting: their absence
    // there does not say they are gone (their deletes wait for that).
    if matches!(
        current.kind,
        Kind::Database | Kind::Redis | Kind::NatGateway
    ) {
        return Err(error);
    }
    match discover_kind(ctx, current.kind).await {
        Ok(found) if !found.iter().any(|e| e.id == current.id) => Ok(()),
        _ => Err(error),
    }
}

/// What exists of the stack among the resources of `kind`'s module.
async fn discover_kind(ctx: &Ctx, kind: Kind) -> anyhow::Result<Vec<Existing>> {
    match kind {
        Kind::Vpc
        | Kind::Subnet
        | Kind::InternetGateway
        | Kind::ElasticIp
        | Kind::NatGateway
        | Kind::RouteTable => network::discover(ctx).await,
        Kind::SecurityGroup => security_group::discover(ctx).await,
        Kind::Role | Kind::InstanceProfile => iam::discover(ctx).await,
        Kind::Bucket => storage::discover(ctx).await,
        Kind::Parameter => parameter::discover(ctx).await,
        Kind::DbSubnetGroup | Kind::Database => database::discover(ctx).await,
        Kind::CacheSubnetGroup | Kind::Redis => redis::discover(ctx).await,
        Kind::LaunchTemplate => launch_template::discover(ctx).await,
        Kind::TargetGroup | Kind::LoadBalancer | Kind::Listener => {
            load_balancer::discover(ctx).await
        }
        Kind::AutoScalingGroup | Kind::ScalingPolicy => autoscaling::discover(ctx).await,
        Kind::Alarm | Kind::Dashboard => monitoring::discover(ctx).await,
    }
}

async fn delete_once(ctx: &Ctx, current: &Existing) -> anyhow::Result<()> {
    match current.kind {
        Kind::Vpc => network::delete_vpc(ctx, current).await,
        Kind::Subnet => network::delete_subnet(ctx, current).await,
        Kind::InternetGateway => network::delete_internet_gateway(ctx, current).await,
        Kind::ElasticIp => network::delete_elastic_ip(ctx, current).await,
        Kind::NatGateway => network::delete_nat_gateway(ctx, current).await,
        Kind::RouteTable => network::delete_route_table(ctx, current).await,
        Kind::SecurityGroup => security_group::delete(ctx, current).await,
        Kind::Role => iam::delete_role(ctx, current).await,
        Kind::InstanceProfile => iam::delete_instance_profile(ctx, current).await,
        Kind::Bucket => storage::delete(ctx, current).await,
        Kind::Parameter => parameter::delete(ctx, current).await,
        Kind::DbSubnetGroup => database::delete_subnet_group(ctx, current).await,
        Kind::Database => database::delete(ctx, current).await,
        Kind::CacheSubnetGroup => redis::delete_subnet_group(ctx, current).await,
        Kind::Redis => redis::delete(ctx, current).await,
        Kind::LaunchTemplate => launch_template::delete(ctx, current).await,
        Kind::TargetGroup => load_balancer::delete_target_group(ctx, current).await,
        Kind::LoadBalancer => load_balancer::delete_load_balancer(ctx, current).await,
        Kind::Listener => load_balancer::delete_listener(ctx, current).await,
        Kind::AutoScalingGroup => autoscaling::delete_group(ctx, current).await,
        Kind::ScalingPolicy => autoscaling::delete_policy(ctx, current).await,
        Kind::Alarm => monitoring::delete_alarm(ctx, current).await,
        Kind::Dashboard => monitoring::delete_dashboard(ctx, current).await,
    }
    .with_context(|| format!("cannot delete {} {}", current.kind.label(), current.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_inside_properties_become_component_names() {
        let by_id: BTreeMap<String, String> = [
            ("sg-1", "sg-alb"),
            ("subnet-9", "subnet-public-b"),
            ("subnet-2", "subnet-public-a"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .collect();
        assert_eq!(
            replace_tokens("tcp 8000 from sg-1", true, &by_id),
            "tcp 8000 from sg-alb"
        );
        assert_eq!(
            replace_tokens("subnet-9,subnet-2", true, &by_id),
            "subnet-public-a,subnet-public-b"
        );
        assert_eq!(
            replace_tokens("LoadBalancer=sg-1", false, &by_id),
            "LoadBalancer=sg-alb"
        );
        assert_eq!(replace_tokens("vpc-unknown", false, &by_id), "vpc-unknown");
    }
}
