//! The AWS clients of the stack commands, built from the standard SDK
//! configuration chain (env, profile, `AWS_ENDPOINT_URL`), and the counter that
//! every one of them reports its calls to, so a run can say how many calls it
//! made and how many of them changed something.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use aws_config::BehaviorVersion;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

/// Where and as whom the commands talk to AWS.
#[derive(Debug, Clone, Default)]
pub struct Target {
    pub region: Option<String>,
    pub profile: Option<String>,
    pub endpoint_url: Option<String>,
}

/// Counts calls by operation; "mutating" is every operation that is not a read
/// (Describe*, List*, Get*, Head*).
#[derive(Debug, Default)]
pub struct CallCounter {
    total: AtomicU64,
    mutating: AtomicU64,
    by_operation: Mutex<BTreeMap<String, u64>>,
}

impl CallCounter {
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    pub fn mutating(&self) -> u64 {
        self.mutating.load(Ordering::Relaxed)
    }

    /// The mutating operations made, `service:Operation` → count.
    pub fn mutating_operations(&self) -> BTreeMap<String, u64> {
        let calls = self
            .by_operation
            .lock()
            .expect("the call counter is never poisoned");
        calls
            .iter()
            .filter(|(operation, _)| {
                is_mutating(operation.split(':').next_back().unwrap_or_default())
            })
            .map(|(operation, count)| (operation.clone(), *count))
            .collect()
    }

    fn record(&self, service: &str, operation: &str) {
        self.total.fetch_add(1, Ordering::Relaxed);
        if is_mutating(operation) {
            self.mutating.fetch_add(1, Ordering::Relaxed);
        }
        let mut calls = self
            .by_operation
            .lock()
            .expect("the call counter is never poisoned");
        *calls.entry(format!("{service}:{operation}")).or_default() += 1;
    }
}

fn is_mutating(operation: &str) -> bool {
    !["Describe", "List", "Get", "Head"]
        .iter()
        .any(|read| operation.starts_with(read))
}

#[derive(Debug, Clone)]
struct CountingInterceptor(Arc<CallCounter>);

impl Intercept for CountingInterceptor {
    fn name(&self) -> &'static str {
        "CountingInterceptor"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(metadata) = cfg.load::<Metadata>() {
            self.0.record(metadata.service(), metadata.name());
        }
        Ok(())
    }
}

/// One client per service, all counting into `calls`.
pub struct Aws {
    pub region: String,
    pub calls: Arc<CallCounter>,
    pub ec2: aws_sdk_ec2::Client,
    pub autoscaling: aws_sdk_autoscaling::Client,
    pub elb: aws_sdk_elasticloadbalancingv2::Client,
    pub rds: aws_sdk_rds::Client,
    pub elasticache: aws_sdk_elasticache::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    pub s3: aws_sdk_s3::Client,
    pub ssm: aws_sdk_ssm::Client,
    pub iam: aws_sdk_iam::Client,
    pub sts: aws_sdk_sts::Client,
}

impl Aws {
    pub async fn connect(target: &Target) -> anyhow::Result<Aws> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(region) = &target.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        if let Some(profile) = &target.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(endpoint) = &target.endpoint_url {
            loader = loader.endpoint_url(endpoint);
        }
        let config = loader.load().await;
        let region = config
            .region()
            .map(ToString::to_string)
            .context("no AWS region: pass --region or set AWS_REGION")?;
        let calls = Arc::new(CallCounter::default());
        let counting = CountingInterceptor(calls.clone());
        macro_rules! client {
            ($sdk:ident) => {
                $sdk::Client::from_conf(
                    $sdk::config::Builder::from(&config)
                        .interceptor(counting.clone())
                        .build(),
                )
            };
        }
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&config)
                .interceptor(counting.clone())
                // A local endpoint has no per-bucket DNS names.
                .force_path_style(target.endpoint_url.is_some())
                .build(),
        );
        Ok(Aws {
            region,
            ec2: client!(aws_sdk_ec2),
            autoscaling: client!(aws_sdk_autoscaling),
            elb: client!(aws_sdk_elasticloadbalancingv2),
            rds: client!(aws_sdk_rds),
            elasticache: client!(aws_sdk_elasticache),
            cloudwatch: client!(aws_sdk_cloudwatch),
            ssm: client!(aws_sdk_ssm),
            iam: client!(aws_sdk_iam),
            sts: client!(aws_sdk_sts),
            s3,
            calls,
        })
    }

    /// The account the credentials belong to (the model bucket's name carries it).
    pub async fn account(&self) -> anyhow::Result<String> {
        let identity = self
            .sts
            .get_caller_identity()
            .send()
            .await
            .map_err(super::resources::aws_error)
            .context(
                "cannot tell which AWS account the credentials belong to (sts:GetCallerIdentity)",
            )?;
        identity
            .account
            .context("sts:GetCallerIdentity returned no account")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_not_mutating() {
        let counter = CallCounter::default();
        for operation in [
            "DescribeVpcs",
            "ListTagsForResource",
            "GetParameter",
            "HeadBucket",
            "CreateVpc",
        ] {
            counter.record("ec2", operation);
        }
        assert_eq!((counter.total(), counter.mutating()), (5, 1));
        assert_eq!(
            counter
                .mutating_operations()
                .into_iter()
                .collect::<Vec<_>>(),
            [("ec2:CreateVpc".to_owned(), 1)]
        );
    }
}
