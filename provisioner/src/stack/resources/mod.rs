//! The resource kinds, one file each. A kind's file owns everything about it:
//! the resources of it a phase wants (`desired`, from the definition), which
//! properties force a replacement, its monthly price, its waits, and its
//! discover/create/update/delete against AWS. [`ResourceKind`] is that
//! contract and [`KINDS`] registers each kind once, in creation order
//! (destroy goes backwards); the engine (plan, apply, status) reaches kinds
//! only through them. What kinds share lives beside them: [`tags`] (how the
//! stack's resources are tagged and found), [`wait`] (polling a slow
//! resource), [`find`] (making a create happen once when answers get lost).
//! Every create tags the resource in the call that makes it, so an
//! interrupted run leaves nothing a re-run cannot find.

pub mod find;
pub mod tags;
pub mod wait;

pub mod alarm;
mod auto_scaling_group;
mod bucket;
mod cache_subnet_group;
mod dashboard;
mod database;
mod db_subnet_group;
mod elastic_ip;
mod instance_profile;
mod internet_gateway;
mod launch_template;
mod listener;
mod load_balancer;
mod nat_gateway;
mod parameter;
mod redis;
mod role;
mod route_table;
mod scaling_policy;
mod security_group;
mod subnet;
mod target_group;
mod vpc;

pub use listener::{ListenerAction, live_colour, set_action};

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use anyhow::{Context, bail};
use futures::future::{BoxFuture, FutureExt};

use super::aws::Aws;
use super::definition::{Definition, Phase};
use super::progress::Progress;
use super::spec::{COMPONENT_TAG, Existing, Inputs, Kind, Props, Resource, STACK_TAG};

/// Every kind, in creation order: a kind comes after the kinds its resources
/// may depend on (a unit test holds it to that), and destroy goes backwards.
/// SSM parameters come before the database and Redis, which read their
/// generated secrets; the two URL parameters, which hold those resources'
/// endpoints, are the exception (AWS ties neither to the other).
/// A new kind is one line here, one `Kind` variant and its own file.
pub const KINDS: [&dyn Home; 23] = [
    &vpc::Vpc,
    &subnet::Subnet,
    &internet_gateway::InternetGateway,
    &elastic_ip::ElasticIp,
    &nat_gateway::NatGateway,
    &route_table::RouteTable,
    &security_group::SecurityGroup,
    &role::Role,
    &instance_profile::InstanceProfile,
    &bucket::Bucket,
    &parameter::Parameter,
    &db_subnet_group::DbSubnetGroup,
    &database::Database,
    &cache_subnet_group::CacheSubnetGroup,
    &redis::Redis,
    &launch_template::LaunchTemplate,
    &target_group::TargetGroup,
    &load_balancer::LoadBalancer,
    &listener::Listener,
    &auto_scaling_group::AutoScalingGroup,
    &scaling_policy::ScalingPolicy,
    &alarm::Alarm,
    &dashboard::Dashboard,
];

/// What one kind of resource is and how it is handled. Everything but
/// `kind`, `label`, `desired`, `discover`, `create` and `delete` has the
/// default of a kind with no such trait (free, changed in place, usable as
/// soon as it is created). Kind files implement it with `async fn`s; the
/// engine calls it through [`Home`].
pub trait ResourceKind: Sync {
    fn kind(&self) -> Kind;

    /// How plans and progress rows name the kind.
    fn label(&self) -> &'static str;

