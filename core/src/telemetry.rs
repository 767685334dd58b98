//! Logging set-up shared by the API and the worker.
//!
//! JSON lines in production (one object per event, with the fields of the
//! enclosing spans, so a request's `request_id` is on every line it logs) and
//! readable text in development. Logs go to standard output; errors that stop
//! start-up are printed to standard error by the binaries themselves.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

use crate::config::{LogFormat, LogSettings};

/// Installs the global subscriber. Calling it twice keeps the first one, so tests
/// that build several applications in one process do not fail.
pub fn init(settings: &LogSettings) {
    // The filter was validated when the settings were loaded.
    let filter = EnvFilter::try_new(&settings.filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_span_events(FmtSpan::NONE)
        .with_target(true);
    let result = match settings.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(true)
            .try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .try_init(),
    };
    // An error only means a subscriber is already installed.
    drop(result);
}
