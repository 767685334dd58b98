//! Tests across crates, one binary: the API and the worker on one database,
//! and the workspace's structural rules checked on its source.

mod layout;
mod stack;
