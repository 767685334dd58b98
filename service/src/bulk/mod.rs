//! Bulk uploads on the API's side: receiving and checking a file
//! ([`upload`]), storing it and recording and queueing its job ([`accept`]),
//! and streaming a job's results ([`results`]).
//!
//! Order of effects, so that a crash at any point leaves nothing half done:
//! the file is checked in a temporary file, stored whole in the uploads bucket
//! (an object no job names expires with the bucket's lifecycle rule), the job
//! is recorded, then its chunks are queued (a job recorded but not queued is
//! queued by the workers' sweep).

pub mod results;
pub mod upload;

use accunode_core::domain::bulk::{self, Job, NewJob, queue};
use accunode_core::domain::{Caller, DomainError, JobId};
use accunode_core::uploads::{UploadStore, UploadStoreError};

use self::upload::{ReceivedForm, ScanLimits, UploadError};
use crate::state::AppState;

/// Why an upload was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    #[error(transparent)]
    Upload(#[from] UploadError),
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error(transparent)]
    Store(#[from] UploadStoreError),
    #[error("checking the upload stopped: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// An accepted upload: its job, whether this request created it, and how many
/// running jobs are ahead of it.
pub struct Accepted {
    pub job: Job,
    pub created: bool,
    pub queue_position: i64,
}

/// Checks, stores, records and queues an upload for `caller`.
pub async fn accept(
    state: &AppState,
    store: &UploadStore,
    caller: &Caller,
    form: ReceivedForm,
    idempotency_key: Option<String>,
) -> Result<Accepted, AcceptError> {
    let pool = &state.dependencies.pool;
    if let Some(key) = &idempotency_key
        && let Some(job) = bulk::find_by_idempotency_key(pool, caller, key).await?
    {
        let queue_position = bulk::queue_position(pool, &job).await?;
        return Ok(Accepted {
            job,
            created: false,
            queue_position,
        });
    }
    let limits = ScanLimits {
        max_rows: state.settings.bulk.max_rows,
        chunk_rows: state.settings.bulk.chunk_rows,
    };
    let (form, scanned) = tokio::task::spawn_blocking(move || {
        let scanned = upload::scan(&form, limits);
        (form, scanned)
    })
    .await?;
    let scanned = scanned?;
    // Taken once: the job is scored by the bundle serving its kind now.
    let bundle = state.models.get(form.prediction_type);
    let id = JobId(uuid::Uuid::new_v4());
    let object_key = store.key_for(id);
    store.put_file(&object_key, &scanned.csv_path).await?;
    let new = NewJob {
        id,
        kind: form.prediction_type,
        file_name: form.file_name.clone(),
        object_key,
        columns: scanned.columns.clone(),
        total_rows: i32::try_from(scanned.total_rows).unwrap_or(i32::MAX),
        chunk_rows: i32::try_from(limits.chunk_rows).unwrap_or(i32::MAX),
        chunk_offsets: scanned.chunk_offsets.clone(),
        repeats: scanned.repeats.clone(),
        model_id: bundle.id().to_owned(),
        model_version: bundle.version().to_owned(),
        idempotency_key,
    };
    let (job, created) = bulk::create(pool, caller, &new).await?;
    if created {
        let mut redis = state.dependencies.redis.clone();
        match queue::enqueue(&mut redis, &job).await {
            Ok(()) => bulk::mark_enqueued(pool, job.id).await?,
            Err(error) => {
                tracing::warn!(job = %job.id, %error, "job recorded but not queued; the workers' sweep will queue it");
            }
        }
    }
    let queue_position = bulk::queue_position(pool, &job).await?;
    Ok(Accepted {
        job,
        created,
        queue_position,
    })
}
