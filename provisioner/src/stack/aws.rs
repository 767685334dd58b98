//! The AWS clients of the stack commands, built from the standard SDK
//! configuration chain (env, profile, `AWS_ENDPOINT_URL`), and the counter that
//! every one of them reports its calls to, so a run can say how many calls it
//! made, how many of them changed something, and how many were retried or
//! throttled.
//!
//! Every client retries in the SDK's adaptive mode (a client-side rate limiter
//! that slows down when AWS throttles) with [`MAX_ATTEMPTS`] attempts and a
//! bounded time per call. The one exception is `ec2_once`: creates that AWS
//! cannot deduplicate (a VPC, a subnet…) go through it without any automatic
//! resend, because a resent create whose first answer was lost makes a second
//! resource (and `elb_once`, for endpoints that do not deduplicate balancers
//! and listeners by name and port as AWS does); [`super::resources::find::create_once`] looks before it sends again.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use std::time::Duration;

use anyhow::Context;
use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeTransmitInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::retries::RequestAttempts;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use aws_smithy_types::error::display::DisplayErrorContext;

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
    /// Attempts after the first of one call (the SDK's resends).
    retried: AtomicU64,
    /// Answers that were AWS throttling us.
    throttled: AtomicU64,
    by_operation: Mutex<BTreeMap<String, u64>>,
}

impl CallCounter {
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    pub fn mutating(&self) -> u64 {
        self.mutating.load(Ordering::Relaxed)
    }

    pub fn retried(&self) -> u64 {
        self.retried.load(Ordering::Relaxed)
    }

    pub fn throttled(&self) -> u64 {
        self.throttled.load(Ordering::Relaxed)
    }

