//! What the modules of core's test binary share: the shipped bundles.

use std::path::{Path, PathBuf};

/// The folder of a shipped bundle, e.g. `accunode-v1-annual`.
pub fn bundle_dir(id: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models")
        .join(id)
}
