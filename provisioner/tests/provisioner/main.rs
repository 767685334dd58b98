//! The provisioner's integration tests, one binary: the `accunode` CLI's model
//! commands (score, synth, train, evaluate, push, list), the shipped
//! ensembles' recipes, Rust/Python LightGBM parity, and the stack, release
//! and deploy commands against moto.

mod bluegreen;
mod deploys;
mod ensembles;
mod faults;
mod lightgbm_python;
mod model_score;
mod model_store;
mod model_synth;
mod model_train;
mod releases;
mod stack;
mod support;
mod transit;