    /// Counts a resend that the SDK's retry did not make (see `create_once`).
    pub fn record_resend(&self) {
        self.retried.fetch_add(1, Ordering::Relaxed);
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

    /// Counts one call; for a mutating one, returns how many mutating calls
    /// came before it.
    fn record(&self, service: &str, operation: &str) -> Option<u64> {
        self.total.fetch_add(1, Ordering::Relaxed);
        let mutating_before =
            is_mutating(operation).then(|| self.mutating.fetch_add(1, Ordering::Relaxed));
        let mut calls = self
            .by_operation
            .lock()
            .expect("the call counter is never poisoned");
        *calls.entry(format!("{service}:{operation}")).or_default() += 1;
        mutating_before
    }
}

/// The error codes AWS throttles with, across its protocols.
pub const THROTTLING_CODES: [&str; 7] = [
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "SlowDown",
    "TooManyRequestsException",
];

/// True when an HTTP answer is AWS throttling: 429, or an error status whose
/// body carries one of [`THROTTLING_CODES`] as its code.
fn is_throttling_answer(status: u16, body: &[u8]) -> bool {
    if status == 429 {
        return true;
    }
    if status < 400 {
        return false;
    }
    let body = String::from_utf8_lossy(body);
    THROTTLING_CODES.iter().any(|code| {
        body.contains(&format!("<Code>{code}</Code>"))
            || body.contains(&format!("\"{code}\""))
            || body.contains(&format!("#{code}\""))
    })
}

fn is_mutating(operation: &str) -> bool {
    !["Describe", "List", "Get", "Head"]
        .iter()
        .any(|read| operation.starts_with(read))
}

/// The test-only setting that stops a run dead after a number of mutating
/// calls; see [`Aws::connect`].
const ABORT_AFTER_MUTATIONS: &str = "ACCUNODE_TEST_ABORT_AFTER_MUTATIONS";

#[derive(Debug, Clone)]
struct CountingInterceptor {
    calls: Arc<CallCounter>,
    abort_after_mutations: Option<u64>,
}

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
        if cfg
            .load::<RequestAttempts>()
            .is_some_and(|attempts| attempts.attempts() > 1)
        {
            self.calls.retried.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(metadata) = cfg.load::<Metadata>() {
            let mutating_before = self.calls.record(metadata.service(), metadata.name());
            if let (Some(limit), Some(sent)) = (self.abort_after_mutations, mutating_before)
                && sent >= limit
            {
                // As `kill -9` would: no unwinding, no summary, nothing cleaned up
                // (137 is what a shell reports for a SIGKILL).
                std::process::exit(137);
            }
        }
        Ok(())
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(response) = context.response()
            && is_throttling_answer(
                response.status().as_u16(),
                response.body().bytes().unwrap_or_default(),
            )
        {
            self.calls.throttled.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// Forbids resending a call answered with an HTML error page: no AWS API
/// answers that way; a local stand-in does when the call fails inside it
/// (see [`not_implemented`]), and it fails the same way every time.
#[derive(Debug)]
struct NoResendOfHtmlErrors;

impl aws_smithy_runtime_api::client::retries::classifiers::ClassifyRetry for NoResendOfHtmlErrors {
    fn classify_retry(
        &self,
        ctx: &aws_smithy_runtime_api::client::interceptors::context::InterceptorContext,
    ) -> aws_smithy_runtime_api::client::retries::classifiers::RetryAction {
        use aws_smithy_runtime_api::client::retries::classifiers::RetryAction;
        let html = ctx.response().is_some_and(|response| {
            response.status().is_server_error()
                && response.body().bytes().is_some_and(|body| {
                    String::from_utf8_lossy(&body[..body.len().min(64)])
                        .trim_start()
                        .to_ascii_lowercase()
                        .starts_with("<!doctype html")
                })
        });
        if html {
            RetryAction::RetryForbidden
        } else {
            RetryAction::NoActionIndicated
        }
    }

    fn name(&self) -> &'static str {
        "NoResendOfHtmlErrors"
    }
}

/// Attempts per call, the first included.
pub const MAX_ATTEMPTS: u32 = 10;

/// One client per service, all counting into `calls`.
pub struct Aws {
    pub region: String,
    pub calls: Arc<CallCounter>,
    pub ec2: aws_sdk_ec2::Client,
    /// EC2 without automatic resends, for creates AWS cannot deduplicate.
    pub ec2_once: aws_sdk_ec2::Client,
    pub autoscaling: aws_sdk_autoscaling::Client,
    pub elb: aws_sdk_elasticloadbalancingv2::Client,
    /// ELBv2 without automatic resends, likewise.
    pub elb_once: aws_sdk_elasticloadbalancingv2::Client,
    pub rds: aws_sdk_rds::Client,
    pub elasticache: aws_sdk_elasticache::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    pub s3: aws_sdk_s3::Client,
    pub ssm: aws_sdk_ssm::Client,
    pub iam: aws_sdk_iam::Client,
    pub sts: aws_sdk_sts::Client,
}

impl Aws {
    /// Builds the clients of `target`.
    ///
    /// `ACCUNODE_TEST_ABORT_AFTER_MUTATIONS=N` exists only so the tests can
    /// interrupt an apply at a point of their choosing: once N mutating calls
    /// have been sent, the process exits with status 137 just before it would
    /// transmit the next one, as abruptly as a kill (no summary, no cleanup).
    /// Unset, every call goes through.
    pub async fn connect(target: &Target) -> anyhow::Result<Aws> {
        let abort_after_mutations = std::env::var_os(ABORT_AFTER_MUTATIONS)
            .map(|value| {
                value
                    .to_str()
                    .and_then(|v| v.parse::<u64>().ok())
                    .with_context(|| {
                        format!("{ABORT_AFTER_MUTATIONS}={value:?}: expected a number of calls")
                    })
            })
            .transpose()?;
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
        let config = loader
            .retry_config(
                RetryConfig::adaptive()
                    .with_max_attempts(MAX_ATTEMPTS)
                    .with_initial_backoff(Duration::from_millis(200))
                    .with_max_backoff(Duration::from_secs(5)),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(10))
                    .operation_attempt_timeout(Duration::from_secs(60))
                    .operation_timeout(Duration::from_secs(300))
                    .build(),
            )
            .load()
            .await;
        let region = config
            .region()
            .map(ToString::to_string)
            .context("no AWS region: pass --region or set AWS_REGION")?;
        let calls = Arc::new(CallCounter::default());
        let counting = CountingInterceptor {
            calls: calls.clone(),
            abort_after_mutations,
        };
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
                .retry_classifier(NoResendOfHtmlErrors)
                // A local endpoint has no per-bucket DNS names.
                .force_path_style(target.endpoint_url.is_some())
                .build(),
        );
        let ec2_once = aws_sdk_ec2::Client::from_conf(
            aws_sdk_ec2::config::Builder::from(&config)
                .interceptor(counting.clone())
                .retry_config(RetryConfig::disabled())
                .build(),
        );
        let elb_once = aws_sdk_elasticloadbalancingv2::Client::from_conf(
            aws_sdk_elasticloadbalancingv2::config::Builder::from(&config)
                .interceptor(counting.clone())
                .retry_config(RetryConfig::disabled())
                .build(),
        );
        Ok(Aws {
            region,
            elb_once,
            ec2: client!(aws_sdk_ec2),
            ec2_once,
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
            .map_err(aws_error)
            .context(
                "cannot tell which AWS account the credentials belong to (sts:GetCallerIdentity)",
            )?;
        identity
            .account
            .context("sts:GetCallerIdentity returned no account")
    }
}

/// A failed call in one line: AWS's code and message (and the HTTP status)
/// for an error AWS answered, the cause for one it did not (time-out,
/// connection, an answer that is not an AWS error document).
pub fn aws_error<E>(
    error: aws_smithy_runtime_api::client::result::SdkError<
        E,
        aws_smithy_runtime_api::http::Response,
    >,
) -> anyhow::Error
where
    E: std::error::Error
        + aws_smithy_types::error::metadata::ProvideErrorMetadata
        + Send
        + Sync
        + 'static,
{
    use aws_smithy_runtime_api::client::result::SdkError;
    match &error {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            match (service.err().code(), service.err().message()) {
                (Some(code), Some(message)) => anyhow::anyhow!("{code}: {message} (HTTP {status})"),
                (Some(code), None) => anyhow::anyhow!("{code} (HTTP {status})"),
                _ => {
                    let body = service.raw().body().bytes().unwrap_or_default();
                    anyhow::anyhow!(
                        "HTTP {status} without an AWS error code: {}",
                        String::from_utf8_lossy(&body[..body.len().min(200)]).trim()
                    )
                }
            }
        }
        _ => anyhow::anyhow!("{}", DisplayErrorContext(&error)),
    }
}

/// How a failed call failed, for deciding whether to send it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// AWS refused it before doing anything: safe to resend.
    Throttled,
    /// No answer or a server error: the call may or may not have been carried out.
    Unknown,
    /// AWS answered with an error about the request: resending changes nothing.
    Refused,
}

