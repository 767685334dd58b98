//! The shapes desired and existing state share: a [`Resource`] the stack
//! should have (what each kind's `desired` makes from the phase), an
//! [`Existing`] one (what its discovery reads back), the kinds, and the names
//! and URLs several kinds agree on. Pure: no AWS call happens here.
//!
//! Properties are the text plans show and compare, so that discovery can
//! produce the same shape from describe calls; a property that refers to
//! another resource holds that resource's component name (discovery maps AWS
//! ids back to component names). Kinds whose text has structure make and
//! parse it with a type in their own file (a security group's `Rule`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::render;

/// Every resource carries these two tags; they are the only state the provisioner keeps.
pub const STACK_TAG: &str = "accunode:stack";
pub const COMPONENT_TAG: &str = "accunode:component";
/// A value that is only known once the resources it derives from exist.
pub const AFTER_APPLY: &str = "(known after apply)";
/// What a generated secret shows in plans: its value is never read back or printed.
pub const GENERATED: &str = "(generated once, never shown)";

/// A kind of resource; everything about it is in its file under
/// `resources/`, which `Kind::home` finds.
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

pub type Props = BTreeMap<String, String>;

/// The API's two colours (blue-green): each its own target group and Auto
/// Scaling group, both always declared. The listener forwards to one, the
/// live colour; the other idles at zero instances until a deploy brings the
/// next release up on it and switches the listener over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Colour {
    Blue,
    Green,
}

impl Colour {
    pub const BOTH: [Colour; 2] = [Colour::Blue, Colour::Green];

    pub fn name(self) -> &'static str {
        match self {
            Colour::Blue => "blue",
            Colour::Green => "green",
        }
    }

    pub fn other(self) -> Colour {
        match self {
            Colour::Blue => Colour::Green,
            Colour::Green => Colour::Blue,
        }
    }

    /// "api-blue": the tier its Auto Scaling group is named after.
    pub fn tier(self) -> String {
        format!("api-{}", self.name())
    }

    /// Its Auto Scaling group's component, "asg-api-blue".
    pub fn group(self) -> String {
        format!("asg-api-{}", self.name())
    }

    /// Its target group's component, "target-group-api-blue".
    pub fn target_group(self) -> String {
        format!("target-group-api-{}", self.name())
    }

    /// The colour whose target group `component` is, if it is one.
    pub fn of_target_group(component: &str) -> Option<Colour> {
        Colour::BOTH
            .into_iter()
            .find(|colour| colour.target_group() == component)
    }
}

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
    /// (`releases/<version>/<binary>` and its `SHA256SUMS`, at boot), the bundles synced at boot
    /// (`bundles/`), and bundles published with `accunode model push` (`models/`,
    /// for `ML_MODEL_PATH=s3://<bucket>/models`).
    pub const INSTANCE_READS: &[&str] = &["releases", "bundles", "models"];
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
