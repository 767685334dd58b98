//! The original design's custom API metrics in CloudWatch (namespace `AccuNode/API`):
//! `ActiveConnections` (requests in flight when sampled), `ResponseTime` (mean
//! milliseconds of the requests answered since the last publication) and
//! `RequestCount`, every `CLOUDWATCH_METRICS_SECS`. No dimensions, so every API
//! server adds to the same series the stack's dashboard shows. A failed
//! publication is logged and retried with the next one; serving never waits on it.

use std::sync::Arc;
use std::time::Duration;

use accunode_core::config::AwsSettings;
use aws_sdk_cloudwatch::types::{MetricDatum, StandardUnit};

use crate::metrics::HttpMetrics;

pub const NAMESPACE: &str = "AccuNode/API";

pub struct Publisher {
    client: aws_sdk_cloudwatch::Client,
    metrics: Arc<HttpMetrics>,
    /// Latency sum (seconds) and request count at the last publication.
    published: (f64, u64),
}

impl Publisher {
    pub async fn new(aws: &AwsSettings, metrics: Arc<HttpMetrics>) -> Self {
        let config =
            accunode_core::aws::sdk_config(aws.endpoint_url.as_deref(), Some(&aws.region)).await;
        let published = metrics.latency_totals();
        Self {
            client: aws_sdk_cloudwatch::Client::new(&config),
            metrics,
            published,
        }
    }

    /// Sends one set of data points.
    pub async fn publish(&mut self) -> anyhow::Result<()> {
        let (sum, count) = self.metrics.latency_totals();
        let requests = count.saturating_sub(self.published.1);
        let mut data = vec![
            datum(
                "ActiveConnections",
                self.metrics.in_flight() as f64,
                StandardUnit::Count,
            ),
            datum("RequestCount", requests as f64, StandardUnit::Count),
        ];
        if requests > 0 {
            let mean_ms = (sum - self.published.0) / requests as f64 * 1000.0;
            data.push(datum("ResponseTime", mean_ms, StandardUnit::Milliseconds));
        }
        self.client
            .put_metric_data()
            .namespace(NAMESPACE)
            .set_metric_data(Some(data))
            .send()
            .await?;
        self.published = (sum, count);
        Ok(())
    }

    /// Publishes every `interval` until the task is dropped.
    pub async fn run(mut self, interval: Duration) {
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if let Err(error) = self.publish().await {
                tracing::warn!(error = %format!("{error:#}"), "CloudWatch metrics not published");
            }
        }
    }
}

fn datum(name: &str, value: f64, unit: StandardUnit) -> MetricDatum {
    MetricDatum::builder()
        .metric_name(name)
        .value(value)
        .unit(unit)
        .build()
}
