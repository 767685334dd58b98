//! Scores a CSV file of bulk-upload rows with a bundle, streaming, in batches.
//!
//! The input has any columns, among them one per feature of the bundle, named
//! as the bundle names them (surrounding spaces ignored; the original's sample
//! files load as they are). The output is every input row, unchanged, followed
//! by `probability` (full precision), `risk_level`, `confidence`, one
//! `<component>_probability` per component, `model_id`, `model_version`,
//! `warnings` and `error`. A ratio outside its fitted range is scored, and its
//! [`RangeWarning`](super::RangeWarning) goes in `warnings` (`;` between
//! several, empty when none). A row that cannot be scored (text that is not a
//! number, an infinite value, the wrong number of fields) keeps its place, with
//! only `error` set; it never stops the run. Rows are read and written as a
//! stream and scored [`BATCH_ROWS`] at a time with [`Bundle::score_batch`], so
//! memory does not grow with the file. This is `accunode model score`'s engine:
//! a file of the bundle's own features, scored offline. The worker's bulk jobs
//! (rows with companies and periods, stored as predictions) are scored by
//! `domain::bulk::rows`, in the same batches.

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

use super::input::parse_ratio;
use super::{BatchError, BatchOutput, Bundle};

/// Rows scored per [`Bundle::score_batch`] call: large enough that each
/// component runs over many rows at once, small enough to stay in cache.
pub const BATCH_ROWS: usize = 4096;

/// How many rows were read, how many carry an error, and how many were scored
/// with a fitted-range warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScoreSummary {
    pub rows: usize,
    pub errors: usize,
    pub warned: usize,
}

/// Why a file could not be scored. Row problems are not errors: they go in
/// the row's `error` column. `input` / `output` name the files as the caller
/// wants them named (e.g. `--input data.csv`).
#[derive(Debug, thiserror::Error)]
pub enum CsvScoringError {
    #[error("cannot read {input}: {source}")]
    Open { input: String, source: csv::Error },
    #[error("cannot read the header row of {input}: {source}")]
    Header { input: String, source: csv::Error },
    #[error("{input} has no column {column:?}; bundle {bundle} needs the columns {needed}")]
    MissingColumn {
        input: String,
        column: String,
        bundle: String,
        needed: String,
    },
    #[error("{input} already has a column {column:?}, which the output adds")]
    ColumnClash { input: String, column: String },
    #[error("cannot read a row of {input}: {source}")]
    Row { input: String, source: csv::Error },
    #[error("cannot write {output}: {source}")]
    Write { output: String, source: csv::Error },
    #[error("cannot write {output}: {source}")]
    Io { output: String, source: io::Error },
    #[error("bundle {bundle} failed: {source}")]
    Model { bundle: String, source: BatchError },
}

/// Scores `input_path` into `output_path`, which appears only once complete:
/// rows go to a `.partial` file beside it, renamed at the end (and removed on
/// failure). `input_name` / `output_name` name the files in errors.
pub fn score_file(
    bundle: &Bundle,
    input_path: &Path,
    input_name: &str,
    output_path: &Path,
    output_name: &str,
) -> Result<ScoreSummary, CsvScoringError> {
    let reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(input_path)
        .map_err(|source| CsvScoringError::Open {
            input: input_name.to_owned(),
            source,
        })?;
    let mut layout = Layout::read(bundle, reader, input_name)?;
    let partial = partial_path(output_path);
    let written = std::fs::File::create(&partial)
        .map_err(|source| CsvScoringError::Io {
            output: partial.display().to_string(),
            source,
        })
        .and_then(|file| layout.score_into(bundle, file, &partial.display().to_string()));
    match written {
        Ok(summary) => {
            std::fs::rename(&partial, output_path).map_err(|source| CsvScoringError::Io {
                output: output_name.to_owned(),
                source,
            })?;
            Ok(summary)
        }
        Err(error) => {
            // Best effort: the partial file is ours and never seen as the output.
            let _ = std::fs::remove_file(&partial);
            Err(error)
        }
    }
}

/// Scores CSV text from `input` into `output` (see the module documentation).
pub fn score_csv(
    bundle: &Bundle,
    input: impl io::Read,
    input_name: &str,
    output: impl io::Write,
    output_name: &str,
) -> Result<ScoreSummary, CsvScoringError> {
    let reader = csv::ReaderBuilder::new().flexible(true).from_reader(input);
    Layout::read(bundle, reader, input_name)?.score_into(bundle, output, output_name)
}

