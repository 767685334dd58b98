//! Desired state: a phase of the definition turned into the list of resources
//! the stack should have, each with the properties that plan compares and the
//! components it depends on. Pure: no AWS call happens here.
//!
//! Properties are strings so that discovery can produce the same shape from
//! describe calls; a property that refers to another resource holds that
//! resource's component name (discovery maps AWS ids back to component names).

use std::collections::BTreeMap;

use serde::Serialize;

use super::definition::{AlarmDimension, Definition, Phase};
use super::render;

/// Every resource carries these two tags; they are the only state the provisioner keeps.
pub const STACK_TAG: &str = "accunode:stack";
pub const COMPONENT_TAG: &str = "accunode:component";
/// A value that is only known once the resources it derives from exist.
pub const AFTER_APPLY: &str = "(known after apply)";
/// What a generated secret shows in plans: its value is never read back or printed.
pub const GENERATED: &str = "(generated once, never shown)";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Vpc,
    Subnet,
    InternetGateway,
    ElasticIp,
    NatGateway,
    RouteTable,
    SecurityGroup,
    Role,
    InstanceProfile,
    Bucket,
    Parameter,
    DbSubnetGroup,
    Database,
    CacheSubnetGroup,
    Redis,
    LaunchTemplate,
    TargetGroup,
    LoadBalancer,
    Listener,
    AutoScalingGroup,
    ScalingPolicy,
    Alarm,
    Dashboard,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Vpc => "vpc",
            Kind::Subnet => "subnet",
            Kind::InternetGateway => "internet gateway",
            Kind::ElasticIp => "elastic ip",
            Kind::NatGateway => "nat gateway",
            Kind::RouteTable => "route table",
            Kind::SecurityGroup => "security group",
            Kind::Role => "iam role",
            Kind::InstanceProfile => "instance profile",
            Kind::Bucket => "s3 bucket",
            Kind::Parameter => "ssm parameter",
            Kind::DbSubnetGroup => "db subnet group",
            Kind::Database => "rds instance",
            Kind::CacheSubnetGroup => "cache subnet group",
            Kind::Redis => "redis group",
            Kind::LaunchTemplate => "launch template",
            Kind::TargetGroup => "target group",
            Kind::LoadBalancer => "load balancer",
            Kind::Listener => "listener",
            Kind::AutoScalingGroup => "auto scaling group",
            Kind::ScalingPolicy => "scaling policy",
            Kind::Alarm => "alarm",
            Kind::Dashboard => "dashboard",
        }
    }

    /// Order of removal: what uses a resource goes before it.
    pub const DESTROY_ORDER: [Kind; 23] = [
        Kind::Alarm,
        Kind::Dashboard,
        Kind::ScalingPolicy,
        Kind::AutoScalingGroup,
        Kind::Listener,
        Kind::LoadBalancer,
        Kind::TargetGroup,
        Kind::LaunchTemplate,
        Kind::Redis,
        Kind::CacheSubnetGroup,
        Kind::Database,
        Kind::DbSubnetGroup,
        Kind::Parameter,
        Kind::InstanceProfile,
        Kind::Role,
        Kind::Bucket,
        Kind::NatGateway,
        Kind::ElasticIp,
        Kind::RouteTable,
        Kind::InternetGateway,
        Kind::SecurityGroup,
        Kind::Subnet,
        Kind::Vpc,
    ];
}

pub type Props = BTreeMap<String, String>;

/// One resource the stack should have.
#[derive(Debug, Clone, Serialize)]
pub struct Resource {
    pub component: String,
    pub kind: Kind,
    /// The AWS name (or `Name` tag) the resource carries.
    pub name: String,
    pub props: Props,
    pub depends_on: Vec<String>,
}

/// One resource that exists, as discovery found it.
#[derive(Debug, Clone, Serialize)]
pub struct Existing {
    pub component: String,
    pub kind: Kind,
    pub name: String,
    /// What other resources and AWS calls refer to it by (VPC id, ARN, name…).
    pub id: String,
    pub props: Props,
    /// Read-only facts for outputs and dependents: endpoints, DNS names, state.
    pub attrs: Props,
    /// Other strings AWS uses for it inside properties (an ARN suffix, a name).
    #[serde(skip)]
    pub aliases: Vec<String>,
}

