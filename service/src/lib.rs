//! The AccuNode HTTP API: routes, middleware and start-up.
//!
//! [`startup::Application`] builds everything from [`accunode_core::config::Settings`]
//! and binds its port before serving, so tests can bind port 0 and read the port back.

pub mod api;
pub mod error;
pub mod metrics;
pub mod middleware;
pub mod startup;