    /// The resources of this kind that `wanted`'s phase asks for.
    fn desired(&self, wanted: &Wanted<'_>) -> Vec<Resource>;

    /// Whether a change of `key` needs a new resource (AWS cannot change it
    /// on a live one).
    fn forces_replacement(&self, _key: &str) -> bool {
        false
    }

    /// Why a difference of `key` is deliberately left as it is, if it is.
    fn accepted(&self, _key: &str, _wanted: &str, _have: &str) -> Option<String> {
        None
    }

    /// What a resource with `props` costs a month, from the definition's
    /// price table. The same function prices what exists and what is wanted,
    /// so a plan's before and after compare like with like.
    fn monthly_cost(&self, _definition: &Definition, _props: &Props) -> f64 {
        0.0
    }

    /// The health column of `status`.
    fn status(&self, current: &Existing) -> String {
        current
            .attrs
            .get("status")
            .or(current.attrs.get("state"))
            .cloned()
            .unwrap_or_else(|| "ok".to_owned())
    }

    /// The state of a resource discovery found on its way to being usable
    /// (an RDS instance still creating after a killed run), if it is.
    fn in_transition<'e>(&self, _current: &'e Existing) -> Option<&'e str> {
        None
    }

    /// Waits until a resource [`in_transition`](Self::in_transition) is
    /// usable, and updates what dependents read from it (an endpoint AWS
    /// gives only then).
    fn settle(
        &self,
        _ctx: &Ctx,
        _current: &mut Existing,
    ) -> impl Future<Output = anyhow::Result<()>> + Send {
        async { Ok(()) }
    }

    /// Whether discovery leaves the kind out while it is deleting, so that
    /// its absence there does not say it is gone (its delete waits for that).
    fn hidden_while_deleting(&self) -> bool {
        false
    }

    /// Every resource of this kind that carries the stack's tags.
    fn discover(&self, ctx: &Ctx) -> impl Future<Output = anyhow::Result<Vec<Existing>>> + Send;

    fn create(
        &self,
        ctx: &Ctx,
        known: &Known,
        resource: &Resource,
    ) -> impl Future<Output = anyhow::Result<Existing>> + Send;

    /// Changes `current` in place to `resource`; `changed` holds the keys the
    /// plan found different (none that force a replacement).
    fn update(
        &self,
        _ctx: &Ctx,
        _known: &Known,
        resource: &Resource,
        _current: &Existing,
        _changed: &Changed,
    ) -> impl Future<Output = anyhow::Result<Existing>> + Send {
        let label = self.label();
        async move { bail!("{label} {} cannot change in place", resource.name) }
    }

    /// Deletes `current`; a "not found" answer counts as done.
    fn delete(
        &self,
        ctx: &Ctx,
        current: &Existing,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// A [`ResourceKind`] as the engine holds it: the same operations with their
/// futures boxed, so that the 23 kinds can sit in one list.
pub trait Home: Sync {
    fn kind(&self) -> Kind;
    fn label(&self) -> &'static str;
    fn desired(&self, wanted: &Wanted<'_>) -> Vec<Resource>;
    fn forces_replacement(&self, key: &str) -> bool;
    fn accepted(&self, key: &str, wanted: &str, have: &str) -> Option<String>;
    fn monthly_cost(&self, definition: &Definition, props: &Props) -> f64;
    fn status(&self, current: &Existing) -> String;
    fn in_transition<'e>(&self, current: &'e Existing) -> Option<&'e str>;
    fn hidden_while_deleting(&self) -> bool;
    fn settle<'a>(
        &'a self,
        ctx: &'a Ctx,
        current: &'a mut Existing,
    ) -> BoxFuture<'a, anyhow::Result<()>>;
    fn discover<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, anyhow::Result<Vec<Existing>>>;
    fn create<'a>(
        &'a self,
        ctx: &'a Ctx,
        known: &'a Known,
        resource: &'a Resource,
    ) -> BoxFuture<'a, anyhow::Result<Existing>>;
    fn update<'a>(
        &'a self,
        ctx: &'a Ctx,
        known: &'a Known,
        resource: &'a Resource,
        current: &'a Existing,
        changed: &'a Changed,
    ) -> BoxFuture<'a, anyhow::Result<Existing>>;
    fn delete<'a>(
        &'a self,
        ctx: &'a Ctx,
        current: &'a Existing,
    ) -> BoxFuture<'a, anyhow::Result<()>>;
}

impl<K: ResourceKind> Home for K {
    fn kind(&self) -> Kind {
        ResourceKind::kind(self)
    }
    fn label(&self) -> &'static str {
        ResourceKind::label(self)
    }
    fn desired(&self, wanted: &Wanted<'_>) -> Vec<Resource> {
        ResourceKind::desired(self, wanted)
    }
    fn forces_replacement(&self, key: &str) -> bool {
        ResourceKind::forces_replacement(self, key)
    }
    fn accepted(&self, key: &str, wanted: &str, have: &str) -> Option<String> {
        ResourceKind::accepted(self, key, wanted, have)
    }
    fn monthly_cost(&self, definition: &Definition, props: &Props) -> f64 {
        ResourceKind::monthly_cost(self, definition, props)
    }
    fn status(&self, current: &Existing) -> String {
        ResourceKind::status(self, current)
    }
    fn in_transition<'e>(&self, current: &'e Existing) -> Option<&'e str> {
        ResourceKind::in_transition(self, current)
    }
    fn hidden_while_deleting(&self) -> bool {
        ResourceKind::hidden_while_deleting(self)
    }
    fn settle<'a>(
        &'a self,
        ctx: &'a Ctx,
        current: &'a mut Existing,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        ResourceKind::settle(self, ctx, current).boxed()
    }
    fn discover<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, anyhow::Result<Vec<Existing>>> {
        ResourceKind::discover(self, ctx).boxed()
    }
    fn create<'a>(
        &'a self,
        ctx: &'a Ctx,
        known: &'a Known,
        resource: &'a Resource,
    ) -> BoxFuture<'a, anyhow::Result<Existing>> {
        ResourceKind::create(self, ctx, known, resource).boxed()
    }
    fn update<'a>(
        &'a self,
        ctx: &'a Ctx,
        known: &'a Known,
        resource: &'a Resource,
        current: &'a Existing,
        changed: &'a Changed,
    ) -> BoxFuture<'a, anyhow::Result<Existing>> {
        ResourceKind::update(self, ctx, known, resource, current, changed).boxed()
    }
    fn delete<'a>(
        &'a self,
        ctx: &'a Ctx,
        current: &'a Existing,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        ResourceKind::delete(self, ctx, current).boxed()
    }
}

