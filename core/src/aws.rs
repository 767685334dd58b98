//! The AWS SDK configuration the API and worker use for data-plane calls (the
//! model bucket, its uploads, CloudWatch metrics): the SDK's standard
//! credential chain, with a local endpoint (moto) and a region when configured.

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

/// An S3 client: `endpoint_url` replaces the AWS endpoints (moto) and switches
/// to path-style addressing; `region` overrides the chain's.
pub async fn s3_client(endpoint_url: Option<&str>, region: Option<&str>) -> aws_sdk_s3::Client {
    let shared = sdk_config(endpoint_url, region).await;
    let config = aws_sdk_s3::config::Builder::from(&shared)
        .force_path_style(endpoint_url.is_some())
        .build();
    aws_sdk_s3::Client::from_conf(config)
}
