//! The original design's custom API metrics in CloudWatch, as
//! `accunode_core::published_metrics` lists them (namespace `AccuNode/API`):
//! `ActiveConnections` (requests in flight when sampled), `ResponseTime` (mean
//! milliseconds of the requests answered since the last publication) and
//! `RequestCount`, every `CLOUDWATCH_METRICS_SECS`. Each carries the one
//! dimension `Stack` = `STACK_NAME`, so every API server of a stack adds to the
//! series its alarms and dashboard read, and two stacks in one account never
//! mix; without `STACK_NAME` (a local run) they go without dimensions, which is
//! logged once at start. A failed publication is logged and retried with the
//! next one; serving never waits on it.

use std::sync::Arc;
use std::time::Duration;

use accunode_core::config::AwsSettings;
use accunode_core::published_metrics::{
    ACTIVE_CONNECTIONS, API_NAMESPACE, PublishedMetric, REQUEST_COUNT, RESPONSE_TIME,
    STACK_DIMENSION,
};
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};

use crate::metrics::HttpMetrics;

pub struct Publisher {
    client: aws_sdk_cloudwatch::Client,
    metrics: Arc<HttpMetrics>,
    /// The dimensions of every datum: `Stack`, or none without `STACK_NAME`.
    dimensions: Vec<Dimension>,
    /// Latency sum (seconds) and request count at the last publication.
    published: (f64, u64),
}

impl Publisher {
    pub async fn new(aws: &AwsSettings, metrics: Arc<HttpMetrics>) -> Self {
        let config =
            accunode_core::aws::sdk_config(aws.endpoint_url.as_deref(), Some(&aws.region)).await;
        if aws.stack_name.is_none() {
            tracing::warn!(
                "STACK_NAME is unset: CloudWatch metrics are published without the Stack dimension, \
                 which the stack's alarms and dashboard read"
            );
        }
        let published = metrics.latency_totals();
        Self {
            client: aws_sdk_cloudwatch::Client::new(&config),
            metrics,
            dimensions: dimensions(aws.stack_name.as_deref()),
            published,
        }
    }

    /// Sends one set of data points.
    pub async fn publish(&mut self) -> anyhow::Result<()> {
        let (sum, count) = self.metrics.latency_totals();
        let requests = count.saturating_sub(self.published.1);
        let mut data = vec![
            self.datum(&ACTIVE_CONNECTIONS, self.metrics.in_flight() as f64),
            self.datum(&REQUEST_COUNT, requests as f64),
        ];
        if requests > 0 {
            let mean_ms = (sum - self.published.0) / requests as f64 * 1000.0;
            data.push(self.datum(&RESPONSE_TIME, mean_ms));
        }
        self.client
            .put_metric_data()
            .namespace(API_NAMESPACE)
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

    fn datum(&self, metric: &PublishedMetric, value: f64) -> MetricDatum {
        datum(metric, value, &self.dimensions)
    }
}

/// `Stack=<stack>`, or no dimension at all without a stack name.
fn dimensions(stack_name: Option<&str>) -> Vec<Dimension> {
    stack_name
        .map(|stack| {
            Dimension::builder()
                .name(STACK_DIMENSION)
                .value(stack)
                .build()
        })
        .into_iter()
        .collect()
}

fn datum(metric: &PublishedMetric, value: f64, dimensions: &[Dimension]) -> MetricDatum {
    debug_assert_eq!(metric.namespace, API_NAMESPACE);
    MetricDatum::builder()
        .metric_name(metric.name)
        .value(value)
        .unit(StandardUnit::from(metric.unit))
        .set_dimensions((!dimensions.is_empty()).then(|| dimensions.to_vec()))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_carry_the_published_name_unit_and_the_stack() {
        let with_stack = dimensions(Some("prod"));
        for metric in accunode_core::published_metrics::API_METRICS {
            let datum = datum(metric, 1.0, &with_stack);
            assert_eq!(datum.metric_name(), Some(metric.name));
            assert_eq!(datum.unit().map(StandardUnit::as_str), Some(metric.unit));
            assert!(
                StandardUnit::values().contains(&metric.unit),
                "{} is a CloudWatch unit",
                metric.unit
            );
            let pairs: Vec<(&str, &str)> = datum
                .dimensions()
                .iter()
                .map(|d| (d.name().unwrap(), d.value().unwrap()))
                .collect();
            assert_eq!(pairs, [(STACK_DIMENSION, "prod")]);
        }
        let without = datum(&REQUEST_COUNT, 1.0, &dimensions(None));
        assert!(without.dimensions().is_empty());
    }
}
