//! `accunode-worker`: runs the AccuNode worker, or shows the effective
//! configuration. Exit codes: 0 success, 1 runtime failure, 2 configuration or
//! usage error.

use std::process::ExitCode;

use accunode_core::config::Sources;
use accunode_core::process;
use accunode_worker::Worker;
use clap::{Parser, Subcommand};

const PROGRAM: &str = "accunode-worker";

/// The AccuNode worker.
///
/// Not yet processing jobs: bulk-upload scoring arrives with its own issue.
/// Today it connects to PostgreSQL and Redis, applies migrations, reports its
/// health on http://127.0.0.1:WORKER_HEALTH_PORT/health and as a heartbeat key
/// `accunode:workers:<host>-<pid>` in Redis, and stops cleanly on SIGTERM.
/// Configuration is shared with accunode-api (`accunode-worker config` lists it).
#[derive(Parser)]
#[command(name = PROGRAM, version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run until SIGTERM or Ctrl-C (the default).
    Run,
    /// Print every configuration key, its effective value (secrets redacted) and origin.
    Config,
}

fn main() -> ExitCode {
    let sources = Sources::from_process();
    match Cli::parse().command.unwrap_or(Command::Run) {
        Command::Config => process::print_config(PROGRAM, &sources),
        Command::Run => process::run_with_settings(PROGRAM, &sources, |settings| async {
            let worker = Worker::build(settings).await?;
            worker.run_until_stopped(process::stop_requested()).await
        }),
    }
}
