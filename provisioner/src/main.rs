//! `accunode`: the operator's CLI for the AccuNode AWS stack and its models.
//!
//! The stack commands (`plan`, `provision`, `destroy`, `status`, `outputs`,
//! `cost`), the model bundle commands (`accunode model …`) and shell completions.

mod model;
mod stack;

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
use clap_complete::Shell;

use crate::model::ModelCommand;
use crate::stack::{StackArgs, StackCommand};

/// Provisions and operates the AccuNode AWS stack, and manages model bundles.
#[derive(Parser)]
#[command(name = "accunode", version)]
struct Cli {
    #[command(flatten)]
    stack: StackArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    #[command(flatten)]
    Stack(StackCommand),
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
        Ok(code) => code,
        Err(error) => {
            eprintln!("accunode: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Stack(command) => stack::run(cli.stack, command),
        Command::Model { command } => model::run(command).map(|()| ExitCode::SUCCESS),
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "accunode", &mut script);
            std::io::stdout()
                .write_all(&script)
                .context("cannot write the completion script")?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