/// An input whose header is read: where each feature is, what the output adds.
struct Layout<R> {
    reader: csv::Reader<R>,
    input_name: String,
    headers: csv::StringRecord,
    feature_columns: Vec<usize>,
    added: Vec<String>,
}

impl<R: io::Read> Layout<R> {
    fn read(
        bundle: &Bundle,
        mut reader: csv::Reader<R>,
        input_name: &str,
    ) -> Result<Self, CsvScoringError> {
        let headers = reader
            .headers()
            .map_err(|source| CsvScoringError::Header {
                input: input_name.to_owned(),
                source,
            })?
            .clone();
        let features = &bundle.manifest().features;
        let mut feature_columns = Vec::with_capacity(features.len());
        for feature in features {
            let column = headers
                .iter()
                .position(|header| header.trim() == feature.name)
                .ok_or_else(|| CsvScoringError::MissingColumn {
                    input: input_name.to_owned(),
                    column: feature.name.clone(),
                    bundle: bundle.id().to_owned(),
                    needed: features
                        .iter()
                        .map(|f| f.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                })?;
            feature_columns.push(column);
        }
        let mut added: Vec<String> = ["probability", "risk_level", "confidence"]
            .map(str::to_owned)
            .into();
        added.extend(
            bundle
                .component_names()
                .map(|name| format!("{name}_probability")),
        );
        added.extend(["model_id", "model_version", "warnings", "error"].map(str::to_owned));
        if let Some(clash) = added
            .iter()
            .find(|name| headers.iter().any(|h| h.trim() == name.as_str()))
        {
            return Err(CsvScoringError::ColumnClash {
                input: input_name.to_owned(),
                column: clash.clone(),
            });
        }
        Ok(Self {
            reader,
            input_name: input_name.to_owned(),
            headers,
            feature_columns,
            added,
        })
    }

    fn score_into(
        &mut self,
        bundle: &Bundle,
        output: impl io::Write,
        output_name: &str,
    ) -> Result<ScoreSummary, CsvScoringError> {
        let write_error = |source| CsvScoringError::Write {
            output: output_name.to_owned(),
            source,
        };
        let mut writer = csv::Writer::from_writer(output);
        writer
            .write_record(
                self.headers
                    .iter()
                    .chain(self.added.iter().map(String::as_str)),
            )
            .map_err(write_error)?;
        let mut summary = ScoreSummary {
            rows: 0,
            errors: 0,
            warned: 0,
        };
        let mut batch = Batch::new(bundle.feature_count());
        let mut record = csv::StringRecord::new();
        loop {
            let more =
                self.reader
                    .read_record(&mut record)
                    .map_err(|source| CsvScoringError::Row {
                        input: self.input_name.clone(),
                        source,
                    })?;
            if more {
                summary.rows += 1;
                batch.push(bundle, &record, self.headers.len(), &self.feature_columns);
            }
            if batch.len() == BATCH_ROWS || (!more && batch.len() > 0) {
                let (errors, warned) =
                    batch.write(bundle, &mut writer, self.added.len(), output_name)?;
                summary.errors += errors;
                summary.warned += warned;
            }
            if !more {
                break;
            }
        }
        writer.flush().map_err(|source| CsvScoringError::Io {
            output: output_name.to_owned(),
            source,
        })?;
        Ok(summary)
    }
}

/// Up to [`BATCH_ROWS`] input rows: their text as read, and either a parsed
/// feature row (scored together) with its warnings or the problem that stops
/// it being scored.
struct Batch {
    fields: Vec<Vec<String>>,
    problems: Vec<Option<String>>,
    /// The `warnings` cell of each row: empty (no allocation) for most.
    warnings: Vec<String>,
    valid_rows: Vec<f64>,
    row: Vec<f64>,
    output: BatchOutput,
    out: Vec<String>,
}

impl Batch {
    fn new(width: usize) -> Self {
        Self {
            fields: Vec::with_capacity(BATCH_ROWS),
            problems: Vec::with_capacity(BATCH_ROWS),
            warnings: Vec::with_capacity(BATCH_ROWS),
            valid_rows: Vec::with_capacity(BATCH_ROWS * width),
            row: vec![0.0; width],
            output: BatchOutput::default(),
            out: Vec::new(),
        }
    }

