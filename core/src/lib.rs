//! What the AccuNode API (`service/`) and worker (`worker/`) share.
//!
//! - [`aws`]: the SDK configuration for the model bucket and CloudWatch.
//! - [`config`]: typed settings layered from defaults, a file, `.env` and the environment.
//! - [`telemetry`]: `tracing` set up as JSON (production) or readable text (development).
//! - [`db`]: the PostgreSQL pool and the embedded migrations.
//! - [`cache`]: the Redis connection.
//! - [`dependencies`]: both connections, made and migrated in start-up order.
//! - [`domain`]: users, organisations, sessions, mail, companies, predictions and bulk jobs: every
//!   query on them, each enforcing who may do it.
//! - [`health`]: the state of each dependency, as `/health` reports it.
//! - [`scoring`]: model bundles, default-probability scoring, and CSV files scored in batches.
//! - [`process`]: exit codes, the runtime and stop signals of every binary.
//! - [`uploads`]: the bucket that keeps accepted bulk-upload files.
//! - [`published_metrics`]: the CloudWatch metrics the API and worker publish, which alarms read.
//!
pub mod aws;
pub mod cache;
pub mod config;
pub mod db;
pub mod dependencies;
pub mod domain;
pub mod health;
pub mod process;
pub mod published_metrics;
pub mod scoring;
pub mod telemetry;
pub mod uploads;
