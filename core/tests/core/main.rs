//! `accunode-core`'s integration tests, one binary: the shipped bundles
//! against the original's rule, the LightGBM component, and CSV files scored
//! in batches.

mod csv_batch;
mod lightgbm;
mod scoring;
mod support;
