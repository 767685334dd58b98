//! `GET /health` and `GET /api/v1/health`: the API's dependencies, for the load
//! balancer (200 or 503) and for people (which dependency is down, and why).

use accunode_core::scoring::ModelKind;
use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::types::Example;
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
pub struct DependencyCheck {
    pub status: DependencyStatus,
    /// Round-trip time of the probe in milliseconds.
    pub latency_ms: f64,
    /// Why it is down; absent when up.
    #[oai(skip_serializing_if_is_none)]
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
            latency_ms: 0.4,
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
    /// Health of the API and its dependencies.
    #[oai(path = "/health", method = "get", operation_id = "get_health")]
    async fn health(&self, state: Data<&AppState>) -> HealthResponse {
        report(&state).await
    }

    /// Health of the API and its dependencies (same as `/health`, under the API prefix).
    #[oai(
        path = "/api/v1/health",
        method = "get",
        operation_id = "get_health_v1"
    )]
    async fn health_v1(&self, state: Data<&AppState>) -> HealthResponse {
        report(&state).await
    }
}

async fn report(state: &AppState) -> HealthResponse {
    let report = state.dependencies.health().await;
    let check = |health: &accunode_core::health::DependencyHealth| DependencyCheck {
        status: if health.up {
            DependencyStatus::Up
        } else {
            DependencyStatus::Down
        },
        latency_ms: health.latency_ms,
        error: health.error.clone(),
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
        tracing::warn!(down = ?body.down, "health check failed");
        HealthResponse::Unavailable(Json(body))
    }
}
