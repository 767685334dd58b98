//! Prometheus metrics of the HTTP layer, served as text on `GET /metrics`.
//!
//! Requests are labelled by route pattern (`/api/v1/companies/:id`), never by raw
//! path, so a client probing random URLs cannot blow up the series count:
//! requests that match no route share the label `unmatched`.

use std::time::Duration;

use poem::http::{Method, StatusCode};
use poem::web::Data;
use poem::{IntoResponse, Response, handler};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

/// Latency buckets in seconds: fine below 100 ms, where the SLAs live.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The HTTP metrics of one API process.
pub struct HttpMetrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    in_flight: IntGauge,
}

impl HttpMetrics {
    pub fn new() -> Self {
        let labels = &["method", "route", "status"];
        let requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests answered, by route and status.",
            ),
            labels,
        )
        .expect("a valid counter definition");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "Time from request to response, by route and status.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            labels,
        )
        .expect("a valid histogram definition");
        let in_flight = IntGauge::new(
            "http_requests_in_flight",
            "Requests being handled right now (the seed's ActiveConnections).",
        )
        .expect("a valid gauge definition");
        let registry =
            Registry::new_custom(Some("accunode".into()), None).expect("a valid registry prefix");
        for collector in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(in_flight.clone()),
        ] {
            registry
                .register(collector)
                .expect("metric names are unique");
        }
        Self {
            registry,
            requests,
            latency,
            in_flight,
        }
    }

    /// Marks a request as started; the returned guard counts it out when dropped,
    /// so a cancelled request (client gone) does not stay "in flight" forever.
    pub fn start(&self) -> InFlight<'_> {
        self.in_flight.inc();
        InFlight(&self.in_flight)
    }

    pub fn record(
        &self,
        method: &Method,
        route: Option<&str>,
        status: StatusCode,
        elapsed: Duration,
    ) {
        let status = status.as_u16().to_string();
        // A request no route matched carries no pattern, or an empty one from a nest.
        let route = route
            .filter(|route| !route.is_empty())
            .unwrap_or("unmatched");
        let labels = [method.as_str(), route, status.as_str()];
        self.requests.with_label_values(&labels).inc();
        self.latency
            .with_label_values(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> i64 {
        self.in_flight.get()
    }

    /// The sum of all request latencies in seconds and their count, over every
    /// route and status, since the process started.
    pub fn latency_totals(&self) -> (f64, u64) {
        use prometheus::core::Collector;
        self.latency
            .collect()
            .iter()
            .flat_map(|family| family.get_metric())
            .map(|metric| metric.get_histogram())
            .fold((0.0, 0), |(sum, count), histogram| {
                (
                    sum + histogram.get_sample_sum(),
                    count + histogram.get_sample_count(),
                )
            })
    }

    fn render(&self) -> Result<String, prometheus::Error> {
        let mut buffer = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buffer)?;
        String::from_utf8(buffer).map_err(|error| prometheus::Error::Msg(error.to_string()))
    }
}

impl Default for HttpMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Decrements the in-flight gauge when the request ends, however it ends.
pub struct InFlight<'a>(&'a IntGauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// `GET /metrics`: the Prometheus text exposition format.
#[handler]
pub fn metrics_endpoint(metrics: Data<&std::sync::Arc<HttpMetrics>>) -> Response {
    match metrics.render() {
        Ok(text) => text
            .with_content_type("text/plain; version=0.0.4; charset=utf-8")
            .into_response(),
        Err(error) => {
            tracing::error!(%error, "cannot render metrics");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}
