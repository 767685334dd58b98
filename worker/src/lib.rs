//! The AccuNode worker: scores bulk uploads from the Redis queue ([`jobs`]).
//!
//! Around the job slots: it connects to PostgreSQL and Redis, applies
//! migrations, checks both dependencies every heartbeat interval, publishes
//! the result as a heartbeat key in Redis (`accunode:workers:<id>`, expiring
//! after three missed beats; the queue's consumer has the same name, so other
//! workers know when its chunks are orphaned) and on `GET /health`, shows its
//! counters on `GET /metrics` (both 127.0.0.1 only), publishes them to
//! CloudWatch ([`metrics`]), and stops cleanly on a signal: slots finish the
//! chunk they are scoring, then the heartbeat is deleted.

pub mod jobs;
pub mod metrics;

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use accunode_core::config::Settings;
use accunode_core::dependencies::Dependencies;
use accunode_core::health::HealthReport;
use accunode_core::scoring::registry::PinnedBundles;
use accunode_core::uploads::UploadStore;
use anyhow::Context;
use chrono::{DateTime, Utc};
use poem::http::StatusCode;
use poem::listener::{Acceptor, Listener, TcpAcceptor, TcpListener};
use poem::web::{Data, Json};
use poem::{EndpointExt, IntoResponse, Route, Server, handler};
use serde::Serialize;

use crate::jobs::JobRunner;
use crate::metrics::WorkerMetrics;

/// Prefix of the heartbeat keys; the rest of the key is the worker id.
pub const HEARTBEAT_KEY_PREFIX: &str = "accunode:workers:";

/// A heartbeat outlives this many missed beats before Redis expires it.
const MISSED_BEATS_BEFORE_EXPIRY: u32 = 3;

/// What the worker shares between its heartbeat loop and its endpoints.
#[derive(Clone)]
struct WorkerState {
    id: Arc<str>,
    started_at: DateTime<Utc>,
    dependencies: Dependencies,
    metrics: Arc<WorkerMetrics>,
}

/// What `GET /health` and the heartbeat key hold.
#[derive(Debug, Serialize)]
pub struct WorkerHealth<'a> {
    pub worker_id: &'a str,
    pub status: &'static str,
    pub version: &'static str,
    pub started_at: DateTime<Utc>,
    pub checked_at: DateTime<Utc>,
    pub down: Vec<&'static str>,
    pub checks: &'a HealthReport,
}

impl WorkerState {
    fn health<'a>(&'a self, report: &'a HealthReport) -> WorkerHealth<'a> {
        WorkerHealth {
            worker_id: &self.id,
            status: if report.all_up() { "ok" } else { "unavailable" },
            version: env!("CARGO_PKG_VERSION"),
            started_at: self.started_at,
            checked_at: Utc::now(),
            down: report.down(),
            checks: report,
        }
    }
}

/// A built worker: connected, migrated and bound, not yet running.
pub struct Worker {
    state: WorkerState,
    heartbeat_interval: Duration,
    health_acceptor: TcpAcceptor,
    health_address: SocketAddr,
    /// `None` when `BULK_UPLOAD_PATH` is unset: no jobs to read files of.
    jobs: Option<Arc<JobRunner>>,
    cloudwatch: Option<(Duration, aws_sdk_cloudwatch::Client, Option<String>)>,
}