impl Kind {
    /// The kind's file.
    pub fn home(self) -> &'static dyn Home {
        *KINDS
            .iter()
            .find(|home| home.kind() == self)
            .expect("every kind is registered in KINDS (unit test)")
    }

    pub fn label(self) -> &'static str {
        self.home().label()
    }

    /// The kind's place in creation order; destroy goes from the highest.
    pub fn creation_rank(self) -> usize {
        KINDS
            .iter()
            .position(|home| home.kind() == self)
            .expect("every kind is registered in KINDS (unit test)")
    }
}

/// The keys of the properties a plan found different.
#[derive(Debug, Default)]
pub struct Changed(pub Vec<String>);

impl Changed {
    pub fn has(&self, key: &str) -> bool {
        self.0.iter().any(|changed| changed == key)
    }
}

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

/// What a kind's `desired` reads: the definition, the phase, the run's inputs
/// and what exists (values only known once a resource exists, such as an
/// endpoint, come from there).
pub struct Wanted<'a> {
    pub definition: &'a Definition,
    pub phase: &'a Phase,
    pub inputs: &'a Inputs<'a>,
    pub existing: &'a Known,
}

impl Wanted<'_> {
    /// The AWS name (or `Name` tag) of one of the stack's resources.
    pub fn name(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.inputs.stack)
    }

    /// The subnet components of a tier ("public" or "private"), one per zone.
    pub fn subnets(&self, tier: &str) -> Vec<String> {
        self.definition
            .network
            .availability_zones
            .iter()
            .map(|zone| subnet_component(tier, zone))
            .collect()
    }

    /// A tier's subnets as a property: the sorted, comma-separated components.
    pub fn subnet_list(&self, tier: &str) -> String {
        list(self.subnets(tier))
    }

    /// A read-only fact of an existing resource (an endpoint, an ARN suffix).
    pub fn attr(&self, component: &str, attr: &str) -> Option<String> {
        self.existing
            .get(component)
            .and_then(|e| e.attrs.get(attr))
            .cloned()
    }
}

/// The zone letter's component suffix: subnet-public-a, subnet-private-b.
pub fn subnet_component(tier: &str, zone: &str) -> String {
    format!("subnet-{tier}-{zone}")
}

/// A set-valued property: its items sorted and comma-separated.
pub fn list(items: impl IntoIterator<Item = String>) -> String {
    let mut items: Vec<String> = items.into_iter().collect();
    items.sort();
    items.join(",")
}

/// A number as plans show it (no trailing ".0").
pub fn number(value: f64) -> String {
    format!("{value}")
}

/// One wanted resource.
pub fn resource(
    component: &str,
    kind: Kind,
    name: String,
    props: &[(&str, String)],
    depends_on: &[&str],
) -> Resource {
    Resource {
        component: component.to_owned(),
        kind,
        name,
        props: props
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
        depends_on: depends_on.iter().map(|d| (*d).to_owned()).collect(),
    }
}

/// The resources of `phase`, kind by kind in creation order.
pub fn desired(
    definition: &Definition,
    phase: &Phase,
    inputs: &Inputs<'_>,
    existing: &Known,
) -> Vec<Resource> {
    let wanted = Wanted {
        definition,
        phase,
        inputs,
        existing,
    };
    KINDS
        .iter()
        .flat_map(|home| home.desired(&wanted))
        .collect()
}

/// Everything of the stack that exists, discovered kind by kind concurrently.
pub async fn discover(ctx: &Ctx) -> anyhow::Result<Vec<Existing>> {
    discover_kinds(ctx, &KINDS.map(|home| home.kind())).await
}

