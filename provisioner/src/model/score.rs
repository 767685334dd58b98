//! `accunode model score`: scores a CSV file offline with a model bundle.
//!
//! The input is a bulk-upload file (the original's sample files load as they
//! are): any columns, among them one per feature of the bundle, named as the
//! bundle names them. The output is every input row, unchanged, followed by
//! `probability` (full precision), `risk_level`, `confidence`, one
//! `<component>_probability` per component, `model_id`, `model_version` and
//! `error`. A row that cannot be scored keeps its place, with only `error` set;
//! it never stops the run. The output appears only once complete: it is
//! written beside its final name and renamed at the end.

use std::path::{Path, PathBuf};

use accunode_core::scoring::input::parse_ratio;
use accunode_core::scoring::{Bundle, DetailedScore};
use anyhow::{Context, bail};

/// How many rows were scored and how many carry an error.
#[derive(Debug, PartialEq, Eq)]
pub struct ScoreSummary {
    pub rows: usize,
    pub errors: usize,
}

pub fn score_file(bundle: &Bundle, input: &Path, output: &Path) -> anyhow::Result<ScoreSummary> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(input)
        .with_context(|| format!("cannot read --input {}", input.display()))?;
    let headers = reader
        .headers()
        .with_context(|| format!("cannot read the header row of --input {}", input.display()))?
        .clone();

    let mut feature_columns = Vec::with_capacity(bundle.feature_count());
    for feature in &bundle.manifest().features {
        match headers
            .iter()
            .position(|header| header.trim() == feature.name)
        {
            Some(column) => feature_columns.push(column),
            None => bail!(
                "--input {} has no column {:?}; bundle {} needs the columns {}",
                input.display(),
                feature.name,
                bundle.id(),
                bundle
                    .manifest()
                    .features
                    .iter()
                    .map(|f| f.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
    let mut added: Vec<String> = ["probability", "risk_level", "confidence"]
        .map(str::to_owned)
        .into();
    added.extend(
        bundle
            .component_names()
            .map(|name| format!("{name}_probability")),
    );
    added.extend(["model_id", "model_version", "error"].map(str::to_owned));
    if let Some(clash) = added
        .iter()
        .find(|name| headers.iter().any(|h| h.trim() == name.as_str()))
    {
        bail!(
            "--input {} already has a column {clash:?}, which the output adds",
            input.display()
        );
    }

    let partial = partial_path(output);
    let result = write_scores(
        bundle,
        &mut reader,
        &headers,
        &feature_columns,
        &added,
        &partial,
    );
    match result {
        Ok(summary) => {
            std::fs::rename(&partial, output)
                .with_context(|| format!("cannot write --output {}", output.display()))?;
            Ok(summary)
        }
        Err(error) => {
            let _ = std::fs::remove_file(&partial);
            Err(error)
        }
    }
}

fn write_scores(
    bundle: &Bundle,
    reader: &mut csv::Reader<std::fs::File>,
    headers: &csv::StringRecord,
    feature_columns: &[usize],
    added: &[String],
    partial: &Path,
) -> anyhow::Result<ScoreSummary> {
    let mut writer = csv::Writer::from_path(partial)
        .with_context(|| format!("cannot create {}", partial.display()))?;
    writer.write_record(headers.iter().chain(added.iter().map(String::as_str)))?;
    let mut summary = ScoreSummary { rows: 0, errors: 0 };
    let mut row = vec![0.0; feature_columns.len()];
    let mut out: Vec<String> = Vec::with_capacity(headers.len() + added.len());
    for record in reader.records() {
        let record = record.context("cannot read a row of --input")?;
        summary.rows += 1;
        out.clear();
        // Keep the columns aligned even when a row has too few or too many fields.
        out.extend((0..headers.len()).map(|i| record.get(i).unwrap_or("").to_owned()));
        match score_record(bundle, &record, headers.len(), feature_columns, &mut row) {
            Ok(scored) => {
                out.push(scored.score.probability.to_string());
                out.push(scored.score.risk_level.as_str().to_owned());
                out.push(scored.score.confidence.to_string());
                out.extend(scored.components.iter().map(|(_, p)| p.to_string()));
                out.push(bundle.id().to_owned());
                out.push(bundle.version().to_owned());
                out.push(String::new());
            }
            Err(problem) => {
                summary.errors += 1;
                out.extend((0..added.len() - 1).map(|_| String::new()));
                let line = record.position().map_or(0, |p| p.line());
                out.push(format!("line {line}: {problem}"));
            }
        }
        writer.write_record(&out)?;
    }
    writer
        .flush()
        .with_context(|| format!("cannot write {}", partial.display()))?;
    Ok(summary)
}

fn score_record(
    bundle: &Bundle,
    record: &csv::StringRecord,
    width: usize,
    feature_columns: &[usize],
    row: &mut [f64],
) -> Result<DetailedScore, String> {
    if record.len() != width {
        return Err(format!(
            "the row has {} fields, the header {width}",
            record.len()
        ));
    }
    for ((value, column), feature) in row
        .iter_mut()
        .zip(feature_columns)
        .zip(&bundle.manifest().features)
    {
        *value = parse_ratio(&record[*column])
            .map_err(|problem| format!("{}: {problem}", feature.name))?;
    }
    bundle.score(row).map_err(|error| error.to_string())
}

fn partial_path(output: &Path) -> PathBuf {
    let mut name = output.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    output.with_file_name(name)
}
