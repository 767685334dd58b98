//! `accunode-api`: serves the AccuNode HTTP API, applies migrations, or shows the
//! effective configuration. Exit codes: 0 success, 1 runtime failure,
//! 2 configuration or usage error.

use std::process::ExitCode;

use accunode_core::config::Sources;
use accunode_core::{db, process};
use accunode_service::startup::Application;
use anyhow::Context;
use clap::{Parser, Subcommand};

const PROGRAM: &str = "accunode-api";

/// The AccuNode HTTP API.
///
/// Configuration comes from the environment (DATABASE_URL, REDIS_URL,
/// JWT_SECRET_KEY, APP_ENV, APP_HOST, APP_PORT, ...), a `.env` file and an
/// optional TOML file (ACCUNODE_CONFIG or ./accunode.toml); `accunode-api config`
/// lists every key with its value and origin.
#[derive(Parser)]
#[command(name = PROGRAM, version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Apply pending migrations, serve the API, drain and stop on SIGTERM or Ctrl-C (the default).
    Serve,
    /// Apply pending database migrations and exit (safe to repeat).
    Migrate,
    /// Print every configuration key, its effective value (secrets redacted) and origin.
    Config,
}

fn main() -> ExitCode {
    let sources = Sources::from_process();
    match Cli::parse().command.unwrap_or(Command::Serve) {
        Command::Config => process::print_config(PROGRAM, &sources),
        Command::Serve => process::run_with_settings(PROGRAM, &sources, |settings| async {
            let application = Application::build(settings).await?;
            application
                .run_until_stopped(process::stop_requested())
                .await?;
            tracing::info!("API stopped");
            Ok(())
        }),
        Command::Migrate => process::run_with_settings(PROGRAM, &sources, |settings| async move {
            let pool = db::connect(&settings.database)
                .await
                .context("connecting to PostgreSQL")?;
            db::migrate(&pool).await.context("migrating the database")?;
            tracing::info!(
                migrations = db::MIGRATOR.iter().count(),
                "database schema is up to date"
            );
            Ok(())
        }),
    }
}
