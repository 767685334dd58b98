//! The CloudWatch metrics the API and the worker publish: namespace, name and
//! unit, each with the one dimension `Stack`. The provisioner's alarms, scaling
//! policies and dashboard read only metrics listed here (its tests check it),
//! so a renamed metric cannot leave an alarm watching nothing, and two stacks in
//! one account never add to one series.

/// The dimension every published metric carries: the stack's name.
pub const STACK_DIMENSION: &str = "Stack";

pub const API_NAMESPACE: &str = "AccuNode/API";
pub const WORKER_NAMESPACE: &str = "AccuNode/Workers";

/// One published metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishedMetric {
    pub namespace: &'static str,
    pub name: &'static str,
    /// CloudWatch's unit name, e.g. `Count` or `Milliseconds`.
    pub unit: &'static str,
    pub meaning: &'static str,
}

const fn api(name: &'static str, unit: &'static str, meaning: &'static str) -> PublishedMetric {
    PublishedMetric {
        namespace: API_NAMESPACE,
        name,
        unit,
        meaning,
    }
}

const fn worker(name: &'static str, unit: &'static str, meaning: &'static str) -> PublishedMetric {
    PublishedMetric {
        namespace: WORKER_NAMESPACE,
        name,
        unit,
        meaning,
    }
}

pub const ACTIVE_CONNECTIONS: PublishedMetric = api(
    "ActiveConnections",
    "Count",
    "requests in flight when sampled, per API server",
);
pub const RESPONSE_TIME: PublishedMetric = api(
    "ResponseTime",
    "Milliseconds",
    "mean time to answer the requests since the last publication",
);
pub const REQUEST_COUNT: PublishedMetric = api(
    "RequestCount",
    "Count",
    "requests answered since the last publication",
);
pub const QUEUE_LENGTH: PublishedMetric = worker(
    "QueueLength",
    "Count",
    "chunks waiting in the queue or being scored (the stream's consumer-group lag plus pending)",
);
pub const TASKS_PROCESSED: PublishedMetric = worker(
    "TasksProcessed",
    "Count",
    "chunks committed since the last publication",
);
pub const ERROR_RATE: PublishedMetric = worker(
    "ErrorRate",
    "Percent",
    "chunks that failed (and will be retried or dead-lettered), percent of chunks attempted since the last publication",
);
pub const TASK_DURATION: PublishedMetric = worker(
    "TaskDuration",
    "Milliseconds",
    "mean time from taking a chunk to committing it, since the last publication",
);
pub const TASK_WAIT_TIME: PublishedMetric = worker(
    "TaskWaitTime",
    "Seconds",
    "mean time a chunk waited in the queue before a worker took it, since the last publication",
);

/// Every metric the API publishes.
pub const API_METRICS: &[PublishedMetric] = &[ACTIVE_CONNECTIONS, RESPONSE_TIME, REQUEST_COUNT];

/// Every metric the worker publishes.
pub const WORKER_METRICS: &[PublishedMetric] = &[
    QUEUE_LENGTH,
    TASKS_PROCESSED,
    ERROR_RATE,
    TASK_DURATION,
    TASK_WAIT_TIME,
];

/// Whether `namespace`/`name` is a metric the API or the worker publishes.
pub fn is_published(namespace: &str, name: &str) -> bool {
    API_METRICS
        .iter()
        .chain(WORKER_METRICS)
        .any(|metric| metric.namespace == namespace && metric.name == name)
}