/// What exists of `kinds` only, with references among them mapped to
/// components (a deploy reads the listeners and target groups this way, not
/// the whole stack).
pub async fn discover_kinds(ctx: &Ctx, kinds: &[Kind]) -> anyhow::Result<Vec<Existing>> {
    let found =
        futures::future::try_join_all(kinds.iter().map(|kind| kind.home().discover(ctx))).await?;
    let mut found: Vec<Existing> = found.concat();
    references_to_components(&mut found);
    Ok(found)
}

pub async fn create(ctx: &Ctx, known: &Known, resource: &Resource) -> anyhow::Result<Existing> {
    resource
        .kind
        .home()
        .create(ctx, known, resource)
        .await
        .with_context(|| format!("cannot create {} {}", resource.kind.label(), resource.name))
}

pub async fn update(
    ctx: &Ctx,
    known: &Known,
    resource: &Resource,
    current: &Existing,
    changed: &Changed,
) -> anyhow::Result<Existing> {
    resource
        .kind
        .home()
        .update(ctx, known, resource, current, changed)
        .await
        .with_context(|| format!("cannot update {} {}", resource.kind.label(), resource.name))
}

/// Deletes `current`. When the delete fails, AWS is asked whether the
/// resource is still there: a delete resent after its first answer was lost
/// finds nothing to delete, and gone is what was asked for.
pub async fn delete(ctx: &Ctx, current: &Existing) -> anyhow::Result<()> {
    let home = current.kind.home();
    let Err(error) = home
        .delete(ctx, current)
        .await
        .with_context(|| format!("cannot delete {} {}", current.kind.label(), current.name))
    else {
        return Ok(());
    };
    if home.hidden_while_deleting() {
        return Err(error);
    }
    match home.discover(ctx).await {
        Ok(found) if !found.iter().any(|e| e.id == current.id) => Ok(()),
        _ => Err(error),
    }
}

/// The state of `current` when discovery found it on its way to being usable.
pub fn in_transition(current: &Existing) -> Option<&str> {
    current.kind.home().in_transition(current)
}

