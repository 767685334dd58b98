//! What every AccuNode binary does around its own work: load settings, set up
//! logging, run on a Tokio runtime, stop on a signal, and map the outcome to an
//! exit code (0 success, 1 runtime failure, 2 configuration error).

use std::future::Future;
use std::process::ExitCode;

use crate::config::{Settings, Sources};
use crate::telemetry;

/// Exit code of a configuration or usage error, as clap uses for usage errors.
pub const CONFIG_ERROR_EXIT: u8 = 2;

/// Loads settings and runs `work` on a multi-threaded runtime. Configuration
/// errors print one line to standard error and exit with code 2.
pub fn run_with_settings<F, Fut>(program: &str, sources: &Sources, work: F) -> ExitCode
where
    F: FnOnce(Settings) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let settings = match Settings::load(sources) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("{program}: configuration error: {error}");
            return ExitCode::from(CONFIG_ERROR_EXIT);
        }
    };
    telemetry::init(&settings.log);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("{program}: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(work(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(
                error = format!("{error:#}"),
                "{program} stopped on an error"
            );
            eprintln!("{program}: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Prints every configuration key with its effective value (secrets redacted),
/// origin and meaning, one `KEY=value  # origin; meaning` line each.
pub fn print_config(program: &str, sources: &Sources) -> ExitCode {
    match Settings::describe(sources) {
        Ok(keys) => {
            for key in keys {
                let value = key.shown_value.unwrap_or_else(|| "(unset)".into());
                println!("{}={value}\t# {}; {}", key.name, key.origin, key.help);
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{program}: configuration error: {error}");
            ExitCode::from(CONFIG_ERROR_EXIT)
        }
    }
}

/// Completes on SIGTERM (how systemd, Auto Scaling scale-in and `scripts/down`
/// stop a process) or on Ctrl-C.
pub async fn stop_requested() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM; only Ctrl-C stops this process");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = terminate => tracing::info!("SIGTERM received, stopping"),
        _ = tokio::signal::ctrl_c() => tracing::info!("Ctrl-C received, stopping"),
    }
}
