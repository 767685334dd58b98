//! `accunode`: the operator's CLI for the AccuNode AWS stack and its models.
//!
//! Today: model bundle commands (`accunode model score|synth|train|evaluate`)
//! and shell completions.
//! The stack commands (plan, provision, destroy, status, outputs, cost) are
//! built by the provisioning work; the CLI says plainly they are not there yet.

mod model;

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
use clap_complete::Shell;

use crate::model::ModelCommand;

/// Provisions and operates the AccuNode AWS stack, and manages model bundles.
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
    /// Work with model bundles (folders with a manifest.json, such as models/accunode-v1-annual).
    Model {
        #[command(subcommand)]
        command: ModelCommand,
    },
    /// Print a shell completion script, e.g. `accunode completions bash > /etc/bash_completion.d/accunode`.
    Completions {
        /// The shell to complete for.
        shell: Shell,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("accunode: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Model { command } => model::run(command),
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "accunode", &mut script);
            std::io::stdout()
                .write_all(&script)
                .context("cannot write the completion script")
        }
    }
}