/// Waits until `current` (see [`in_transition`]) is usable.
pub async fn settle(ctx: &Ctx, current: &mut Existing) -> anyhow::Result<()> {
    current.kind.home().settle(ctx, current).await
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use accunode_core::published_metrics::{self, STACK_DIMENSION};

    use super::*;
    use crate::stack::definition::BUILT_IN;
    use crate::stack::render;

    const STACK: &str = "teststack";

    fn inputs() -> Inputs<'static> {
        Inputs {
            stack: STACK,
            region: "us-east-1",
            account: "123456789012",
            image_id: "ami-0123456789abcdef0",
            admin_cidr: None,
            certificate_arn: None,
        }
    }

    /// A metric something reads: where, namespace, name, dimensions.
    type Read = (String, String, String, Vec<(String, String)>);

    /// Every metric line of the dashboard's widgets: `[namespace, name,
    /// dimension, value, …, {options}]`.
    fn widget_reads(body: &str) -> Vec<Read> {
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        let mut reads = Vec::new();
        for widget in body["widgets"].as_array().unwrap() {
            let title = widget["properties"]["title"].as_str().unwrap();
            for line in widget["properties"]["metrics"].as_array().unwrap() {
                let words: Vec<&str> = line
                    .as_array()
                    .unwrap()
                    .iter()
                    .take_while(|item| !item.is_object())
                    .map(|item| item.as_str().expect("a metric line holds strings"))
                    .collect();
                assert!(
                    words.len() >= 2 && words.len().is_multiple_of(2),
                    "widget {title}: {line}"
                );
                let dimensions = words[2..]
                    .chunks(2)
                    .map(|pair| (pair[0].to_owned(), pair[1].to_owned()))
                    .collect();
                reads.push((
                    format!("widget {title:?}"),
                    words[0].to_owned(),
                    words[1].to_owned(),
                    dimensions,
                ));
            }
        }
        reads
    }

    /// What an alarm reads, from its properties ("namespace name stat period xN",
    /// dimensions "Name=value,…").
    fn alarm_read(alarm: &Resource) -> Read {
        let metric: alarm::AlarmMetric = alarm.props["metric"].parse().unwrap();
        let dimensions: alarm::MetricDimensions = alarm.props["dimensions"].parse().unwrap();
        (
            format!("alarm {}", alarm.name),
            metric.namespace,
            metric.name,
            dimensions.0,
        )
    }

    #[test]
    fn every_own_metric_an_alarm_or_widget_reads_is_published_with_the_stack_dimension() {
        let definition = Definition::parse(BUILT_IN).unwrap();
        let none = BTreeMap::new();
        for number in [1, 2, 3] {
            let phase = definition.phase(number).unwrap();
            let resources = desired(&definition, phase, &inputs(), &none);
            let alarms: Vec<&Resource> =
                resources.iter().filter(|r| r.kind == Kind::Alarm).collect();
            let mut reads: Vec<Read> = alarms.iter().map(|alarm| alarm_read(alarm)).collect();

            // Every step-scaling policy is triggered by alarms, which are among those read.
            for policy in resources
                .iter()
                .filter(|r| r.kind == Kind::ScalingPolicy && r.props["type"] == "StepScaling")
            {
                let triggers: Vec<&&Resource> = alarms
                    .iter()
                    .filter(|a| a.props["actions"].split(',').any(|p| p == policy.component))
                    .collect();
                assert!(
                    !triggers.is_empty(),
                    "phase {number}: no alarm triggers {}",
                    policy.component
                );
                for trigger in triggers {
                    let (_, namespace, ..) = alarm_read(trigger);
                    assert_eq!(
                        namespace,
                        published_metrics::WORKER_NAMESPACE,
                        "phase {number}: {} scales workers on a worker metric",
                        trigger.name
                    );
                }
            }

            // The dashboard, as the resource renders it (its digest says it is the same body).
            let dashboard = resources
                .iter()
                .find(|r| r.kind == Kind::Dashboard)
                .unwrap();
            let body =
                render::dashboard_body(STACK, "us-east-1", &dashboard::dashboard_refs(&none));
            assert_eq!(
                dashboard.props["body_sha256"],
                render::sha256_hex(body.as_bytes())
            );
            reads.extend(widget_reads(&body));

            let stack_only = vec![(STACK_DIMENSION.to_owned(), STACK.to_owned())];
            for (place, namespace, name, dimensions) in &reads {
                if namespace.starts_with("AccuNode/") {
                    assert!(
                        published_metrics::is_published(namespace, name),
                        "phase {number}: {place} reads {namespace} {name}, which neither the API nor the worker publishes"
                    );
                    assert_eq!(
                        dimensions, &stack_only,
                        "phase {number}: {place} reads {namespace} {name} with other dimensions than the published Stack={STACK}"
                    );
                } else {
                    assert!(
                        dimensions.iter().all(|(d, _)| d != STACK_DIMENSION),
                        "phase {number}: {place}: AWS metrics keep their own dimensions"
                    );
                }
            }
            // The worker metrics the issue names are all read somewhere.
            for metric in published_metrics::WORKER_METRICS {
                assert!(
                    reads
                        .iter()
                        .any(|(_, ns, name, _)| ns == metric.namespace && name == metric.name),
                    "phase {number}: nothing reads {} {}",
                    metric.namespace,
                    metric.name
                );
            }
        }
    }

    #[test]
    fn every_kind_is_registered_once_after_the_kinds_its_resources_depend_on() {
        let registered: BTreeSet<Kind> = KINDS.iter().map(|home| home.kind()).collect();
        assert_eq!(registered.len(), KINDS.len(), "a kind is registered twice");
        let definition = Definition::parse(BUILT_IN).unwrap();
        let mut wanted_kinds = BTreeSet::new();
        for phase in &definition.phases {
            for certificate_arn in [
                None,
                Some("arn:aws:acm:us-east-1:123456789012:certificate/x"),
            ] {
                let inputs = Inputs {
                    admin_cidr: Some("203.0.113.0/24"),
                    certificate_arn,
                    ..inputs()
                };
                let resources = desired(&definition, phase, &inputs, &Known::new());
                let by_component: BTreeMap<&str, &Resource> = resources
                    .iter()
                    .map(|r| (r.component.as_str(), r))
                    .collect();
                for r in &resources {
                    wanted_kinds.insert(r.kind);
                    assert_eq!(
                        r.kind.home().kind(),
                        r.kind,
                        "{} has another kind's home",
                        r.component
                    );
                    for dependency in &r.depends_on {
                        let dependency = by_component[dependency.as_str()];
                        if r.kind == Kind::Parameter {
                            // A value read from what it depends on (see KINDS).
                            continue;
                        }
                        assert!(
                            dependency.kind.creation_rank() <= r.kind.creation_rank(),
                            "{} ({}) depends on {} ({}), registered after it",
                            r.component,
                            r.kind.label(),
                            dependency.component,
                            dependency.kind.label()
                        );
                    }
                }
            }
        }
        assert_eq!(
            wanted_kinds, registered,
            "every registered kind is wanted by some shape"
        );
    }

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
