//! What every handler can reach through `Data<&AppState>`: connections,
//! settings, the serving models, the uploads bucket, sessions, password
//! hashing, the cache and the shared health probe.
//!
//! A module of its own so that handlers (`api`) and start-up (`startup`, which
//! mounts the handlers) do not import each other.

use std::sync::Arc;

use accunode_core::config::Settings;
use accunode_core::dependencies::Dependencies;
use accunode_core::health::HealthProbe;
use accunode_core::scoring::registry::Models;
use accunode_core::uploads::UploadStore;

use crate::auth::password::Passwords;
use crate::auth::sessions::Sessions;
use crate::cache::PredictionCache;
use crate::rate_limit::Throttle;

#[derive(Clone)]
pub struct AppState {
    pub dependencies: Dependencies,
    /// Where bulk uploads are kept; `None` when `BULK_UPLOAD_PATH` is unset.
    pub uploads: Option<UploadStore>,
    pub settings: Arc<Settings>,
    /// The bundles serving predictions; swapped by SIGHUP or `MODEL_RELOAD_SECS`.
    pub models: Arc<Models>,
    pub sessions: Arc<Sessions>,
    pub passwords: Passwords,
    /// Budgets keyed by what a request's body names (sign-in e-mail, session).
    pub throttle: Throttle,
    pub prediction_cache: PredictionCache,
    /// The last probe of the dependencies, shared by every `/health`.
    pub health: Arc<HealthProbe>,
}
