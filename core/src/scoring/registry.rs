//! The bundles a process serves, one per model kind, swappable while it runs.
//!
//! [`Models::load`] resolves `ANNUAL_MODEL` / `QUARTERLY_MODEL` in
//! `ML_MODEL_PATH` (a folder of bundle folders, or the model bucket) and
//! refuses to start with a bundle of the wrong kind or version. [`Models::reload`]
//! resolves them again and swaps in what changed: a request holds the
//! `Arc<Bundle>` it started with, so a swap never mixes two bundles in one
//! prediction. A reload that fails keeps the bundles being served.
//!
//! A bundle is identified by id and version: a reload swaps only when one of
//! them changed (publish a new version rather than edit one in place). From the
//! bucket, a reload lists the versions and downloads only a new one.

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::store::{ModelStore, StoreError};
use super::{Bundle, BundleError, ModelKind};
use crate::config::{AwsSettings, ModelRef, ModelSettings, ModelSource};

#[derive(Debug, thiserror::Error)]
pub enum ModelsError {
    #[error("{kind} model {reference}: {source}")]
    Load {
        kind: &'static str,
        reference: String,
        source: BundleError,
    },
    #[error("{kind} model {reference}: {source}")]
    Store {
        kind: &'static str,
        reference: String,
        source: StoreError,
    },
    #[error("{kind} model {reference}: {problem}")]
    Mismatch {
        kind: &'static str,
        reference: String,
        problem: String,
    },
}

enum Source {
    Folder(std::path::PathBuf),
    S3(ModelStore),
}

/// A change made by [`Models::reload`]: the kind and the old and new `id version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Swap {
    pub kind: ModelKind,
    pub from: String,
    pub to: String,
}

pub struct Models {
    source: Source,
    annual_ref: ModelRef,
    quarterly_ref: ModelRef,
    annual: ArcSwap<Bundle>,
    quarterly: ArcSwap<Bundle>,
}

impl Source {
    async fn connect(settings: &ModelSettings, aws: &AwsSettings) -> Self {
        match &settings.source {
            ModelSource::Folder(path) => Self::Folder(path.clone()),
            ModelSource::S3(location) => Self::S3(
                ModelStore::connect(
                    location.clone(),
                    aws.endpoint_url.as_deref(),
                    Some(&aws.region),
                )
                .await,
            ),
        }
    }
}

/// Bundles by exact id and version, each loaded once: the worker scores a job
/// with the bundle recorded on it, whatever serves the API now.
pub struct PinnedBundles {
    source: Source,
    loaded: tokio::sync::Mutex<std::collections::HashMap<(String, String), Arc<Bundle>>>,
}

impl PinnedBundles {
    pub async fn connect(settings: &ModelSettings, aws: &AwsSettings) -> Self {
        Self {
            source: Source::connect(settings, aws).await,
            loaded: tokio::sync::Mutex::default(),
        }
    }

    /// Bundle `id` at `version`, which must score `kind`.
    pub async fn get(
        &self,
        kind: ModelKind,
        id: &str,
        version: &str,
    ) -> Result<Arc<Bundle>, ModelsError> {
        let key = (id.to_owned(), version.to_owned());
        let mut loaded = self.loaded.lock().await;
        if let Some(bundle) = loaded.get(&key) {
            return Ok(bundle.clone());
        }
        let reference = ModelRef {
            id: id.to_owned(),
            version: Some(version.to_owned()),
        };
        let bundle = Arc::new(resolve(&self.source, &reference, kind).await?);
        loaded.insert(key, bundle.clone());
        Ok(bundle)
    }
}

impl Models {
    /// Loads both bundles named by `settings`.
    pub async fn load(settings: &ModelSettings, aws: &AwsSettings) -> Result<Self, ModelsError> {
        let source = Source::connect(settings, aws).await;
        let annual = resolve(&source, &settings.annual, ModelKind::Annual).await?;
        let quarterly = resolve(&source, &settings.quarterly, ModelKind::Quarterly).await?;
        Ok(Self {
            source,
            annual_ref: settings.annual.clone(),
            quarterly_ref: settings.quarterly.clone(),
            annual: ArcSwap::from_pointee(annual),
            quarterly: ArcSwap::from_pointee(quarterly),
        })
    }