/// What the desired state depends on beyond the definition.
pub struct Inputs<'a> {
    pub stack: &'a str,
    pub region: &'a str,
    pub account: &'a str,
    pub image_id: &'a str,
    pub admin_cidr: Option<&'a str>,
    pub certificate_arn: Option<&'a str>,
}

/// AWS names of the stack's named resources, in one place.
pub mod names {
    pub fn bucket(stack: &str, account: &str, region: &str) -> String {
        format!("{stack}-ml-models-{account}-{region}")
    }
    pub fn parameter(stack: &str, key: &str) -> String {
        format!("/accunode/{stack}/{key}")
    }
}

struct Builder<'a> {
    inputs: &'a Inputs<'a>,
    resources: Vec<Resource>,
}

impl Builder<'_> {
    fn add(
        &mut self,
        component: &str,
        kind: Kind,
        name: String,
        props: &[(&str, String)],
        depends_on: &[&str],
    ) {
        self.resources.push(Resource {
            component: component.to_owned(),
            kind,
            name,
            props: props
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
            depends_on: depends_on.iter().map(|d| (*d).to_owned()).collect(),
        });
    }

    fn name(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.inputs.stack)
    }
}

/// The zone letter's component suffix: subnet-public-a, subnet-private-b.
fn subnet(tier: &str, zone: &str) -> String {
    format!("subnet-{tier}-{zone}")
}

fn list(items: impl IntoIterator<Item = String>) -> String {
    let mut items: Vec<String> = items.into_iter().collect();
    items.sort();
    items.join(",")
}

fn number(value: f64) -> String {
    format!("{value}")
}