impl Worker {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let dependencies = Dependencies::connect(&settings).await?;
        let requested = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), settings.worker.health_port);
        let health_acceptor = TcpListener::bind(requested)
            .into_acceptor()
            .await
            .with_context(|| format!("binding the health endpoint on {requested}"))?;
        let health_address = health_acceptor
            .local_addr()
            .first()
            .and_then(|addr| addr.as_socket_addr().copied())
            .context("the health listener reported no local address")?;
        let id: Arc<str> = worker_id().into();
        let metrics = Arc::new(WorkerMetrics::default());
        let aws = &settings.aws;
        let jobs = match &settings.bulk.location {
            Some(location) => Some(Arc::new(JobRunner {
                pool: dependencies.pool.clone(),
                redis: settings.redis.clone(),
                store: UploadStore::connect(
                    location.clone(),
                    aws.endpoint_url.as_deref(),
                    Some(&aws.region),
                )
                .await,
                bundles: PinnedBundles::connect(&settings.models, aws).await,
                worker_id: id.clone(),
                concurrency: settings.worker.concurrency,
                prefetch: settings.worker.prefetch,
                chunk_time_limit: settings.worker.chunk_time_limit,
                max_deliveries: settings.worker.max_deliveries,
                metrics: metrics.clone(),
                in_progress: Default::default(),
            })),
            None => {
                tracing::warn!("BULK_UPLOAD_PATH is unset: this worker takes no bulk jobs");
                None
            }
        };
        let cloudwatch = match aws.cloudwatch_interval {
            Some(interval) => {
                let config =
                    accunode_core::aws::sdk_config(aws.endpoint_url.as_deref(), Some(&aws.region))
                        .await;
                if aws.stack_name.is_none() {
                    tracing::warn!(
                        "STACK_NAME is unset: worker metrics are published without the Stack dimension the stack's alarms read"
                    );
                }
                Some((
                    interval,
                    aws_sdk_cloudwatch::Client::new(&config),
                    aws.stack_name.clone(),
                ))
            }
            None => None,
        };
        Ok(Self {
            state: WorkerState {
                id,
                started_at: Utc::now(),
                dependencies,
                metrics,
            },
            heartbeat_interval: settings.worker.heartbeat_interval,
            health_acceptor,
            health_address,
            jobs,
            cloudwatch,
        })
    }

    pub fn id(&self) -> &str {
        &self.state.id
    }

    /// Where `GET /health` answers.
    pub fn health_address(&self) -> SocketAddr {
        self.health_address
    }

    /// Beats and answers health probes until `shutdown` completes, then removes
    /// its heartbeat so that no one counts a stopped worker as alive.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> anyhow::Result<()> {
        let Self {
            state,
            heartbeat_interval,
            health_acceptor,
            health_address,
            jobs,
            cloudwatch,
        } = self;
        tracing::info!(worker_id = %state.id, health = %health_address, "worker started");
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let health_server = {
            let app = Route::new()
                .at("/health", health_endpoint)
                .at("/metrics", metrics_endpoint)
                .data(state.clone());
            let mut stop = stop_rx.clone();
            tokio::spawn(
                Server::new_with_acceptor(health_acceptor).run_with_graceful_shutdown(
                    app,
                    async move {
                        let _ = stop.wait_for(|stopped| *stopped).await;
                    },
                    Some(Duration::from_secs(5)),
                ),
            )
        };
        let heartbeat = tokio::spawn(heartbeat_loop(
            state.clone(),
            heartbeat_interval,
            stop_rx.clone(),
        ));
        let runner = jobs.map(|jobs| tokio::spawn(jobs.run(stop_rx.clone())));
        let publisher = cloudwatch.map(|(interval, client, stack)| {
            tokio::spawn(publish_loop(
                state.metrics.clone(),
                interval,
                client,
                stack,
                stop_rx,
            ))
        });

        shutdown.await;
        let _ = stop_tx.send(true);
        if let Some(runner) = runner {
            runner.await.context("the job runner panicked")??;
        }
        if let Some(publisher) = publisher {
            publisher.await.context("the metrics publisher panicked")?;
        }
        heartbeat.await.context("the heartbeat task panicked")?;
        health_server
            .await
            .context("the health server panicked")?
            .context("serving the health endpoint")?;

        let mut redis = state.dependencies.redis.clone();
        let key = format!("{HEARTBEAT_KEY_PREFIX}{}", state.id);
        if let Err(error) = redis::cmd("DEL")
            .arg(&key)
            .query_async::<()>(&mut redis)
            .await
        {
            tracing::warn!(%error, "could not delete the heartbeat; it expires by itself");
        }
        state.dependencies.pool.close().await;
        tracing::info!(worker_id = %state.id, "worker stopped");
        Ok(())
    }
}

#[handler]
async fn health_endpoint(state: Data<&WorkerState>) -> poem::Response {
    let report = state.dependencies.health().await;
    let status = if report.all_up() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Json(state.health(&report))
        .with_status(status)
        .into_response()
}

#[handler]
async fn metrics_endpoint(state: Data<&WorkerState>) -> poem::Response {
    state
        .metrics
        .prometheus()
        .with_content_type("text/plain; version=0.0.4")
        .into_response()
}

/// Publishes the worker's metrics every `interval`; a failed publication is
/// logged and its interval's change goes with the next one.
async fn publish_loop(
    metrics: Arc<WorkerMetrics>,
    interval: Duration,
    client: aws_sdk_cloudwatch::Client,
    stack: Option<String>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut published = metrics.totals();
    let mut ticker = tokio::time::interval(interval);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
        let now = metrics.totals();
        let points = metrics::data_points(published, now);
        match metrics::publish(&client, stack.as_deref(), &points).await {
            Ok(()) => published = now,
            Err(error) => tracing::warn!(%error, "cannot publish the worker's metrics"),
        }
    }
}

/// Checks the dependencies and renews the heartbeat every `interval`, logging
/// only when the state changes so that a healthy worker stays quiet.
async fn heartbeat_loop(
    state: WorkerState,
    interval: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let key = format!("{HEARTBEAT_KEY_PREFIX}{}", state.id);
    let ttl_secs = interval.as_secs().max(1) * u64::from(MISSED_BEATS_BEFORE_EXPIRY);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut previously_down: Vec<&'static str> = Vec::new();
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
        let report = state.dependencies.health().await;
        let down = report.down();
        if down != previously_down {
            if down.is_empty() {
                tracing::info!("all dependencies up");
            } else {
                tracing::warn!(?down, ?report, "dependencies down");
            }
            previously_down = down;
        }
        // The heartbeat can only reach Redis when Redis is up; its absence is the signal otherwise.
        let body = match serde_json::to_string(&state.health(&report)) {
            Ok(body) => body,
            Err(error) => {
                tracing::error!(%error, "cannot serialise the heartbeat");
                continue;
            }
        };
        let mut redis = state.dependencies.redis.clone();
        let written = redis::cmd("SET")
            .arg(&key)
            .arg(body)
            .arg("EX")
            .arg(ttl_secs)
            .query_async::<()>(&mut redis)
            .await;
        if let Err(error) = written {
            tracing::debug!(%error, "heartbeat not written");
        }
    }
}

/// `<hostname>-<pid>`: unique per process on a host, readable in `redis-cli keys`.
fn worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    format!("{host}-{}", std::process::id())
}
