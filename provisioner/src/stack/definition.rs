//! The phase definition file (`provisioner/phases.toml`): what each cost phase
//! runs, the alarms, and the dated price table. Read once, checked whole, so a
//! bad file fails before any AWS call with the file and the field named.

use std::collections::BTreeMap;
use std::path::Path;

use accunode_core::published_metrics;
use anyhow::{Context, bail};
use serde::Deserialize;

/// The definition compiled into the binary.
pub const BUILT_IN: &str = include_str!("../../phases.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Definition {
    pub version: u32,
    pub network: Network,
    pub instances: Instances,
    pub load_balancer: LoadBalancer,
    pub autoscaling: Autoscaling,
    pub database: Database,
    pub redis: Redis,
    #[serde(default)]
    pub bucket: Bucket,
    #[serde(rename = "phase")]
    pub phases: Vec<Phase>,
    #[serde(rename = "alarm")]
    pub alarms: Vec<Alarm>,
    pub prices: Prices,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    pub vpc_cidr: String,
    pub availability_zones: Vec<String>,
    pub public_subnet_cidrs: Vec<String>,
    pub private_subnet_cidrs: Vec<String>,
    pub resolved: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Instances {
    pub instance_type: String,
    pub root_volume_gb: i32,
    pub root_volume_type: String,
    pub resolved_volume: String,
    pub image_parameter: String,
    pub api_port: i32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadBalancer {
    pub health_check_path: String,
    pub health_check_interval_secs: i32,
    pub health_check_timeout_secs: i32,
    pub healthy_threshold: i32,
    pub unhealthy_threshold: i32,
    pub deregistration_delay_secs: i32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Autoscaling {
    pub api_min: i32,
    pub api_max: i32,
    pub worker_min: i32,
    pub worker_max: i32,
    pub cooldown_secs: i32,
    pub api_cpu_target: f64,
    pub worker_scale_up_steps: String,
    pub worker_scale_down_steps: String,
    pub resolved_steps: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Database {
    pub engine: String,
    pub engine_version: String,
    pub master_username: String,
    pub database_name: String,
    pub storage_type: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Redis {
    pub engine: String,
    pub engine_version: String,
    pub resolved: String,
}

/// The stack's bucket: models, releases and, under `uploads/`, the bulk-upload
/// files, which a lifecycle rule removes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bucket {
    /// An uploaded file is deleted this many days after its upload.
    pub uploads_expire_days: i32,
    /// A replaced or deleted upload's old version is removed this many days later.
    pub uploads_noncurrent_days: i32,
    /// A multipart upload never completed (an API killed mid-upload) is aborted after this many days.
    pub incomplete_upload_days: i32,
}

impl Default for Bucket {
    /// What a definition without a `[bucket]` table gets (the built-in one says the same).
    fn default() -> Self {
        Bucket {
            uploads_expire_days: 30,
            uploads_noncurrent_days: 1,
            incomplete_upload_days: 1,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Phase {
    pub number: u8,
    pub name: String,
    pub api_desired: i32,
    pub worker_desired: i32,
    pub database_class: String,
    pub database_storage_gb: i32,
    pub database_multi_az: bool,
    pub database_backup_days: i32,
    pub redis_node_type: String,
    pub seed_total_stated: f64,
    pub seed_total_summed: f64,
    #[serde(default)]
    pub resolved: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alarm {
    pub name: String,
    pub description: String,
    pub namespace: String,
    pub metric: String,
    pub statistic: String,
    pub period_secs: i32,
    pub evaluation_periods: i32,
    pub threshold: f64,
    pub comparison: String,
    #[serde(default)]
    pub dimension: Option<AlarmDimension>,
    #[serde(default)]
    pub action: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AlarmDimension {
    LoadBalancer,
    ApiGroup,
    WorkerGroup,
    /// `Stack=<stack name>`, the one dimension of every metric the API and
    /// the worker publish (`accunode_core::published_metrics`).
    Stack,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prices {
    pub date: String,
    pub region: String,
    pub hours_per_month: f64,
    pub ec2_hourly: BTreeMap<String, f64>,
    pub ebs_gp3_gb_month: f64,
    pub rds_hourly: BTreeMap<String, f64>,
    pub rds_gp2_gb_month: f64,
    pub elasticache_hourly: BTreeMap<String, f64>,
    pub alb_hourly: f64,
    pub alb_lcu_hourly: f64,
    pub nat_gateway_hourly: f64,
    pub public_ipv4_hourly: f64,
    pub s3_gb_month: f64,
    pub s3_expected_gb: f64,
    pub cloudwatch_alarm_month: f64,
    pub cloudwatch_dashboard_month: f64,
}

const STATISTICS: [&str; 5] = ["Average", "Sum", "Minimum", "Maximum", "SampleCount"];
const COMPARISONS: [&str; 4] = [
    "GreaterThanThreshold",
    "GreaterThanOrEqualToThreshold",
    "LessThanThreshold",
    "LessThanOrEqualToThreshold",
];
/// The namespaces of the metrics the API and the worker publish.
const OWN_NAMESPACES: &str = "AccuNode/";
/// The scaling policies an alarm may trigger (`resources/scaling_policy.rs`).
pub const ALARM_ACTIONS: [&str; 2] = ["worker-scale-up", "worker-scale-down"];

impl Definition {
    /// Every contradiction of the original design this definition resolves, with its reason.
    pub fn resolutions<'a>(&'a self, phase: &'a Phase) -> Vec<&'a str> {
        let mut notes = vec![
            self.network.resolved.as_str(),
            self.instances.resolved_volume.as_str(),
            self.autoscaling.resolved_steps.as_str(),
            self.redis.resolved.as_str(),
        ];
        notes.extend(phase.resolved.as_deref());
        notes
    }

    /// The built-in definition, or the file given with `--definition`.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Definition> {
        let (text, origin) = match path {
            Some(path) => (
                std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read the definition {}", path.display()))?,
                path.display().to_string(),
            ),
            None => (BUILT_IN.to_owned(), "the built-in phases.toml".to_owned()),
        };
        Definition::parse(&text).with_context(|| format!("{origin} is not a valid definition"))
    }

    pub fn parse(text: &str) -> anyhow::Result<Definition> {
        let definition: Definition = toml::from_str(text)?;
        definition.check()?;
        Ok(definition)
    }

    pub fn phase(&self, number: u8) -> anyhow::Result<&Phase> {
        self.phases
            .iter()
            .find(|phase| phase.number == number)
            .with_context(|| {
                let known: Vec<String> = self.phases.iter().map(|p| p.number.to_string()).collect();
                format!(
                    "--phase {number}: the definition has phases {}",
                    known.join(", ")
                )
            })
    }

    fn check(&self) -> anyhow::Result<()> {
        if self.version != 1 {
            bail!(
                "version: {} is not supported (this accunode reads version 1)",
                self.version
            );
        }
        let network = &self.network;
        let zones = network.availability_zones.len();
        if zones < 2 {
            bail!("network.availability_zones: the load balancer needs at least two zones");
        }
        for (field, cidrs) in [
            ("network.public_subnet_cidrs", &network.public_subnet_cidrs),
            (
                "network.private_subnet_cidrs",
                &network.private_subnet_cidrs,
            ),
        ] {
            if cidrs.len() != zones {
                bail!(
                    "{field}: {} entries for {zones} availability zones",
                    cidrs.len()
                );
            }
        }
        let scaling = &self.autoscaling;
        for phase in &self.phases {
            let at = format!("phase {}", phase.number);
            if !(scaling.api_min..=scaling.api_max).contains(&phase.api_desired) {
                bail!(
                    "{at}: api_desired {} is outside autoscaling.api_min..api_max ({}..{})",
                    phase.api_desired,
                    scaling.api_min,
                    scaling.api_max
                );
            }
            if !(scaling.worker_min..=scaling.worker_max).contains(&phase.worker_desired) {
                bail!(
                    "{at}: worker_desired {} is outside autoscaling.worker_min..worker_max ({}..{})",
                    phase.worker_desired,
                    scaling.worker_min,
                    scaling.worker_max
                );
            }
            if !self.prices.rds_hourly.contains_key(&phase.database_class) {
                bail!(
                    "{at}: database_class {} has no price in prices.rds_hourly",
                    phase.database_class
                );
            }
            if !self
                .prices
                .elasticache_hourly
                .contains_key(&phase.redis_node_type)
            {
                bail!(
                    "{at}: redis_node_type {} has no price in prices.elasticache_hourly",
                    phase.redis_node_type
                );
            }
            if !(20..=65536).contains(&phase.database_storage_gb) {
                bail!("{at}: database_storage_gb must be 20 to 65536 (RDS gp2 limits)");
            }
        }
        if !self
            .prices
            .ec2_hourly
            .contains_key(&self.instances.instance_type)
        {
            bail!(
                "instances.instance_type {} has no price in prices.ec2_hourly",
                self.instances.instance_type
            );
        }
        let mut names = std::collections::BTreeSet::new();
        for alarm in &self.alarms {
            if !names.insert(alarm.name.as_str()) {
                bail!("alarm {}: defined twice", alarm.name);
            }
            if !STATISTICS.contains(&alarm.statistic.as_str()) {
                bail!(
                    "alarm {}: statistic must be one of {}",
                    alarm.name,
                    STATISTICS.join(", ")
                );
            }
            if !COMPARISONS.contains(&alarm.comparison.as_str()) {
                bail!(
                    "alarm {}: comparison must be one of {}",
                    alarm.name,
                    COMPARISONS.join(", ")
                );
            }
            if let Some(action) = &alarm.action
                && !ALARM_ACTIONS.contains(&action.as_str())
            {
                bail!(
                    "alarm {}: action must be one of {}",
                    alarm.name,
                    ALARM_ACTIONS.join(", ")
                );
            }
            // Plans show an alarm's metric as "namespace metric statistic …",
            // words apart (`resources/alarm.rs` reads it back that way).
            for (field, value) in [("namespace", &alarm.namespace), ("metric", &alarm.metric)] {
                if value.is_empty() || value.chars().any(char::is_whitespace) {
                    bail!(
                        "alarm {}: {field} {value:?} must be one word, without spaces",
                        alarm.name
                    );
                }
            }
            if alarm.period_secs < 60 || alarm.period_secs % 60 != 0 {
                bail!("alarm {}: period_secs must be a multiple of 60", alarm.name);
            }
            check_published(alarm)?;
        }
        let bucket = &self.bucket;
        for (field, days) in [
            ("bucket.uploads_expire_days", bucket.uploads_expire_days),
            (
                "bucket.uploads_noncurrent_days",
                bucket.uploads_noncurrent_days,
            ),
            (
                "bucket.incomplete_upload_days",
                bucket.incomplete_upload_days,
            ),
        ] {
            if days < 1 {
                bail!("{field}: must be at least 1 day (S3 lifecycle rules count whole days)");
            }
        }
        Ok(())
    }
}

/// An alarm on our own metrics (namespaces `AccuNode/…`) must read a metric the
/// API or the worker publishes, with the dimension they publish it with; the
/// `Stack` dimension belongs to those metrics only.
fn check_published(alarm: &Alarm) -> anyhow::Result<()> {
    if alarm.namespace.starts_with(OWN_NAMESPACES) {
        if !published_metrics::is_published(&alarm.namespace, &alarm.metric) {
            let published: Vec<String> = published_metrics::API_METRICS
                .iter()
                .chain(published_metrics::WORKER_METRICS)
                .map(|m| format!("{} {}", m.namespace, m.name))
                .collect();
            bail!(
                "alarm {}: {} {} is not a metric the API or the worker publishes (they publish {})",
                alarm.name,
                alarm.namespace,
                alarm.metric,
                published.join(", ")
            );
        }
        if alarm.dimension != Some(AlarmDimension::Stack) {
            bail!(
                "alarm {}: {} metrics are published with the dimension {}: set dimension = \"stack\"",
                alarm.name,
                alarm.namespace,
                published_metrics::STACK_DIMENSION
            );
        }
    } else if alarm.dimension == Some(AlarmDimension::Stack) {
        bail!(
            "alarm {}: only {OWN_NAMESPACES}* metrics carry the dimension {}",
            alarm.name,
            published_metrics::STACK_DIMENSION
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_definition_is_valid_and_has_three_phases() {
        let definition = Definition::parse(BUILT_IN).unwrap();
        let numbers: Vec<u8> = definition.phases.iter().map(|p| p.number).collect();
        assert_eq!(numbers, [1, 2, 3]);
        assert_eq!(definition.phase(2).unwrap().api_desired, 3);
        assert!(
            definition
                .phase(4)
                .unwrap_err()
                .to_string()
                .contains("--phase 4")
        );
    }

    #[test]
    fn a_bad_definition_names_the_field() {
        let broken = BUILT_IN.replace("api_desired = 3", "api_desired = 9");
        let error = Definition::parse(&broken).unwrap_err().to_string();
        assert!(error.contains("phase 2: api_desired 9"), "{error}");

        let unknown = BUILT_IN.replace("api_port = 8000", "api_port = 8000\nport = 1");
        let error = format!("{:#}", Definition::parse(&unknown).unwrap_err());
        assert!(error.contains("unknown field `port`"), "{error}");
    }

    #[test]
    fn an_alarm_on_our_metrics_must_read_a_published_one_by_stack() {
        let misspelt = BUILT_IN.replace("metric = \"TaskWaitTime\"", "metric = \"TaskWaitTimes\"");
        let error = Definition::parse(&misspelt).unwrap_err().to_string();
        assert!(
            error.contains(
                "alarm WorkerWaitScaleUp: AccuNode/Workers TaskWaitTimes is not a metric"
            ),
            "{error}"
        );

        let without = BUILT_IN.replace(
            "threshold = 60.0\ncomparison = \"GreaterThanThreshold\"\ndimension = \"stack\"\n",
            "threshold = 60.0\ncomparison = \"GreaterThanThreshold\"\n",
        );
        let error = Definition::parse(&without).unwrap_err().to_string();
        assert!(
            error.contains("alarm WorkerWaitScaleUp") && error.contains("dimension = \"stack\""),
            "{error}"
        );

        let aws_by_stack =
            BUILT_IN.replace("dimension = \"worker_group\"", "dimension = \"stack\"");
        let error = Definition::parse(&aws_by_stack).unwrap_err().to_string();
        assert!(
            error.contains("alarm WorkerHighCpu: only AccuNode/"),
            "{error}"
        );

        let spaced = BUILT_IN.replace(
            "metric = \"CPUUtilization\"",
            "metric = \"CPU Utilization\"",
        );
        let error = Definition::parse(&spaced).unwrap_err().to_string();
        assert!(
            error.contains("metric \"CPU Utilization\" must be one word"),
            "{error}"
        );

        // A definition written before the [bucket] table gets the built-in's values.
        let start = BUILT_IN.find("[bucket]\n").unwrap();
        let end = start + BUILT_IN[start..].find("\n\n").unwrap();
        let older = Definition::parse(&BUILT_IN.replace(&BUILT_IN[start..end], "")).unwrap();
        let built_in = Definition::parse(BUILT_IN).unwrap().bucket;
        assert_eq!(
            (
                older.bucket.uploads_expire_days,
                older.bucket.uploads_noncurrent_days,
                older.bucket.incomplete_upload_days
            ),
            (
                built_in.uploads_expire_days,
                built_in.uploads_noncurrent_days,
                built_in.incomplete_upload_days
            )
        );
        let zero = BUILT_IN.replace("uploads_expire_days = 30", "uploads_expire_days = 0");
        let error = Definition::parse(&zero).unwrap_err().to_string();
        assert!(error.contains("bucket.uploads_expire_days"), "{error}");
    }
}
