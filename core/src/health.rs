//! The state of each dependency, checked the same way by the API and the worker.

use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use serde::Serialize;
use sqlx::PgPool;

/// How long one dependency may take to answer before it counts as down.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// One dependency's answer to a health probe.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DependencyHealth {
    pub up: bool,
    /// Round-trip time of the probe, in milliseconds.
    pub latency_ms: f64,
    /// Why it counts as down; `None` (and absent from JSON) when up.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Every dependency of a process.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthReport {
    pub database: DependencyHealth,
    pub redis: DependencyHealth,
}

impl HealthReport {
    pub fn all_up(&self) -> bool {
        self.database.up && self.redis.up
    }

    /// Names of the dependencies that are down, for messages and logs.
    pub fn down(&self) -> Vec<&'static str> {
        [("database", &self.database), ("redis", &self.redis)]
            .into_iter()
            .filter(|(_, health)| !health.up)
            .map(|(name, _)| name)
            .collect()
    }
}

/// How long one probe answers every caller of [`HealthProbe::report`].
pub const PROBE_REUSE: Duration = Duration::from_secs(1);

/// The last probe of the dependencies and when it was taken: a health
/// endpoint anyone may call costs the dependencies one probe a second,
/// however many ask.
#[derive(Debug, Default)]
pub struct HealthProbe {
    last: tokio::sync::Mutex<Option<(Instant, HealthReport)>>,
}

impl HealthProbe {
    /// The dependencies' health, probed again only when the last probe is
    /// older than [`PROBE_REUSE`]; concurrent callers wait for one probe.
    pub async fn report(&self, pool: &PgPool, redis: &ConnectionManager) -> HealthReport {
        let mut last = self.last.lock().await;
        if let Some((taken, report)) = last.as_ref()
            && taken.elapsed() < PROBE_REUSE
        {
            return report.clone();
        }
        let report = check(pool, redis).await;
        *last = Some((Instant::now(), report.clone()));
        report
    }
}

/// Probes PostgreSQL and Redis concurrently, each bounded by a timeout.
pub async fn check(pool: &PgPool, redis: &ConnectionManager) -> HealthReport {
    let mut redis = redis.clone();
    let (database, redis) = tokio::join!(
        probe(async {
            sqlx::query_scalar::<_, i32>("SELECT 1")
                .fetch_one(pool)
                .await
                .map(drop)
                .map_err(|error| error.to_string())
        }),
        probe(async move {
            redis::cmd("PING")
                .query_async::<String>(&mut redis)
                .await
                .map(drop)
                .map_err(|error| error.to_string())
        }),
    );
    HealthReport { database, redis }
}

async fn probe(check: impl Future<Output = Result<(), String>>) -> DependencyHealth {
    let started = Instant::now();
    let outcome = match tokio::time::timeout(CHECK_TIMEOUT, check).await {
        Ok(outcome) => outcome,
        Err(_) => Err(format!("no answer within {CHECK_TIMEOUT:?}")),
    };
    DependencyHealth {
        up: outcome.is_ok(),
        latency_ms: started.elapsed().as_secs_f64() * 1000.0,
        error: outcome.err(),
    }
}
