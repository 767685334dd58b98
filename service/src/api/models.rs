//! `GET /api/v1/models`: the bundles serving predictions now, with the inputs
//! they accept (names, units, ranges), their components and risk thresholds, so
//! clients can validate before they send and know which model answered.

use accunode_core::scoring::{Bundle, ComponentKind};
use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::types::Example;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::ApiTags;
use crate::state::AppState;

#[derive(Default)]
pub struct ModelsApi;

/// One input ratio of a model.
#[derive(Debug, Clone, Object)]
pub struct ModelFeature {
    pub name: String,
    /// `percent` or `multiple`.
    pub unit: String,
    /// Smallest accepted value; absent when unbounded.
    #[oai(skip_serializing_if_is_none)]
    pub min: Option<f64>,
    /// Largest accepted value; absent when unbounded.
    #[oai(skip_serializing_if_is_none)]
    pub max: Option<f64>,
}

/// One component of a bundle and its weight in the ensemble.
#[derive(Debug, Clone, Object)]
pub struct ModelComponent {
    pub name: String,
    /// `binned_logistic` or `lightgbm`.
    #[oai(rename = "type")]
    pub kind: String,
    pub weight: f64,
}

/// Risk levels from the probability in percent: above `critical_above_pct`
/// CRITICAL, from `high_from_pct` HIGH, from `medium_from_pct` MEDIUM, else LOW.
#[derive(Debug, Clone, Object)]
pub struct ModelRiskThresholds {
    pub critical_above_pct: f64,
    pub high_from_pct: f64,
    pub medium_from_pct: f64,
}

/// A bundle serving one kind of prediction.
#[derive(Debug, Clone, Object)]
pub struct ServedModel {
    pub id: String,
    pub version: String,
    pub description: String,
    /// The inputs, in the model's order.
    pub features: Vec<ModelFeature>,
    pub components: Vec<ModelComponent>,
    pub risk_thresholds: ModelRiskThresholds,
}

impl From<&Bundle> for ServedModel {
    fn from(bundle: &Bundle) -> Self {
        let manifest = bundle.manifest();
        Self {
            id: manifest.id.clone(),
            version: manifest.version.clone(),
            description: manifest.description.clone(),
            features: manifest
                .features
                .iter()
                .map(|f| ModelFeature {
                    name: f.name.clone(),
                    unit: f.unit.clone(),
                    min: f.min,
                    max: f.max,
                })
                .collect(),
            components: manifest
                .components
                .iter()
                .map(|c| ModelComponent {
                    name: c.name.clone(),
                    kind: match c.kind {
                        ComponentKind::BinnedLogistic => "binned_logistic",
                        ComponentKind::Lightgbm => "lightgbm",
                    }
                    .to_owned(),
                    weight: c.weight,
                })
                .collect(),
            risk_thresholds: ModelRiskThresholds {
                critical_above_pct: manifest.risk_thresholds.critical_above_pct,
                high_from_pct: manifest.risk_thresholds.high_from_pct,
                medium_from_pct: manifest.risk_thresholds.medium_from_pct,
            },
        }
    }
}

/// The bundles serving annual and quarterly predictions.
#[derive(Debug, Clone, Object)]
#[oai(example)]
pub struct ServedModels {
    pub annual: ServedModel,
    pub quarterly: ServedModel,
}

impl Example for ServedModels {
    fn example() -> Self {
        let feature = |name: &str, unit: &str, min, max| ModelFeature {
            name: name.into(),
            unit: unit.into(),
            min,
            max,
        };
        let model = |id: &str, features| ServedModel {
            id: id.into(),
            version: "1.0.0".into(),
            description: "The original AccuNode model, reproduced exactly.".into(),
            features,
            components: vec![ModelComponent {
                name: "binned_logistic".into(),
                kind: "binned_logistic".into(),
                weight: 1.0,
            }],
            risk_thresholds: ModelRiskThresholds {
                critical_above_pct: 15.0,
                high_from_pct: 5.0,
                medium_from_pct: 2.0,
            },
        };
        Self {
            annual: model(
                "accunode-v1-annual",
                vec![
                    feature(
                        "long_term_debt_to_total_capital",
                        "percent",
                        Some(0.0),
                        Some(100.0),
                    ),
                    feature("total_debt_to_ebitda", "multiple", Some(0.0), None),
                ],
            ),
            quarterly: model(
                "accunode-v1-quarterly",
                vec![feature("sga_margin", "percent", None, None)],
            ),
        }
    }
}

#[derive(ApiResponse)]
pub enum ModelsResponse {
    /// The bundles in service now.
    #[oai(status = 200)]
    Ok(Json<ServedModels>),
}

#[OpenApi(tag = "ApiTags::Models")]
impl ModelsApi {
    /// The model bundles serving predictions, their inputs and risk thresholds.
    #[oai(path = "/api/v1/models", method = "get", operation_id = "list_models")]
    async fn list(&self, state: Data<&AppState>) -> ModelsResponse {
        use accunode_core::scoring::ModelKind;
        ModelsResponse::Ok(Json(ServedModels {
            annual: ServedModel::from(&*state.models.get(ModelKind::Annual)),
            quarterly: ServedModel::from(&*state.models.get(ModelKind::Quarterly)),
        }))
    }
}
