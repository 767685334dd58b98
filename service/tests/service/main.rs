//! The API's integration tests, one binary: an in-process (or spawned) API on
//! a database of each test's own, with real PostgreSQL, Redis and moto.

mod accounts;
mod api;
mod auth;
mod bulk;
mod email;
mod hardening;
mod lists;
mod membership;
mod models;
mod python_client;
mod rate_limits;
mod resources;
mod support;
mod tenancy;
mod tls;