pub fn failure<E>(
    error: &aws_smithy_runtime_api::client::result::SdkError<
        E,
        aws_smithy_runtime_api::http::Response,
    >,
) -> Failure
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata,
{
    use aws_smithy_runtime_api::client::result::SdkError;
    if error_code(error).is_some_and(|code| THROTTLING_CODES.contains(&code)) {
        return Failure::Throttled;
    }
    match error {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            Failure::Unknown
        }
        SdkError::ServiceError(e) if e.raw().status().is_server_error() => Failure::Unknown,
        _ => Failure::Refused,
    }
}

/// Error codes that say a create's resource already exists: what a resend
/// of a create whose first answer was lost gets.
pub const EXISTS: &[&str] = &[
    "AlreadyExists",
    "BucketAlreadyOwnedByYou",
    "CacheSubnetGroupAlreadyExists",
    "DBInstanceAlreadyExists",
    "DBSubnetGroupAlreadyExists",
    "DuplicateListener",
    "DuplicateLoadBalancerName",
    "DuplicateTargetGroupName",
    "EntityAlreadyExists",
    "InvalidGroup.Duplicate",
    "InvalidLaunchTemplateName.AlreadyExistsException",
    "ParameterAlreadyExists",
    "ReplicationGroupAlreadyExists",
];

/// Error codes that say what a call was to remove is not there (any more):
/// what a resend of a delete whose first answer was lost gets.
pub const GONE: &[&str] = &[
    "CacheSubnetGroupNotFoundFault",
    "DBInstanceNotFound",
    "DBSubnetGroupNotFoundFault",
    "Gateway.NotAttached",
    "InvalidAllocationID.NotFound",
    "InvalidAssociationID.NotFound",
    "InvalidGroup.NotFound",
    "InvalidInternetGatewayID.NotFound",
    "InvalidLaunchTemplateId.NotFound",
    "InvalidLaunchTemplateName.NotFoundException",
    "InvalidPermission.NotFound",
    "InvalidRouteTableID.NotFound",
    "InvalidSubnetID.NotFound",
    "InvalidVpcID.NotFound",
    "ListenerNotFound",
    "LoadBalancerNotFound",
    "NatGatewayNotFound",
    "NoSuchBucket",
    "NoSuchEntity",
    "ParameterNotFound",
    "ReplicationGroupNotFoundFault",
    "ResourceNotFound",
    "TargetGroupNotFound",
];

