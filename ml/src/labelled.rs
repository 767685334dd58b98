//! Labelled data for `accunode model train` and `model evaluate`: a CSV with one
//! column per feature, a `default` column (`0` or `1`) and, when the data is
//! semi-synthetic (`accunode model synth`), the `true_probability` of each row.
//!
//! Training is strict: a row with an unreadable or out-of-range ratio, or a
//! label other than 0/1, stops the run with its line and column, because a
//! model silently fitted on part of a file is worse than no model.

use std::path::{Path, PathBuf};

use accunode_core::scoring::FeatureSpec;
use accunode_core::scoring::input::parse_ratio;
use anyhow::{Context, bail};
use sha2::{Digest, Sha256};

pub const LABEL_COLUMN: &str = "default";
pub const TRUE_PROBABILITY_COLUMN: &str = "true_probability";

/// A labelled data set, rows in feature order, `NaN` = Missing.
#[derive(Debug)]
pub struct LabelledData {
    pub path: PathBuf,
    /// SHA-256 of the file's bytes, hex.
    pub sha256: String,
    pub width: usize,
    /// Row-major, `width` values per row.
    pub rows: Vec<f64>,
    pub labels: Vec<bool>,
    /// Present when the file carries the known true probability of each row.
    pub true_probabilities: Option<Vec<f64>>,
}

impl LabelledData {
    /// Reads `path` for `features`; `flag` names the CLI flag in errors.
    pub fn read(path: &Path, features: &[FeatureSpec], flag: &str) -> anyhow::Result<Self> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read {flag} {}", path.display()))?;
        let sha256 = hex(&Sha256::digest(&bytes));
        let mut reader = csv::ReaderBuilder::new().from_reader(&bytes[..]);
        let headers = reader
            .headers()
            .with_context(|| format!("{flag} {}: cannot read the header row", path.display()))?
            .clone();
        let column = |name: &str| headers.iter().position(|h| h.trim() == name);
        let feature_columns: Vec<usize> = features
            .iter()
            .map(|f| {
                column(&f.name).with_context(|| {
                    format!("{flag} {} has no column {:?}", path.display(), f.name)
                })
            })
            .collect::<anyhow::Result<_>>()?;
        let label_column = column(LABEL_COLUMN).with_context(|| {
            format!(
                "{flag} {} has no column {LABEL_COLUMN:?} (1 = defaulted, 0 = did not)",
                path.display()
            )
        })?;
        let truth_column = column(TRUE_PROBABILITY_COLUMN);

        let mut data = Self {
            path: path.to_owned(),
            sha256,
            width: features.len(),
            rows: Vec::new(),
            labels: Vec::new(),
            true_probabilities: truth_column.map(|_| Vec::new()),
        };
        for (index, record) in reader.records().enumerate() {
            // Line 1 is the header.
            let line = index + 2;
            let at = || format!("{flag} {} line {line}", path.display());
            let record = record.with_context(at)?;
            for (feature, &c) in features.iter().zip(&feature_columns) {
                let text = record.get(c).unwrap_or("");
                let value = parse_ratio(text).map_err(|problem| {
                    anyhow::anyhow!("{}, column {}: {problem}", at(), feature.name)
                })?;
                if !value.is_nan() && !feature.accepts(value) {
                    bail!(
                        "{}, column {}: {value} is out of range, it must be {}",
                        at(),
                        feature.name,
                        feature.range_text()
                    );
                }
                data.rows.push(value);
            }
            data.labels
                .push(match record.get(label_column).map(str::trim) {
                    Some("1") => true,
                    Some("0") => false,
                    other => bail!(
                        "{}, column {LABEL_COLUMN}: expected 0 or 1, got {:?}",
                        at(),
                        other.unwrap_or("")
                    ),
                });
            if let (Some(c), Some(truths)) = (truth_column, data.true_probabilities.as_mut()) {
                let text = record.get(c).unwrap_or("").trim();
                match text.parse::<f64>() {
                    Ok(p) if (0.0..=1.0).contains(&p) => truths.push(p),
                    _ => bail!(
                        "{}, column {TRUE_PROBABILITY_COLUMN}: expected a probability in [0, 1], got {text:?}",
                        at()
                    ),
                }
            }
        }
        if data.labels.is_empty() {
            bail!("{flag} {} has no data rows", path.display());
        }
        Ok(data)
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn row(&self, index: usize) -> &[f64] {
        &self.rows[index * self.width..(index + 1) * self.width]
    }

    pub fn defaults(&self) -> usize {
        self.labels.iter().filter(|&&label| label).count()
    }

    /// The rows at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> Self {
        Self {
            path: self.path.clone(),
            sha256: self.sha256.clone(),
            width: self.width,
            rows: indices
                .iter()
                .flat_map(|&i| self.row(i).iter().copied())
                .collect(),
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            true_probabilities: self
                .true_probabilities
                .as_ref()
                .map(|truths| indices.iter().map(|&i| truths[i]).collect()),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