/// The resources of `phase`, in an order where dependencies come first.
/// `existing` supplies values derived from live resources (endpoints).
pub fn desired(
    definition: &Definition,
    phase: &Phase,
    inputs: &Inputs<'_>,
    existing: &BTreeMap<String, Existing>,
) -> Vec<Resource> {
    let mut b = Builder {
        inputs,
        resources: Vec::new(),
    };
    let network = &definition.network;
    let zones = &network.availability_zones;

    b.add(
        "vpc",
        Kind::Vpc,
        b.name("vpc"),
        &[
            ("cidr", network.vpc_cidr.clone()),
            ("dns_hostnames", "true".into()),
            ("dns_support", "true".into()),
        ],
        &[],
    );
    for (tier, cidrs) in [
        ("public", &network.public_subnet_cidrs),
        ("private", &network.private_subnet_cidrs),
    ] {
        for (zone, cidr) in zones.iter().zip(cidrs) {
            let component = subnet(tier, zone);
            b.add(
                &component,
                Kind::Subnet,
                b.name(&component),
                &[
                    ("vpc", "vpc".into()),
                    ("cidr", cidr.clone()),
                    ("zone", format!("{}{zone}", inputs.region)),
                    ("public_ip_on_launch", (tier == "public").to_string()),
                ],
                &["vpc"],
            );
        }
    }
    let public_subnets = list(zones.iter().map(|z| subnet("public", z)));
    let private_subnets = list(zones.iter().map(|z| subnet("private", z)));
    let public_deps: Vec<String> = zones.iter().map(|z| subnet("public", z)).collect();
    let private_deps: Vec<String> = zones.iter().map(|z| subnet("private", z)).collect();
    let public_refs: Vec<&str> = public_deps.iter().map(String::as_str).collect();
    let private_refs: Vec<&str> = private_deps.iter().map(String::as_str).collect();

    b.add(
        "internet-gateway",
        Kind::InternetGateway,
        b.name("igw"),
        &[("vpc", "vpc".into())],
        &["vpc"],
    );
    b.add(
        "nat-ip",
        Kind::ElasticIp,
        b.name("nat-ip"),
        &[("domain", "vpc".into())],
        &[],
    );
    let first_public = subnet("public", &zones[0]);
    b.add(
        "nat-gateway",
        Kind::NatGateway,
        b.name("nat"),
        &[
            ("subnet", first_public.clone()),
            ("elastic_ip", "nat-ip".into()),
        ],
        &[&first_public, "nat-ip", "internet-gateway"],
    );
    let mut public_route_deps = vec!["vpc", "internet-gateway"];
    public_route_deps.extend(&public_refs);
    b.add(
        "route-table-public",
        Kind::RouteTable,
        b.name("public"),
        &[
            ("vpc", "vpc".into()),
            ("default_route", "internet-gateway".into()),
            ("subnets", public_subnets.clone()),
        ],
        &public_route_deps,
    );
    let mut private_route_deps = vec!["vpc", "nat-gateway"];
    private_route_deps.extend(&private_refs);
    b.add(
        "route-table-private",
        Kind::RouteTable,
        b.name("private"),
        &[
            ("vpc", "vpc".into()),
            ("default_route", "nat-gateway".into()),
            ("subnets", private_subnets.clone()),
        ],
        &private_route_deps,
    );

    // Security groups exactly as the original design's "Security Groups" section.
    let port = definition.instances.api_port;
    let ssh: Vec<String> = inputs
        .admin_cidr
        .map(|cidr| format!("tcp 22 from {cidr}"))
        .into_iter()
        .collect();
    let groups: [(&str, &str, Vec<String>, Vec<&str>); 5] = [
        (
            "sg-alb",
            "AccuNode load balancer: HTTP and HTTPS from anywhere",
            vec![
                "tcp 80 from 0.0.0.0/0".into(),
                "tcp 443 from 0.0.0.0/0".into(),
            ],
            vec![],
        ),
        (
            "sg-api",
            "AccuNode API servers: the API port from the load balancer only",
            [vec![format!("tcp {port} from sg-alb")], ssh.clone()].concat(),
            vec!["sg-alb"],
        ),
        (
            "sg-worker",
            "AccuNode workers: no inbound traffic but SSH from the admin range",
            ssh.clone(),
            vec![],
        ),
        (
            "sg-database",
            "AccuNode PostgreSQL: from the API servers and workers only",
            vec![
                "tcp 5432 from sg-api".into(),
                "tcp 5432 from sg-worker".into(),
            ],
            vec!["sg-api", "sg-worker"],
        ),
        (
            "sg-redis",
            "AccuNode Redis: from the API servers and workers only",
            vec![
                "tcp 6379 from sg-api".into(),
                "tcp 6379 from sg-worker".into(),
            ],
            vec!["sg-api", "sg-worker"],
        ),
    ];
    for (component, description, rules, sources) in groups {
        let mut deps = vec!["vpc"];
        deps.extend(sources);
        b.add(
            component,
            Kind::SecurityGroup,
            b.name(component),
            &[
                ("vpc", "vpc".into()),
                ("description", description.into()),
                ("ingress", list(rules)),
            ],
            &deps,
        );
    }

    // IAM: the original design's policies, scoped to this stack's parameters and bucket.
    let bucket = names::bucket(inputs.stack, inputs.account, inputs.region);
    for (tier, s3_actions, metric_namespaces) in [
        // The API publishes the original design's ActiveConnections and ResponseTime.
        ("api", vec!["s3:GetObject"], vec!["AccuNode/API"]),
        ("worker", vec!["s3:GetObject", "s3:PutObject"], vec![]),
    ] {
        let mut statements = vec![
            serde_json::json!({
                "Effect": "Allow",
                "Action": ["ssm:GetParameter", "ssm:GetParameters"],
                "Resource": format!("arn:aws:ssm:*:*:parameter/accunode/{}/*", inputs.stack),
            }),
            serde_json::json!({
                "Effect": "Allow",
                "Action": s3_actions,
                "Resource": format!("arn:aws:s3:::{bucket}/*"),
            }),
            serde_json::json!({
                "Effect": "Allow",
                "Action": ["s3:ListBucket"],
                "Resource": format!("arn:aws:s3:::{bucket}"),
            }),
        ];
        if !metric_namespaces.is_empty() {
            // PutMetricData takes no resource; the namespace condition scopes it.
            statements.push(serde_json::json!({
                "Effect": "Allow",
                "Action": ["cloudwatch:PutMetricData"],
                "Resource": "*",
                "Condition": {"StringEquals": {"cloudwatch:namespace": metric_namespaces}},
            }));
        }
        let policy = serde_json::json!({
            "Version": "2012-10-17",
            "Statement": statements,
        });
        let role = format!("role-{tier}");
        b.add(
            &role,
            Kind::Role,
            b.name(&format!("{tier}-role")),
            &[("policy", policy.to_string())],
            &[],
        );
        b.add(
            &format!("profile-{tier}"),
            Kind::InstanceProfile,
            b.name(&format!("{tier}-profile")),
            &[("role", role.clone())],
            &[&role],
        );
    }

    b.add(
        "model-bucket",
        Kind::Bucket,
        bucket,
        &[
            ("tagged", "true".into()),
            ("versioning", "Enabled".into()),
            ("encryption", "AES256".into()),
            ("public_access", "blocked".into()),
        ],
        &[],
    );

    // Secrets: generated once, before what needs them, so an interrupted run never loses one.
    for key in ["jwt-secret", "database-password"] {
        b.add(
            &format!("param-{key}"),
            Kind::Parameter,
            names::parameter(inputs.stack, key),
            &[("type", "SecureString".into()), ("value", GENERATED.into())],
            &[],
        );
    }

    b.add(
        "db-subnet-group",
        Kind::DbSubnetGroup,
        b.name("db-subnets"),
        &[("subnets", private_subnets.clone())],
        &private_refs,
    );
    let db = &definition.database;
    b.add(
        "database",
        Kind::Database,
        b.name("db"),
        &[
            ("engine", db.engine.clone()),
            ("engine_version", db.engine_version.clone()),
            ("class", phase.database_class.clone()),
            ("storage_gb", phase.database_storage_gb.to_string()),
            ("storage_type", db.storage_type.clone()),
            ("multi_az", phase.database_multi_az.to_string()),
            ("backup_days", phase.database_backup_days.to_string()),
            ("encrypted", "true".into()),
            ("public", "false".into()),
            ("subnet_group", "db-subnet-group".into()),
            ("security_groups", "sg-database".into()),
        ],
        &["db-subnet-group", "sg-database", "param-database-password"],
    );
    b.add(
        "cache-subnet-group",
        Kind::CacheSubnetGroup,
        b.name("redis-subnets"),
        &[("subnets", private_subnets.clone())],
        &private_refs,
    );
    b.add(
        "redis",
        Kind::Redis,
        b.name("redis"),
        &[
            ("engine", definition.redis.engine.clone()),
            ("engine_version", definition.redis.engine_version.clone()),
            ("node_type", phase.redis_node_type.clone()),
            ("nodes", "1".into()),
            ("encrypted_at_rest", "true".into()),
            ("subnet_group", "cache-subnet-group".into()),
            ("security_groups", "sg-redis".into()),
        ],
        &["cache-subnet-group", "sg-redis"],
    );
    let endpoint = |component: &str, attr: &str| {
        existing
            .get(component)
            .and_then(|e| e.attrs.get(attr))
            .cloned()
    };
    let database_url = endpoint("database", "endpoint").map_or(AFTER_APPLY.to_owned(), |host| {
        format!(
            "postgres://{}:****@{host}:5432/{}",
            db.master_username, db.database_name
        )
    });
    let redis_url = endpoint("redis", "endpoint").map_or(AFTER_APPLY.to_owned(), |host| {
        format!("redis://{host}:6379")
    });
    for (key, value, dependency) in [
        ("database-url", database_url, "database"),
        ("redis-url", redis_url, "redis"),
    ] {
        b.add(
            &format!("param-{key}"),
            Kind::Parameter,
            names::parameter(inputs.stack, key),
            &[("type", "SecureString".into()), ("value", value)],
            &[dependency, "param-database-password"],
        );
    }

    // Instances: one launch template per tier, user data from launch-templates/.
    let instances = &definition.instances;
    for tier in ["api", "worker"] {
        let bucket = names::bucket(inputs.stack, inputs.account, inputs.region);
        let user_data = render::user_data(tier, inputs.stack, inputs.region, &bucket);
        b.add(
            &format!("launch-template-{tier}"),
            Kind::LaunchTemplate,
            b.name(&format!("{tier}-template")),
            &[
                ("image", inputs.image_id.to_owned()),
                ("instance_type", instances.instance_type.clone()),
                ("security_groups", format!("sg-{tier}")),
                ("instance_profile", format!("profile-{tier}")),
                (
                    "volume",
                    format!(
                        "{} GB {}",
                        instances.root_volume_gb, instances.root_volume_type
                    ),
                ),
                ("user_data_sha256", render::sha256_hex(user_data.as_bytes())),
            ],
            &[&format!("sg-{tier}"), &format!("profile-{tier}")],
        );
    }

    let lb = &definition.load_balancer;
    b.add(
        "target-group-api",
        Kind::TargetGroup,
        b.name("api-targets"),
        &[
            ("vpc", "vpc".into()),
            ("protocol", "HTTP".into()),
            ("port", port.to_string()),
            ("health_check_path", lb.health_check_path.clone()),
            (
                "health_check_interval",
                lb.health_check_interval_secs.to_string(),
            ),
            (
                "health_check_timeout",
                lb.health_check_timeout_secs.to_string(),
            ),
            ("healthy_threshold", lb.healthy_threshold.to_string()),
            ("unhealthy_threshold", lb.unhealthy_threshold.to_string()),
            (
                "deregistration_delay",
                lb.deregistration_delay_secs.to_string(),
            ),
        ],
        &["vpc"],
    );
    let mut alb_deps = vec!["sg-alb", "internet-gateway"];
    alb_deps.extend(&public_refs);
    b.add(
        "load-balancer",
        Kind::LoadBalancer,
        b.name("alb"),
        &[
            ("scheme", "internet-facing".into()),
            ("subnets", public_subnets.clone()),
            ("security_groups", "sg-alb".into()),
        ],
        &alb_deps,
    );
    match inputs.certificate_arn {
        Some(certificate) => {
            b.add(
                "listener-https",
                Kind::Listener,
                b.name("https"),
                &[
                    ("port", "443".into()),
                    ("protocol", "HTTPS".into()),
                    ("certificate", certificate.to_owned()),
                    ("action", "forward target-group-api".into()),
                ],
                &["load-balancer", "target-group-api"],
            );
            b.add(
                "listener-http",
                Kind::Listener,
                b.name("http"),
                &[
                    ("port", "80".into()),
                    ("protocol", "HTTP".into()),
                    ("action", "redirect https 443".into()),
                ],
                &["load-balancer"],
            );
        }
        None => b.add(
            "listener-http",
            Kind::Listener,
            b.name("http"),
            &[
                ("port", "80".into()),
                ("protocol", "HTTP".into()),
                ("action", "forward target-group-api".into()),
            ],
            &["load-balancer", "target-group-api"],
        ),
    }

    let scaling = &definition.autoscaling;
    for (tier, min, max, desired) in [
        ("api", scaling.api_min, scaling.api_max, phase.api_desired),
        (
            "worker",
            scaling.worker_min,
            scaling.worker_max,
            phase.worker_desired,
        ),
    ] {
        let template = format!("launch-template-{tier}");
        let mut props = vec![
            ("launch_template", template.clone()),
            ("min", min.to_string()),
            ("max", max.to_string()),
            ("desired", desired.to_string()),
            ("subnets", private_subnets.clone()),
            ("cooldown", scaling.cooldown_secs.to_string()),
            ("health_check_grace", "300".to_owned()),
        ];
        let mut deps = vec![template.as_str(), "route-table-private"];
        if tier == "api" {
            props.push(("health_check_type", "ELB".into()));
            props.push(("target_groups", "target-group-api".into()));
            deps.push("target-group-api");
        } else {
            props.push(("health_check_type", "EC2".into()));
            props.push(("target_groups", String::new()));
        }
        deps.extend(&private_refs);
        b.add(
            &format!("asg-{tier}"),
            Kind::AutoScalingGroup,
            b.name(&format!("{tier}-asg")),
            &props,
            &deps,
        );
    }

    b.add(
        "policy-api-cpu",
        Kind::ScalingPolicy,
        b.name("api-cpu"),
        &[
            ("group", "asg-api".into()),
            ("type", "TargetTrackingScaling".into()),
            (
                "target",
                format!(
                    "ASGAverageCPUUtilization {}",
                    number(scaling.api_cpu_target)
                ),
            ),
            ("warmup", scaling.cooldown_secs.to_string()),
        ],
        &["asg-api"],
    );
    b.add(
        "policy-worker-scale-up",
        Kind::ScalingPolicy,
        b.name("worker-scale-up"),
        &[
            ("group", "asg-worker".into()),
            ("type", "StepScaling".into()),
            ("steps", scaling.worker_scale_up_steps.clone()),
            ("warmup", scaling.cooldown_secs.to_string()),
        ],
        &["asg-worker"],
    );
    b.add(
        "policy-worker-scale-down",
        Kind::ScalingPolicy,
        b.name("worker-scale-down"),
        &[
            ("group", "asg-worker".into()),
            ("type", "StepScaling".into()),
            ("steps", scaling.worker_scale_down_steps.clone()),
            ("warmup", scaling.cooldown_secs.to_string()),
        ],
        &["asg-worker"],
    );

    for alarm in &definition.alarms {
        let (dimensions, mut deps) = match alarm.dimension {
            Some(AlarmDimension::LoadBalancer) => (
                "LoadBalancer=load-balancer".to_owned(),
                vec!["load-balancer"],
            ),
            Some(AlarmDimension::ApiGroup) => {
                ("AutoScalingGroupName=asg-api".to_owned(), vec!["asg-api"])
            }
            Some(AlarmDimension::WorkerGroup) => (
                "AutoScalingGroupName=asg-worker".to_owned(),
                vec!["asg-worker"],
            ),
            None => (String::new(), vec![]),
        };
        let action = alarm
            .action
            .as_ref()
            .map(|a| format!("policy-{a}"))
            .unwrap_or_default();
        if !action.is_empty() {
            deps.push(&action);
        }
        b.add(
            &format!("alarm-{}", alarm.name),
            Kind::Alarm,
            format!("{}-{}", inputs.stack, alarm.name),
            &[
                ("description", alarm.description.clone()),
                (
                    "metric",
                    format!(
                        "{} {} {} {}s x{}",
                        alarm.namespace,
                        alarm.metric,
                        alarm.statistic,
                        alarm.period_secs,
                        alarm.evaluation_periods
                    ),
                ),
                (
                    "condition",
                    format!("{} {}", alarm.comparison, number(alarm.threshold)),
                ),
                ("dimensions", dimensions),
                ("actions", action.clone()),
            ],
            &deps,
        );
    }

    b.add(
        "dashboard",
        Kind::Dashboard,
        format!("{}-overview", inputs.stack),
        &[(
            "body_sha256",
            render::sha256_hex(
                render::dashboard_body(inputs.stack, inputs.region, &dashboard_refs(existing))
                    .as_bytes(),
            ),
        )],
        &[
            "load-balancer",
            "asg-api",
            "asg-worker",
            "database",
            "redis",
        ],
    );
    b.resources
}

/// The live identifiers the dashboard's widgets name (the load balancer's ARN suffix).
pub fn dashboard_refs(existing: &BTreeMap<String, Existing>) -> BTreeMap<String, String> {
    existing
        .iter()
        .filter_map(|(component, e)| {
            e.attrs
                .get("metric_dimension")
                .map(|d| (component.clone(), d.clone()))
        })
        .collect()
}