    fn len(&self) -> usize {
        self.fields.len()
    }

    fn push(
        &mut self,
        bundle: &Bundle,
        record: &csv::StringRecord,
        header_width: usize,
        feature_columns: &[usize],
    ) {
        // Keep the columns aligned even when a row has too few or too many fields.
        self.fields.push(
            (0..header_width)
                .map(|i| record.get(i).unwrap_or("").to_owned())
                .collect(),
        );
        let problem = self.parse(bundle, record, header_width, feature_columns);
        let mut warnings = String::new();
        if problem.is_none() {
            self.valid_rows.extend_from_slice(&self.row);
            if bundle.has_range_warning(&self.row) {
                for (index, warning) in bundle.range_warnings(&self.row).iter().enumerate() {
                    let separator = if index > 0 { ";" } else { "" };
                    // Writing to a String cannot fail.
                    let _ = write!(warnings, "{separator}{warning}");
                }
            }
        }
        self.warnings.push(warnings);
        let line = record.position().map_or(0, |p| p.line());
        self.problems
            .push(problem.map(|problem| format!("line {line}: {problem}")));
    }

    fn parse(
        &mut self,
        bundle: &Bundle,
        record: &csv::StringRecord,
        header_width: usize,
        feature_columns: &[usize],
    ) -> Option<String> {
        if record.len() != header_width {
            return Some(format!(
                "the row has {} fields, the header {header_width}",
                record.len()
            ));
        }
        for ((value, column), feature) in self
            .row
            .iter_mut()
            .zip(feature_columns)
            .zip(&bundle.manifest().features)
        {
            match parse_ratio(&record[*column]) {
                Ok(parsed) => *value = parsed,
                Err(problem) => return Some(format!("{}: {problem}", feature.name)),
            }
        }
        bundle
            .validate(&self.row)
            .err()
            .map(|error| error.to_string())
    }

    /// Scores the valid rows, writes every row in input order, empties the
    /// batch and returns how many rows had an error and how many a warning.
    fn write(
        &mut self,
        bundle: &Bundle,
        writer: &mut csv::Writer<impl io::Write>,
        added: usize,
        output_name: &str,
    ) -> Result<(usize, usize), CsvScoringError> {
        self.output.scores.clear();
        if !self.valid_rows.is_empty() {
            bundle
                .score_batch(&self.valid_rows, &mut self.output)
                .map_err(|source| CsvScoringError::Model {
                    bundle: bundle.id().to_owned(),
                    source,
                })?;
        }
        let components = bundle.component_names().count();
        let mut scored = self.output.scores.iter().zip(
            self.output
                .component_probabilities
                .chunks_exact(components.max(1)),
        );
        let (mut errors, mut warned) = (0, 0);
        let rows = self
            .fields
            .drain(..)
            .zip(self.problems.drain(..))
            .zip(self.warnings.drain(..));
        for ((fields, problem), warnings) in rows {
            self.out.clear();
            self.out.extend(fields);
            match problem {
                None => {
                    let (score, probabilities) =
                        scored.next().expect("score_batch scores every valid row");
                    self.out.push(score.probability.to_string());
                    self.out.push(score.risk_level.as_str().to_owned());
                    self.out.push(score.confidence.to_string());
                    self.out
                        .extend(probabilities.iter().map(ToString::to_string));
                    self.out.push(bundle.id().to_owned());
                    self.out.push(bundle.version().to_owned());
                    warned += usize::from(!warnings.is_empty());
                    self.out.push(warnings);
                    self.out.push(String::new());
                }
                Some(problem) => {
                    errors += 1;
                    self.out.extend((0..added - 1).map(|_| String::new()));
                    self.out.push(problem);
                }
            }
            writer
                .write_record(&self.out)
                .map_err(|source| CsvScoringError::Write {
                    output: output_name.to_owned(),
                    source,
                })?;
        }
        self.valid_rows.clear();
        Ok((errors, warned))
    }
}

fn partial_path(output: &Path) -> PathBuf {
    let mut name = output.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    output.with_file_name(name)
}
