//! The AccuNode HTTP API: routes, middleware and start-up.
//!
//! [`startup::Application`] builds everything from [`accunode_core::config::Settings`]
//! and binds its port before serving, so tests can bind port 0 and read the port back.

pub mod api;
pub mod auth;
pub mod body;
pub mod bulk;
pub mod cache;
pub mod cloudwatch;
pub mod control_characters;
pub mod email;
pub mod error;
pub mod framework_errors;
pub mod headers;
pub mod metrics;
pub mod middleware;
pub mod rate_limit;
pub mod startup;
pub mod state;
