//! Training and evaluation of AccuNode's model bundles, behind `accunode model`.
//!
//! - [`train`]: a bundle from labelled data: quantile-binned logistic regression
//!   (written in the original system's JSON layout) and a monotone LightGBM,
//!   with holdout metrics; byte-identical output for the same data and seed.
//! - [`evaluate`]: a bundle's metrics and calibration table on labelled data.
//! - [`synth`]: labelled SEMI-SYNTHETIC data from real rows and a documented
//!   true-probability function.
//! - `labelled`: strict reading of labelled CSV files (line and column of the
//!   first bad value).
//! - [`metrics`]: ROC AUC, KS, Brier, log loss, calibration, error against the truth.
//! - [`random`]: the seeded generator that makes all of the above reproducible.
//!
//! Scoring itself (bundles, components, CSV files scored in batches) is in
//! `accunode_core::scoring`, which the API and the worker share; this crate
//! only makes and judges bundles, so neither server links the numeric crates.

pub mod evaluate;
mod labelled;
pub mod metrics;
pub mod random;
pub mod synth;
pub mod train;
