//! `accunode model …`: the commands of the people who own the models: score a
//! file offline, make semi-synthetic labelled data, train and evaluate bundles,
//! publish them to the model bucket and list what is published.
//!
//! A thin adapter: training, evaluation and synthesis are `accunode_ml`'s,
//! scoring a file is `accunode_core::scoring::csv_batch` (the worker's engine
//! too), and the bucket is `accunode_core::scoring::store`.

use std::path::{Path, PathBuf};

use accunode_core::scoring::csv_batch;
use accunode_core::scoring::store::{ModelStore, S3Location};
use accunode_core::scoring::{Bundle, ModelKind};
use accunode_ml::{evaluate, synth, train};
use anyhow::Context;
use clap::{Subcommand, ValueEnum};

#[derive(Subcommand)]
pub enum ModelCommand {
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
        /// The bundle whose features and fitted ranges the rows follow.
        #[arg(long)]
        bundle: PathBuf,
        /// A bulk-upload CSV of real rows to resample, e.g. data/original-bulk-samples/annual.csv.
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
    /// Train a bundle (binned logistic + monotone LightGBM) from labelled data, with holdout
    /// metrics in its manifest. The same data, seed and options give byte-identical files.
    Train {
        /// Which ratios the model takes.
        #[arg(long, value_enum)]
        kind: Kind,
        /// A CSV with one column per ratio of the kind and `default` (0 or 1), such as
        /// `accunode model synth` writes; a `true_probability` column is used when present.
        #[arg(long)]
        data: PathBuf,
        /// The bundle folder to create (it must not exist).
        #[arg(long)]
        out: PathBuf,
        /// Seed of the train/holdout split and of LightGBM.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Share of the rows held out for the metrics.
        #[arg(long, default_value_t = 0.2)]
        holdout: f64,
        /// Quantile bins per ratio for the binned logistic.
        #[arg(long, default_value_t = 10)]
        bins: usize,
        /// Boosting rounds of the LightGBM component.
        #[arg(long, default_value_t = 200)]
        lightgbm_rounds: u32,
        /// The bundle's id [default: accunode-<kind>-trained].
        #[arg(long)]
        id: Option<String>,
        /// The bundle's version.
        #[arg(long, default_value = "1.0.0")]
        version: String,
    },
    /// Print a bundle's metrics on labelled data (ROC AUC, KS, Brier, log loss, bias, per
    /// component) and a calibration table; on semi-synthetic data, the error against the truth.
    Evaluate {
        /// The bundle folder.
        #[arg(long)]
        bundle: PathBuf,
        /// Labelled CSV, as for `accunode model train`.
        #[arg(long)]
        data: PathBuf,
        /// `text` for people, `json` for programs.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Publish a bundle to the model bucket as <prefix>/<id>/<version>/ (versions never change:
    /// pushing an existing version fails). Honours AWS_ENDPOINT_URL and the AWS credential chain.
    Push {
        /// The bundle folder.
        #[arg(long)]
        bundle: PathBuf,
        /// The model bucket and prefix, e.g. s3://accunode-models/models.
        #[arg(long, env = "ACCUNODE_MODEL_STORE")]
        to: String,
        /// AWS region [default: from the AWS configuration chain].
        #[arg(long)]
        region: Option<String>,
    },
    /// List the bundle versions published in the model bucket.
    List {
        /// The model bucket and prefix, e.g. s3://accunode-models/models.
        #[arg(long, env = "ACCUNODE_MODEL_STORE")]
        from: String,
        /// AWS region [default: from the AWS configuration chain].
        #[arg(long)]
        region: Option<String>,
        /// `text` for people, `json` for programs.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Kind {
    Annual,
    Quarterly,
}

impl From<Kind> for ModelKind {
    fn from(kind: Kind) -> Self {
        match kind {
            Kind::Annual => Self::Annual,
            Kind::Quarterly => Self::Quarterly,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

/// The model store at `location` (`flag` names it in errors), on a runtime
/// of its own: these are the only async commands.
fn with_store<T>(
    location: &str,
    flag: &str,
    region: Option<&str>,
    work: impl AsyncFnOnce(ModelStore) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let location = S3Location::parse(location).with_context(|| format!("invalid {flag}"))?;
    let endpoint = std::env::var("AWS_ENDPOINT_URL")
        .ok()
        .filter(|url| !url.is_empty());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let store = ModelStore::connect(location, endpoint.as_deref(), region).await;
        work(store).await
    })
}

fn load(bundle: &Path) -> anyhow::Result<Bundle> {
    Bundle::load(bundle).with_context(|| format!("cannot load --bundle {}", bundle.display()))
}

pub fn run(command: ModelCommand) -> anyhow::Result<()> {
    match command {
        ModelCommand::Score {
            bundle,
            input,
            output,
        } => {
            let loaded = load(&bundle)?;
            let summary = csv_batch::score_file(
                &loaded,
                &input,
                &format!("--input {}", input.display()),
                &output,
                &format!("--output {}", output.display()),
            )?;
            eprintln!(
                "scored {} rows with {} {} into {} ({} with an error, {} with a fitted-range warning)",
                summary.rows,
                loaded.id(),
                loaded.version(),
                output.display(),
                summary.errors,
                summary.warned
            );
        }
        ModelCommand::Synth {
            bundle,
            from,
            rows,
            seed,
            out,
        } => {
            let loaded = load(&bundle)?;
            let summary = synth::synthesise(&loaded, &from, rows, seed, &out)?;
            eprintln!(
                "wrote {} semi-synthetic rows ({} defaults, {:.2} %) resampled from {} valid rows of {} into {}",
                summary.rows,
                summary.defaults,
                100.0 * summary.defaults as f64 / summary.rows.max(1) as f64,
                summary.source_rows,
                from.display(),
                out.display()
            );
        }
        ModelCommand::Train {
            kind,
            data,
            out,
            seed,
            holdout,
            bins,
            lightgbm_rounds,
            id,
            version,
        } => {
            let kind = ModelKind::from(kind);
            let id = id.unwrap_or_else(|| {
                format!(
                    "accunode-{}-trained",
                    match kind {
                        ModelKind::Annual => "annual",
                        ModelKind::Quarterly => "quarterly",
                    }
                )
            });
            let report = train::train(&train::TrainOptions {
                kind,
                data,
                out: out.clone(),
                seed,
                holdout,
                bins,
                lightgbm_rounds,
                id,
                version,
            })?;
            eprintln!(
                "trained on {} rows, held out {}; wrote {}",
                report.train_rows,
                report.holdout_rows,
                out.display()
            );
            let mut lines = vec![("bundle".to_owned(), report.ensemble)];
            lines.extend(report.components);
            for (name, m) in lines {
                eprintln!(
                    "  {name:<16} holdout ROC AUC {:.4}  KS {:.4}  Brier {:.5}",
                    m.roc_auc, m.ks, m.brier
                );
            }
        }
        ModelCommand::Push { bundle, to, region } => {
            let published = with_store(&to, "--to", region.as_deref(), async |store| {
                let published = store
                    .push(&bundle)
                    .await
                    .with_context(|| format!("cannot push --bundle {}", bundle.display()))?;
                Ok((published, store.location().to_string()))
            })?;
            let (published, location) = published;
            eprintln!(
                "published {} {} ({}) to {location}/{}/{}/",
                published.id,
                published.version,
                published.components.join(" + "),
                published.id,
                published.version
            );
        }
        ModelCommand::List {
            from,
            region,
            output,
        } => {
            let published = with_store(&from, "--from", region.as_deref(), async |store| {
                store
                    .list()
                    .await
                    .context("cannot list the published bundles")
            })?;
            match output {
                Output::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&published).context("cannot serialise")?
                ),
                Output::Text => {
                    println!(
                        "{:<32} {:<10} {:<10} {:<26} components",
                        "id", "version", "kind", "published"
                    );
                    for bundle in &published {
                        println!(
                            "{:<32} {:<10} {:<10} {:<26} {}",
                            bundle.id,
                            bundle.version,
                            serde_json::to_value(bundle.kind)
                                .ok()
                                .and_then(|kind| kind.as_str().map(str::to_owned))
                                .unwrap_or_default(),
                            bundle.published_at.as_deref().unwrap_or("-"),
                            bundle.components.join(", ")
                        );
                    }
                }
            }
        }
        ModelCommand::Evaluate {
            bundle,
            data,
            output,
        } => {
            let evaluation = evaluate::evaluate(&load(&bundle)?, &data)?;
            match output {
                Output::Text => print!("{}", evaluation.to_text()),
                Output::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&evaluation).context("cannot serialise")?
                ),
            }
        }
    }
    Ok(())
}
