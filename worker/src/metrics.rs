//! What the worker counts, shown on its `/metrics` (Prometheus text) and
//! published to CloudWatch (`AccuNode/Workers`, dimension `Stack`) every
//! `CLOUDWATCH_METRICS_SECS`: the metrics `accunode_core::published_metrics`
//! lists, which the stack's alarms and scaling policies read.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use accunode_core::published_metrics::{
    ERROR_RATE, PublishedMetric, QUEUE_LENGTH, STACK_DIMENSION, TASK_DURATION, TASK_WAIT_TIME,
    TASKS_PROCESSED,
};
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};

/// Running totals since the worker started.
#[derive(Debug, Default)]
pub struct WorkerMetrics {
    chunks_committed: AtomicU64,
    chunks_failed: AtomicU64,
    chunks_dead_lettered: AtomicU64,
    rows_succeeded: AtomicU64,
    rows_failed: AtomicU64,
    duration_ms: AtomicU64,
    wait_ms: AtomicU64,
    /// The queue's length when last read.
    queue_length: AtomicU64,
}

/// The totals at one moment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub chunks_committed: u64,
    pub chunks_failed: u64,
    pub chunks_dead_lettered: u64,
    pub rows_succeeded: u64,
    pub rows_failed: u64,
    pub duration_ms: u64,
    pub wait_ms: u64,
    pub queue_length: u64,
}

impl WorkerMetrics {
    pub fn committed(&self, succeeded: u64, failed: u64, duration: Duration, wait: Duration) {
        self.chunks_committed.fetch_add(1, Ordering::Relaxed);
        self.rows_succeeded.fetch_add(succeeded, Ordering::Relaxed);
        self.rows_failed.fetch_add(failed, Ordering::Relaxed);
        self.duration_ms
            .fetch_add(duration.as_millis() as u64, Ordering::Relaxed);
        self.wait_ms
            .fetch_add(wait.as_millis() as u64, Ordering::Relaxed);
    }

    pub fn failed(&self) {
        self.chunks_failed.fetch_add(1, Ordering::Relaxed);
    }

    pub fn dead_lettered(&self) {
        self.chunks_dead_lettered.fetch_add(1, Ordering::Relaxed);
    }

    pub fn queue_length(&self, length: u64) {
        self.queue_length.store(length, Ordering::Relaxed);
    }

    pub fn totals(&self) -> Totals {
        Totals {
            chunks_committed: self.chunks_committed.load(Ordering::Relaxed),
            chunks_failed: self.chunks_failed.load(Ordering::Relaxed),
            chunks_dead_lettered: self.chunks_dead_lettered.load(Ordering::Relaxed),
            rows_succeeded: self.rows_succeeded.load(Ordering::Relaxed),
            rows_failed: self.rows_failed.load(Ordering::Relaxed),
            duration_ms: self.duration_ms.load(Ordering::Relaxed),
            wait_ms: self.wait_ms.load(Ordering::Relaxed),
            queue_length: self.queue_length.load(Ordering::Relaxed),
        }
    }

    /// The Prometheus text exposition of the totals.
    pub fn prometheus(&self) -> String {
        let t = self.totals();
        format!(
            "# HELP accunode_worker_chunks_total Chunks by outcome.\n\
             # TYPE accunode_worker_chunks_total counter\n\
             accunode_worker_chunks_total{{outcome=\"committed\"}} {}\n\
             accunode_worker_chunks_total{{outcome=\"failed\"}} {}\n\
             accunode_worker_chunks_total{{outcome=\"dead_lettered\"}} {}\n\
             # HELP accunode_worker_rows_total Rows of committed chunks by outcome.\n\
             # TYPE accunode_worker_rows_total counter\n\
             accunode_worker_rows_total{{outcome=\"succeeded\"}} {}\n\
             accunode_worker_rows_total{{outcome=\"failed\"}} {}\n\
             # HELP accunode_worker_chunk_seconds_total Time from taking to committing chunks.\n\
             # TYPE accunode_worker_chunk_seconds_total counter\n\
             accunode_worker_chunk_seconds_total {}\n\
             # HELP accunode_worker_chunk_wait_seconds_total Time committed chunks waited in the queue.\n\
             # TYPE accunode_worker_chunk_wait_seconds_total counter\n\
             accunode_worker_chunk_wait_seconds_total {}\n\
             # HELP accunode_worker_queue_length Chunks waiting or being scored, when last read.\n\
             # TYPE accunode_worker_queue_length gauge\n\
             accunode_worker_queue_length {}\n",
            t.chunks_committed,
            t.chunks_failed,
            t.chunks_dead_lettered,
            t.rows_succeeded,
            t.rows_failed,
            t.duration_ms as f64 / 1000.0,
            t.wait_ms as f64 / 1000.0,
            t.queue_length,
        )
    }
}

/// The CloudWatch data points for the change from `before` to `now`.
pub fn data_points(before: Totals, now: Totals) -> Vec<(PublishedMetric, f64)> {
    let committed = now.chunks_committed - before.chunks_committed;
    let failed = (now.chunks_failed + now.chunks_dead_lettered)
        - (before.chunks_failed + before.chunks_dead_lettered);
    let attempted = committed + failed;
    let mut points = vec![
        (QUEUE_LENGTH, now.queue_length as f64),
        (TASKS_PROCESSED, committed as f64),
        (
            ERROR_RATE,
            if attempted == 0 {
                0.0
            } else {
                failed as f64 * 100.0 / attempted as f64
            },
        ),
    ];
    if committed > 0 {
        points.push((
            TASK_DURATION,
            (now.duration_ms - before.duration_ms) as f64 / committed as f64,
        ));
        points.push((
            TASK_WAIT_TIME,
            (now.wait_ms - before.wait_ms) as f64 / committed as f64 / 1000.0,
        ));
    }
    points
}

/// Sends one set of data points with the `Stack` dimension (when known).
pub async fn publish(
    client: &aws_sdk_cloudwatch::Client,
    stack: Option<&str>,
    points: &[(PublishedMetric, f64)],
) -> Result<(), aws_sdk_cloudwatch::Error> {
    let data = points
        .iter()
        .map(|(metric, value)| {
            let mut datum = MetricDatum::builder()
                .metric_name(metric.name)
                .value(*value)
                .unit(StandardUnit::from(metric.unit));
            if let Some(stack) = stack {
                datum = datum.dimensions(
                    Dimension::builder()
                        .name(STACK_DIMENSION)
                        .value(stack)
                        .build(),
                );
            }
            datum.build()
        })
        .collect();
    client
        .put_metric_data()
        .namespace(accunode_core::published_metrics::WORKER_NAMESPACE)
        .set_metric_data(Some(data))
        .send()
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_points_are_rates_of_the_interval() {
        let before = Totals {
            chunks_committed: 10,
            duration_ms: 10_000,
            wait_ms: 5_000,
            ..Totals::default()
        };
        let now = Totals {
            chunks_committed: 13,
            chunks_failed: 1,
            duration_ms: 13_000,
            wait_ms: 35_000,
            queue_length: 7,
            ..Totals::default()
        };
        let points = data_points(before, now);
        let value = |metric: PublishedMetric| points.iter().find(|(m, _)| *m == metric).unwrap().1;
        assert_eq!(value(QUEUE_LENGTH), 7.0);
        assert_eq!(value(TASKS_PROCESSED), 3.0);
        assert_eq!(value(ERROR_RATE), 25.0);
        assert_eq!(value(TASK_DURATION), 1000.0);
        assert_eq!(value(TASK_WAIT_TIME), 10.0);
    }
}
