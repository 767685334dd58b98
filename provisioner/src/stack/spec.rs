//! Desired state: a phase of the definition turned into the list of resources
//! the stack should have, each with the properties that plan compares and the
//! components it depends on. Pure: no AWS call happens here.
//!
//! Properties are strings so that discovery can produce the same shape from
//! describe calls; a property that refers to another resource holds that
//! resource's component name (discovery maps AWS ids back to component names).

use std::collections::BTreeMap;

use accunode_core::published_metrics;
use serde::Serialize;

use super::definition::{AlarmDimension, Definition, Phase};
use super::properties::Rule;
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
    /// The bucket's prefix for bulk-upload files (`BULK_UPLOAD_PATH`): the API
    /// writes and reads them, workers read them, a lifecycle rule expires them.
    pub const UPLOADS_PREFIX: &str = "uploads";
    /// What both tiers read from the bucket besides uploads: the release binary
    /// (`releases/current/<binary>`, at boot), the bundles synced at boot
    /// (`bundles/`), and bundles published with `accunode model push` (`models/`,
    /// for `ML_MODEL_PATH=s3://<bucket>/models`).
    pub const INSTANCE_READS: &[&str] = &["releases", "bundles", "models"];
}

/// A bucket lifecycle rule as plans show it: what it applies to and after how
/// many days it expires current objects, removes old versions and aborts
/// unfinished multipart uploads (a part AWS does not have is left out).
pub fn lifecycle_rule(
    prefix: &str,
    expire_days: Option<i32>,
    noncurrent_days: Option<i32>,
    incomplete_upload_days: Option<i32>,
) -> String {
    let parts: Vec<String> = [
        ("expire", expire_days),
        ("old versions", noncurrent_days),
        ("unfinished uploads", incomplete_upload_days),
    ]
    .into_iter()
    .filter_map(|(what, days)| days.map(|days| format!("{what} after {days} d")))
    .collect();
    let prefix = if prefix.is_empty() {
        "(whole bucket)"
    } else {
        prefix
    };
    format!("{prefix}: {}", parts.join(", "))
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

/// What stands for a password in a URL that is shown.
pub const MASKED: &str = "****";

/// The instances' DATABASE_URL: TLS, with RDS's certificate verified against
/// the region's RDS CAs that user data installs.
pub fn database_url(user: &str, password: &str, host: &str, database: &str) -> String {
    format!(
        "postgres://{user}:{password}@{host}:5432/{database}?sslmode=verify-full&sslrootcert={}",
        render::RDS_CA_PATH
    )
}

/// The instances' REDIS_URL: TLS (ElastiCache's certificate is verified against
/// the system's roots) with the AUTH token as the password.
pub fn redis_url(auth_token: &str, host: &str) -> String {
    format!("rediss://:{auth_token}@{host}:6379")
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
    let ssh: Vec<Rule> = inputs
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
            ssh.clone(),
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
    for (component, description, rules) in groups {
        // A group waits for the groups its rules admit traffic from.
        let mut deps = vec!["vpc"];
        deps.extend(rules.iter().filter_map(Rule::source_group));
        b.add(
            component,
            Kind::SecurityGroup,
            b.name(component),
            &[
                ("vpc", "vpc".into()),
                ("description", description.into()),
                ("ingress", list(rules.iter().map(Rule::to_string))),
            ],
            &deps,
        );
    }

    // IAM: the original design's policies, scoped to this stack's parameters and
    // bucket, and narrowed to the prefixes each tier reads or writes.
    let bucket = names::bucket(inputs.stack, inputs.account, inputs.region);
    let objects = |prefixes: &[&str]| -> Vec<String> {
        prefixes
            .iter()
            .map(|prefix| format!("arn:aws:s3:::{bucket}/{prefix}/*"))
            .collect()
    };
    for (tier, reads, writes, metric_namespace) in [
        // The API reads what the instances run and serve, streams bulk uploads
        // in (multipart) and their results back out, and publishes AccuNode/API.
        (
            "api",
            [names::INSTANCE_READS, &[names::UPLOADS_PREFIX]].concat(),
            vec![names::UPLOADS_PREFIX],
            published_metrics::API_NAMESPACE,
        ),
        // Workers read the same and the uploaded files, write nothing to the
        // bucket, and publish AccuNode/Workers.
        (
            "worker",
            [names::INSTANCE_READS, &[names::UPLOADS_PREFIX]].concat(),
            vec![],
            published_metrics::WORKER_NAMESPACE,
        ),
    ] {
        let mut statements = vec![
            serde_json::json!({
                "Effect": "Allow",
                "Action": ["ssm:GetParameter", "ssm:GetParameters"],
                "Resource": format!("arn:aws:ssm:*:*:parameter/accunode/{}/*", inputs.stack),
            }),
            serde_json::json!({
                "Effect": "Allow",
                "Action": ["s3:GetObject"],
                "Resource": objects(&reads),
            }),
        ];
        if !writes.is_empty() {
            statements.push(serde_json::json!({
                "Effect": "Allow",
                "Action": ["s3:PutObject", "s3:AbortMultipartUpload"],
                "Resource": objects(&writes),
            }));
        }
        statements.extend([
            serde_json::json!({
                "Effect": "Allow",
                "Action": ["s3:ListBucket"],
                "Resource": format!("arn:aws:s3:::{bucket}"),
            }),
            // PutMetricData takes no resource; the namespace condition scopes it.
            serde_json::json!({
                "Effect": "Allow",
                "Action": ["cloudwatch:PutMetricData"],
                "Resource": "*",
                "Condition": {"StringEquals": {"cloudwatch:namespace": [metric_namespace]}},
            }),
        ]);
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
            (
                "lifecycle",
                lifecycle_rule(
                    &format!("{}/", names::UPLOADS_PREFIX),
                    Some(definition.bucket.uploads_expire_days),
                    Some(definition.bucket.uploads_noncurrent_days),
                    Some(definition.bucket.incomplete_upload_days),
                ),
            ),
        ],
        &[],
    );

    // Secrets: generated once, before what needs them, so an interrupted run never loses one.
    for key in ["jwt-secret", "database-password", "redis-auth-token"] {
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
            ("encrypted_in_transit", "true".into()),
            ("auth_token", "true".into()),
            ("subnet_group", "cache-subnet-group".into()),
            ("security_groups", "sg-redis".into()),
        ],
        &["cache-subnet-group", "sg-redis", "param-redis-auth-token"],
    );
    let endpoint = |component: &str, attr: &str| {
        existing
            .get(component)
            .and_then(|e| e.attrs.get(attr))
            .cloned()
    };
    let database_url = endpoint("database", "endpoint").map_or(AFTER_APPLY.to_owned(), |host| {
        database_url(&db.master_username, MASKED, &host, &db.database_name)
    });
    let redis_url = endpoint("redis", "endpoint")
        .map_or(AFTER_APPLY.to_owned(), |host| redis_url(MASKED, &host));
    for (key, value, dependencies) in [
        (
            "database-url",
            database_url,
            ["database", "param-database-password"],
        ),
        ("redis-url", redis_url, ["redis", "param-redis-auth-token"]),
    ] {
        b.add(
            &format!("param-{key}"),
            Kind::Parameter,
            names::parameter(inputs.stack, key),
            &[("type", "SecureString".into()), ("value", value)],
            &dependencies,
        );
    }

    // Instances: one launch template per tier, user data from launch-templates/.
    let instances = &definition.instances;
    for tier in ["api", "worker"] {
        let bucket = names::bucket(inputs.stack, inputs.account, inputs.region);
        let uploads = format!("s3://{bucket}/{}", names::UPLOADS_PREFIX);
        let user_data = render::user_data(tier, inputs.stack, inputs.region, &bucket, &uploads);
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
            // The value itself, not a component: the stack's name.
            Some(AlarmDimension::Stack) => (
                format!("{}={}", published_metrics::STACK_DIMENSION, inputs.stack),
                vec![],
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

#[cfg(test)]
mod tests {
    use accunode_core::published_metrics::{self, STACK_DIMENSION};

    use super::*;
    use crate::stack::definition::BUILT_IN;

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
        let mut metric = alarm.props["metric"].split(' ');
        let (namespace, name) = (metric.next().unwrap(), metric.next().unwrap());
        let dimensions = alarm.props["dimensions"]
            .split(',')
            .filter(|d| !d.is_empty())
            .map(|d| {
                let (name, value) = d.split_once('=').unwrap();
                (name.to_owned(), value.to_owned())
            })
            .collect();
        (
            format!("alarm {}", alarm.name),
            namespace.to_owned(),
            name.to_owned(),
            dimensions,
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
            let body = render::dashboard_body(STACK, "us-east-1", &dashboard_refs(&none));
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

    /// The S3 statements of a tier's policy: action → resources.
    fn s3_grants(resources: &[Resource], tier: &str) -> BTreeMap<String, Vec<String>> {
        let role = resources
            .iter()
            .find(|r| r.component == format!("role-{tier}"))
            .unwrap();
        let policy: serde_json::Value = serde_json::from_str(&role.props["policy"]).unwrap();
        let mut grants: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for statement in policy["Statement"].as_array().unwrap() {
            let targets: Vec<String> = match &statement["Resource"] {
                serde_json::Value::String(one) => vec![one.clone()],
                many => many
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r.as_str().unwrap().to_owned())
                    .collect(),
            };
            for action in statement["Action"].as_array().unwrap() {
                let action = action.as_str().unwrap();
                if action.starts_with("s3:") {
                    grants
                        .entry(action.to_owned())
                        .or_default()
                        .extend(targets.iter().cloned());
                }
            }
        }
        grants
    }

    #[test]
    fn the_api_writes_uploads_and_both_tiers_read_only_their_prefixes() {
        let definition = Definition::parse(BUILT_IN).unwrap();
        let resources = desired(
            &definition,
            definition.phase(1).unwrap(),
            &inputs(),
            &BTreeMap::new(),
        );
        let bucket = names::bucket(STACK, "123456789012", "us-east-1");
        let objects = |prefixes: &[&str]| -> Vec<String> {
            prefixes
                .iter()
                .map(|p| format!("arn:aws:s3:::{bucket}/{p}/*"))
                .collect()
        };
        let reads = objects(&["releases", "bundles", "models", "uploads"]);
        let api = s3_grants(&resources, "api");
        assert_eq!(api["s3:GetObject"], reads);
        assert_eq!(api["s3:PutObject"], objects(&["uploads"]));
        assert_eq!(api["s3:AbortMultipartUpload"], objects(&["uploads"]));
        let worker = s3_grants(&resources, "worker");
        assert_eq!(worker["s3:GetObject"], reads);
        assert!(!worker.contains_key("s3:PutObject"), "{worker:?}");
        assert!(
            !worker.contains_key("s3:AbortMultipartUpload"),
            "{worker:?}"
        );
        for grants in [&api, &worker] {
            assert!(
                grants
                    .values()
                    .flatten()
                    .all(|arn| arn != &format!("arn:aws:s3:::{bucket}/*")),
                "no tier gets every object of the bucket: {grants:?}"
            );
        }

        let model_bucket = resources
            .iter()
            .find(|r| r.component == "model-bucket")
            .unwrap();
        assert_eq!(
            model_bucket.props["lifecycle"],
            "uploads/: expire after 30 d, old versions after 1 d, unfinished uploads after 1 d"
        );
    }
}