/// For calls whose resend after a lost answer finds its own work done.
pub trait OrAlready<T> {
    /// `Ok(None)` when AWS answers one of `codes`: what the call was to do is
    /// already so (see [`EXISTS`], [`GONE`]); where a code could also mean
    /// something else, the caller checks.
    fn or_already(self, codes: &[&str]) -> anyhow::Result<Option<T>>;
}

impl<T, E> OrAlready<T>
    for Result<
        T,
        aws_smithy_runtime_api::client::result::SdkError<E, aws_smithy_runtime_api::http::Response>,
    >
where
    E: std::error::Error
        + aws_smithy_types::error::metadata::ProvideErrorMetadata
        + Send
        + Sync
        + 'static,
{
    fn or_already(self, codes: &[&str]) -> anyhow::Result<Option<T>> {
        match self {
            Ok(value) => Ok(Some(value)),
            Err(error) if error_code(&error).is_some_and(|code| codes.contains(&code)) => Ok(None),
            Err(error) => Err(aws_error(error)),
        }
    }
}

/// The stack's bucket does not exist (yet): nowhere to publish a release
/// or keep a deploy's lock or history.
#[derive(Debug, thiserror::Error)]
#[error("the stack's bucket {0} does not exist: run `accunode provision` first")]
pub struct NoBucket(pub String);

/// Sends `put` (a PutObject with its bucket, key and body) as S3's
/// conditional write, `If-None-Match: *`: the new object's ETag when it
/// wrote it, None when one was there already, or when another conditional
/// write or a delete of it raced this one (409); the caller looks at what is
/// there.
pub async fn put_if_absent(
    put: aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder,
) -> anyhow::Result<Option<String>> {
    let bucket = put.get_bucket().clone().unwrap_or_default();
    let key = put.get_key().clone().unwrap_or_default();
    match put.if_none_match("*").send().await {
        Ok(written) => Ok(Some(written.e_tag().unwrap_or_default().to_owned())),
        Err(error) => match error_code(&error) {
            Some("PreconditionFailed" | "ConditionalRequestConflict") => Ok(None),
            Some("NoSuchBucket") => Err(NoBucket(bucket).into()),
            _ => Err(aws_error(error)).with_context(|| format!("cannot write s3://{bucket}/{key}")),
        },
    }
}

/// The AWS error code of a failed call ("DBInstanceNotFound"…), if the service gave one.
pub fn error_code<E, R>(
    error: &aws_smithy_runtime_api::client::result::SdkError<E, R>,
) -> Option<&str>
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata,
{
    error.as_service_error().and_then(|e| e.code())
}

/// True when the endpoint failed inside with an HTML error page instead of an
/// AWS error document: what a local stand-in of AWS does for an operation it
/// does not implement (moto 5.2.5 and DeleteCacheSubnetGroup); AWS never does.
pub fn not_implemented<E>(
    error: &aws_smithy_runtime_api::client::result::SdkError<
        E,
        aws_smithy_runtime_api::http::Response,
    >,
) -> bool {
    error.raw_response().is_some_and(|response| {
        response.status().as_u16() == 500
            && response.body().bytes().is_some_and(|body| {
                String::from_utf8_lossy(body)
                    .trim_start()
                    .to_ascii_lowercase()
                    .starts_with("<!doctype html")
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_not_mutating() {
        let counter = CallCounter::default();
        let mutating_before: Vec<Option<u64>> = [
            "DescribeVpcs",
            "CreateVpc",
            "ListTagsForResource",
            "GetParameter",
            "HeadBucket",
            "CreateVpc",
        ]
        .into_iter()
        .map(|operation| counter.record("ec2", operation))
        .collect();
        assert_eq!(mutating_before, [None, Some(0), None, None, None, Some(1)]);
        assert_eq!((counter.total(), counter.mutating()), (6, 2));
        assert_eq!(
            counter
                .mutating_operations()
                .into_iter()
                .collect::<Vec<_>>(),
            [("ec2:CreateVpc".to_owned(), 2)]
        );
    }
}
