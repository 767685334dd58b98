//! The AWS SDK configuration the API and worker use for data-plane calls (the
//! model bucket, CloudWatch metrics): the SDK's standard credential chain,
//! with a local endpoint (moto) and a region when configured.

/// Shared SDK configuration: `endpoint_url` replaces the AWS endpoints,
/// `region` overrides the chain's.
pub async fn sdk_config(endpoint_url: Option<&str>, region: Option<&str>) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(region) = region {
        loader = loader.region(aws_config::Region::new(region.to_owned()));
    }
    if let Some(endpoint) = endpoint_url {
        loader = loader.endpoint_url(endpoint);
    }
    loader.load().await
}
