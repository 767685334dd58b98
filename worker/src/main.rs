//! `accunode-worker`: runs the AccuNode worker, or shows the effective
//! configuration. Exit codes: 0 success, 1 runtime failure, 2 configuration or
//! usage error.

use std::process::ExitCode;

use accunode_core::config::Sources;
use accunode_core::process;
use accunode_worker::Worker;
use clap::{Parser, Subcommand};

const PROGRAM: &str = "accunode-worker";

/// The AccuNode worker: scores bulk uploads.
///
/// Job flow: accunode-api stores an accepted file under BULK_UPLOAD_PATH and
/// queues one entry per chunk of BULK_CHUNK_ROWS rows on the Redis stream
/// `accunode:bulk:chunks`. WORKER_CONCURRENCY slots each take WORKER_PREFETCH
/// entries at a time (consumer group `accunode-workers`), read the chunk's rows
/// from the bucket, validate and score them with the bundle recorded on the
/// job, and commit predictions, row errors and progress in one PostgreSQL
/// transaction before acknowledging the entry: a chunk is written once however
/// often it is delivered. Failed chunks are retried (each retry a delivery);
/// after WORKER_MAX_DELIVERIES one goes to `accunode:bulk:dead-letter` and its
/// job fails. Chunks of a worker whose heartbeat is gone are claimed at once;
/// a chunk past WORKER_CHUNK_TIME_LIMIT_SECS is abandoned and claimed.
///
/// Health on http://127.0.0.1:WORKER_HEALTH_PORT/health, counters on /metrics,
/// a heartbeat key `accunode:workers:<host>-<pid>` in Redis; SIGTERM finishes
/// the chunks being scored, then stops. Configuration is shared with
/// accunode-api (`accunode-worker config` lists it).
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
