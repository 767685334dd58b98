//! `accunode`: the operator's CLI for the AccuNode AWS stack and its models.
//!
//! Today: model bundle commands (`accunode model score`) and shell completions.
//! The stack commands (plan, provision, destroy, status, outputs, cost) are
//! built by the provisioning work; the CLI says plainly they are not there yet.

mod model_score;
mod model_synth;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use accunode_core::scoring::Bundle;
use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
use clap_complete::Shell;

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

#[derive(Subcommand)]
enum ModelCommand {
    /// Score a CSV file offline: every row, plus probability, risk level, confidence,
    /// each component's probability and the bundle; a bad row gets an `error`, not an abort.
    Score {
        /// The bundle folder.
        #[arg(long)]
        bundle: PathBuf,
        /// A CSV file with one column per feature of the bundle (other columns are kept).
        #[arg(long)]
        input: PathBuf,
        /// Where to write the scored CSV (written whole or not at all).
        #[arg(long)]
        output: PathBuf,
    },
    /// Write a labelled SEMI-SYNTHETIC data set: real ratios resampled with 5 % jitter,
    /// labels drawn from a known default-probability function (see `true_probability`).
    Synth {
        /// The bundle whose features and accepted ranges the rows follow.
        #[arg(long)]
        bundle: PathBuf,
        /// A bulk-upload CSV of real rows to resample, e.g. shared/data/original-bulk-samples/annual.csv.
        #[arg(long)]
        from: PathBuf,
        /// How many rows to write.
        #[arg(long, default_value_t = 200_000)]
        rows: usize,
        /// Seed of the generator: the same seed gives the same file, byte for byte.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Where to write the CSV (written whole or not at all).
        #[arg(long)]
        out: PathBuf,
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
        Command::Model {
            command:
                ModelCommand::Score {
                    bundle,
                    input,
                    output,
                },
        } => {
            let loaded = Bundle::load(&bundle)
                .with_context(|| format!("cannot load --bundle {}", bundle.display()))?;
            let summary = model_score::score_file(&loaded, &input, &output)?;
            eprintln!(
                "scored {} rows with {} {} into {} ({} with an error)",
                summary.rows,
                loaded.id(),
                loaded.version(),
                output.display(),
                summary.errors
            );
            Ok(())
        }
        Command::Model {
            command:
                ModelCommand::Synth {
                    bundle,
                    from,
                    rows,
                    seed,
                    out,
                },
        } => {
            let loaded = Bundle::load(&bundle)
                .with_context(|| format!("cannot load --bundle {}", bundle.display()))?;
            let summary = model_synth::synthesise(&loaded, &from, rows, seed, &out)?;
            eprintln!(
                "wrote {} semi-synthetic rows ({} defaults, {:.2} %) resampled from {} valid rows of {} into {}",
                summary.rows,
                summary.defaults,
                100.0 * summary.defaults as f64 / summary.rows.max(1) as f64,
                summary.source_rows,
                from.display(),
                out.display()
            );
            Ok(())
        }
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "accunode", &mut script);
            std::io::stdout()
                .write_all(&script)
                .context("cannot write the completion script")
        }
    }
}
