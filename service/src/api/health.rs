//! `GET /health` and `GET /api/v1/health`: the API's dependencies, for the load
//! balancer (200 or 503): which is up and which down, nothing more, to
//! anyone. Why one is down (the driver's error text) and each probe's
//! latency are on the operations listener's `/health` ([`ops_health`],
//! 127.0.0.1 only). Probes are shared: one a second however many
//! requests ask ([`HealthProbe`](accunode_core::health::HealthProbe)), so
//! `/health` costs the dependencies nothing under load.

use accunode_core::scoring::ModelKind;
use poem::IntoResponse;
use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::types::{Example, ToJSON};
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};

use super::ApiTags;
use crate::state::AppState;

#[derive(Default)]
pub struct HealthApi;

/// Overall state: `ok` when every dependency answers, else `unavailable`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum HealthStatus {
    Ok,
    Unavailable,
}

/// One dependency's state.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct DependencyCheck {
    pub status: DependencyStatus,
    /// Round-trip time of the probe in milliseconds; on the operations
    /// listener only.
    pub latency_ms: Option<f64>,
    /// Why it is down; on the operations listener only, and only when down.
    pub error: Option<String>,
}

/// `up` or `down`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum DependencyStatus {
    Up,
    Down,
}

/// The dependencies `/health` probes.
#[derive(Debug, Clone, Object)]
pub struct DependencyChecks {
    pub database: DependencyCheck,
    pub redis: DependencyCheck,
}

/// A bundle in service: which model answers.
#[derive(Debug, Clone, Object)]
pub struct ModelIdentity {
    pub id: String,
    pub version: String,
}

/// The bundles serving annual and quarterly predictions.
#[derive(Debug, Clone, Object)]
pub struct ModelsInService {
    pub annual: ModelIdentity,
    pub quarterly: ModelIdentity,
}

/// The answer of `/health`.
#[derive(Debug, Clone, Object)]
#[oai(example)]
pub struct HealthBody {
    pub status: HealthStatus,
    /// Version of the running API.
    pub version: String,
    /// Names of the dependencies that are down; empty when healthy.
    pub down: Vec<String>,
    pub checks: DependencyChecks,
    /// Loaded at start and kept loaded: a process without its models does not start.
    pub models: ModelsInService,
}

impl Example for HealthBody {
    fn example() -> Self {
        let up = || DependencyCheck {
            status: DependencyStatus::Up,
            latency_ms: None,
            error: None,
        };
        HealthBody {
            status: HealthStatus::Ok,
            version: "0.1.0".into(),
            down: Vec::new(),
            checks: DependencyChecks {
                database: up(),
                redis: up(),
            },
            models: ModelsInService {
                annual: ModelIdentity {
                    id: "accunode-v1-annual".into(),
                    version: "1.0.0".into(),
                },
                quarterly: ModelIdentity {
                    id: "accunode-v1-quarterly".into(),
                    version: "1.0.0".into(),
                },
            },
        }
    }
}

#[derive(ApiResponse)]
pub enum HealthResponse {
    /// Every dependency answers.
    #[oai(status = 200)]
    Healthy(Json<HealthBody>),
    /// At least one dependency is down; `down` names which.
    #[oai(status = 503)]
    Unavailable(Json<HealthBody>),
}

#[OpenApi(tag = "ApiTags::Health")]
impl HealthApi {
    /// Health of the API and its dependencies: up or down, for load balancers.
    #[oai(path = "/health", method = "get", operation_id = "get_health")]
    async fn health(&self, state: Data<&AppState>) -> HealthResponse {
        report(&state, Detail::Public).await
    }

    /// Health of the API and its dependencies (same as `/health`, under the API prefix).
    #[oai(
        path = "/api/v1/health",
        method = "get",
        operation_id = "get_health_v1"
    )]
    async fn health_v1(&self, state: Data<&AppState>) -> HealthResponse {
        report(&state, Detail::Public).await
    }
}

/// How much `/health` tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Detail {
    /// Up or down: what anyone may know.
    Public,
    /// With latencies and error texts: for the host's operators.
    Operators,
}

/// `/health` of the operations listener (127.0.0.1): every detail.
#[poem::handler]
pub async fn ops_health(state: Data<&AppState>) -> poem::Response {
    let (status, body) = match report(&state, Detail::Operators).await {
        HealthResponse::Healthy(body) => (poem::http::StatusCode::OK, body.0),
        HealthResponse::Unavailable(body) => (poem::http::StatusCode::SERVICE_UNAVAILABLE, body.0),
    };
    poem::web::Json(body.to_json())
        .with_status(status)
        .into_response()
}

async fn report(state: &AppState, detail: Detail) -> HealthResponse {
    let report = state
        .health
        .report(&state.dependencies.pool, &state.dependencies.redis)
        .await;
    let check = |health: &accunode_core::health::DependencyHealth| DependencyCheck {
        status: if health.up {
            DependencyStatus::Up
        } else {
            DependencyStatus::Down
        },
        latency_ms: (detail == Detail::Operators).then_some(health.latency_ms),
        error: health.error.clone().filter(|_| detail == Detail::Operators),
    };
    let identity = |kind| {
        let bundle = state.models.get(kind);
        ModelIdentity {
            id: bundle.id().to_owned(),
            version: bundle.version().to_owned(),
        }
    };
    let down: Vec<String> = report.down().into_iter().map(str::to_owned).collect();
    let body = HealthBody {
        status: if down.is_empty() {
            HealthStatus::Ok
        } else {
            HealthStatus::Unavailable
        },
        version: env!("CARGO_PKG_VERSION").to_owned(),
        checks: DependencyChecks {
            database: check(&report.database),
            redis: check(&report.redis),
        },
        models: ModelsInService {
            annual: identity(ModelKind::Annual),
            quarterly: identity(ModelKind::Quarterly),
        },
        down,
    };
    if report.all_up() {
        HealthResponse::Healthy(Json(body))
    } else {
        if detail == Detail::Public {
            tracing::warn!(database = ?report.database, redis = ?report.redis, "health check failed");
        }
        HealthResponse::Unavailable(Json(body))
    }
}
