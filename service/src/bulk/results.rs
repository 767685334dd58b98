//! A job's results file, streamed: every input row in input order, as it was
//! uploaded, followed by its outcome (probability in full precision, risk
//! level, confidence, each component's probability, the bundle, the
//! fitted-range warnings) or its error. Read one chunk at a time from the
//! uploads bucket and the database, so memory does not grow with the job.

use accunode_core::domain::bulk::{self, Job, RowOutcome};
use accunode_core::uploads::UploadStore;
use futures::Stream;
use sqlx::PgPool;

/// Why the next part of the file could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    #[error(transparent)]
    Domain(#[from] accunode_core::domain::DomainError),
    #[error(transparent)]
    Store(#[from] accunode_core::uploads::UploadStoreError),
    #[error("the stored file does not parse: {0}")]
    Csv(#[from] csv::Error),
}

/// The results file of `job` as a stream of CSV parts (the header, then one
/// part per chunk).
pub async fn stream(
    pool: PgPool,
    store: UploadStore,
    job: Job,
) -> Result<impl Stream<Item = Result<bytes::Bytes, ResultsError>> + Send + 'static, ResultsError> {
    let components = bulk::component_names(&pool, &job).await?;
    let mut header: Vec<String> = job.columns.clone();
    header.extend(["probability", "risk_level", "confidence"].map(str::to_owned));
    header.extend(components.iter().map(|name| format!("{name}_probability")));
    header.extend(["model_id", "model_version", "warnings", "error"].map(str::to_owned));
    let first = csv_line(&header)?;
    let state = (pool, store, job, components, Some(first), 0usize);
    Ok(futures::stream::try_unfold(
        state,
        |(pool, store, job, components, header, chunk)| async move {
            if let Some(header) = header {
                return Ok(Some((header, (pool, store, job, components, None, chunk))));
            }
            let Some((start, end, first_row)) = job.chunk_range(chunk) else {
                return Ok(None);
            };
            let part = chunk_part(&pool, &store, &job, &components, start, end, first_row).await?;
            Ok(Some((
                part,
                (pool, store, job, components, None, chunk + 1),
            )))
        },
    ))
}

fn csv_line(fields: &[String]) -> Result<bytes::Bytes, ResultsError> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(fields)?;
    Ok(writer
        .into_inner()
        .map_err(|error| csv::Error::from(error.into_error()))?
        .into())
}

async fn chunk_part(
    pool: &PgPool,
    store: &UploadStore,
    job: &Job,
    components: &[String],
    start: u64,
    end: u64,
    first_row: i32,
) -> Result<bytes::Bytes, ResultsError> {
    let data = store.get_range(&job.object_key, start, end).await?;
    let last_row = first_row + job.chunk_rows - 1;
    let outcomes = bulk::outcomes(pool, job, first_row, last_row).await?;
    let not_scored = if job.status.is_running() {
        "not scored yet"
    } else {
        "not scored: the job stopped before this row"
    };
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .has_headers(false)
        .from_reader(data.as_ref());
    let mut writer = csv::Writer::from_writer(Vec::with_capacity(data.len() * 2));
    let mut record = csv::StringRecord::new();
    let mut row_number = first_row;
    let mut fields: Vec<String> = Vec::new();
    while reader.read_record(&mut record)? {
        if record.len() == 1 && record[0].trim().is_empty() {
            continue;
        }
        fields.clear();
        fields.extend((0..job.columns.len()).map(|i| record.get(i).unwrap_or("").to_owned()));
        match outcomes.get(&row_number) {
            Some(RowOutcome::Scored {
                probability,
                risk_level,
                confidence,
                components: probabilities,
                model_id,
                model_version,
                warnings,
            }) => {
                fields.push(probability.to_string());
                fields.push(risk_level.clone());
                fields.push(confidence.to_string());
                fields.extend(components.iter().map(|name| {
                    probabilities
                        .get(name)
                        .map(ToString::to_string)
                        .unwrap_or_default()
                }));
                fields.push(model_id.clone());
                fields.push(model_version.clone());
                fields.push(warnings.join("; "));
                fields.push(String::new());
            }
            outcome => {
                fields.extend((0..components.len() + 6).map(|_| String::new()));
                fields.push(match outcome {
                    Some(RowOutcome::Failed { message }) => message.clone(),
                    _ => not_scored.to_owned(),
                });
            }
        }
        writer.write_record(&fields)?;
        row_number += 1;
    }
    Ok(writer
        .into_inner()
        .map_err(|error| csv::Error::from(error.into_error()))?
        .into())
}
