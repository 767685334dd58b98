//! Tests across crates, one binary: the API and the worker on one database,
//! the workspace's structural rules checked on its source, and migrations
//! that an older release can live with.

mod layout;
mod migrations;
mod stack;
