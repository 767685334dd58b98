//! What the AccuNode API (`service/`) and worker (`worker/`) share.
//!
//! - [`aws`]: the SDK configuration for the model bucket and CloudWatch.
//! - [`config`]: typed settings layered from defaults, a file, `.env` and the environment.
//! - [`telemetry`]: `tracing` set up as JSON (production) or readable text (development).
//! - [`db`]: the PostgreSQL pool and the embedded migrations.
//! - [`cache`]: the Redis connection.
//! - [`dependencies`]: both connections, made and migrated in start-up order.
//! - [`domain`]: companies and predictions, read and written within the caller's scopes.
//! - [`health`]: the state of each dependency, as `/health` reports it.
//! - [`scoring`]: model bundles and default-probability scoring.
//! - [`random`]: a seeded generator for reproducible data.
//! - [`process`]: exit codes, the runtime and stop signals of every binary.
//!
pub mod aws;
pub mod cache;
pub mod config;
pub mod db;
pub mod dependencies;
pub mod domain;
pub mod health;
pub mod process;
pub mod random;
pub mod scoring;
pub mod telemetry;