    /// The bundle serving `kind` now.
    pub fn get(&self, kind: ModelKind) -> Arc<Bundle> {
        self.slot(kind).load_full()
    }

    /// Resolves both bundles again and swaps in those whose id or version
    /// changed. Both resolve before either is swapped: on any error nothing
    /// changes.
    pub async fn reload(&self) -> Result<Vec<Swap>, ModelsError> {
        let mut fresh = Vec::with_capacity(2);
        for (kind, reference) in [
            (ModelKind::Annual, &self.annual_ref),
            (ModelKind::Quarterly, &self.quarterly_ref),
        ] {
            let current = self.get(kind);
            // An S3 version never changes: fetch only when the pinned (or the
            // latest published) version is not the one being served.
            let reference =
                match (&self.source, &reference.version) {
                    (Source::S3(store), None) => ModelRef {
                        id: reference.id.clone(),
                        version: Some(store.latest_version(&reference.id).await.map_err(
                            |source| ModelsError::Store {
                                kind: kind.as_str(),
                                reference: reference.to_string(),
                                source,
                            },
                        )?),
                    },
                    _ => reference.clone(),
                };
            if matches!(self.source, Source::S3(_))
                && reference.version.as_deref() == Some(current.version())
            {
                continue;
            }
            let bundle = resolve(&self.source, &reference, kind).await?;
            if bundle.id() != current.id() || bundle.version() != current.version() {
                fresh.push((kind, bundle));
            }
        }
        Ok(fresh
            .into_iter()
            .map(|(kind, bundle)| {
                let to = label(&bundle);
                let previous = self.slot(kind).swap(Arc::new(bundle));
                Swap {
                    kind,
                    from: label(&previous),
                    to,
                }
            })
            .collect())
    }

    fn slot(&self, kind: ModelKind) -> &ArcSwap<Bundle> {
        match kind {
            ModelKind::Annual => &self.annual,
            ModelKind::Quarterly => &self.quarterly,
        }
    }
}

fn label(bundle: &Bundle) -> String {
    format!("{} {}", bundle.id(), bundle.version())
}

async fn resolve(
    source: &Source,
    reference: &ModelRef,
    kind: ModelKind,
) -> Result<Bundle, ModelsError> {
    let name = kind.as_str();
    let bundle = match source {
        Source::Folder(root) => {
            let dir = root.join(&reference.id);
            // Parsing LightGBM models is CPU work: keep it off the async threads.
            tokio::task::spawn_blocking(move || Bundle::load(Path::new(&dir)))
                .await
                .expect("bundle loading does not panic")
                .map_err(|source| ModelsError::Load {
                    kind: name,
                    reference: reference.to_string(),
                    source,
                })?
        }
        Source::S3(store) => {
            let store_error = |source| ModelsError::Store {
                kind: name,
                reference: reference.to_string(),
                source,
            };
            let version = match &reference.version {
                Some(version) => version.clone(),
                None => store
                    .latest_version(&reference.id)
                    .await
                    .map_err(store_error)?,
            };
            store
                .fetch(&reference.id, &version)
                .await
                .map_err(store_error)?
        }
    };
    let mismatch = |problem: String| ModelsError::Mismatch {
        kind: name,
        reference: reference.to_string(),
        problem,
    };
    if bundle.id() != reference.id {
        return Err(mismatch(format!("the folder holds bundle {}", bundle.id())));
    }
    if let Some(version) = &reference.version
        && bundle.version() != version
    {
        return Err(mismatch(format!("found version {}", bundle.version())));
    }
    if bundle.manifest().kind != kind {
        return Err(mismatch(format!(
            "it is a {} bundle",
            bundle.manifest().kind.as_str()
        )));
    }
    Ok(bundle)
}
