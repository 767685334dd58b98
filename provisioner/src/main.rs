//! `accunode`: the operator's CLI for the AccuNode AWS stack.
//!
//! The stack commands (plan, provision, destroy, status, outputs, cost) are
//! built by the provisioning work; until then the CLI offers shell completions
//! and says plainly that the rest is not there yet.

use std::io::Write;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use clap_complete::Shell;

/// Provisions and operates the AccuNode AWS stack.
///
/// Not yet available: `plan`, `provision`, `destroy`, `status`, `outputs` and
/// `cost` arrive with the provisioning work.
#[derive(Parser)]
#[command(name = "accunode", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print a shell completion script, e.g. `accunode completions bash > /etc/bash_completion.d/accunode`.
    Completions {
        /// The shell to complete for.
        shell: Shell,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "accunode", &mut script);
            match std::io::stdout().write_all(&script) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("accunode: cannot write the completion script: {error}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
