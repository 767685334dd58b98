//! Bulk scoring jobs: accepted uploads, split into chunks of rows that workers
//! score and commit, with their counts, row errors and outcomes.
//!
//! Invariants kept here:
//! - A chunk's predictions, its row errors, its `bulk_job_chunks` row and the
//!   job's counters are committed in one transaction, and the chunk row's
//!   primary key makes any later delivery of the same chunk write nothing: a
//!   row is written once, keyed by (job, row number), however often its chunk
//!   is delivered.
//! - `processed = succeeded + failed` at every commit (a check constraint).
//! - Only the uploader and the administrators of the job's scope see a job
//!   ([`Caller::may_modify`]); to anyone else it does not exist.
//! - A cancelled or failed job takes no more chunks: the commit re-reads the
//!   job's status under its row lock and writes nothing unless it is running.
//! - A row whose company and period already have a prediction in the scope,
//!   or that repeats an earlier valid row of its file (found when the file was
//!   accepted, so the earlier row wins whatever order chunks commit in), is a
//!   `duplicate` row error.
//!
//! Bulk predictions do not count towards `MAX_PREDICTIONS_PER_USER`, which
//! governs the single-prediction routes; a job is bounded by `BULK_MAX_ROWS`
//! and the upload size instead.

pub mod queue;
pub mod rows;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Postgres, Row, Transaction};

use self::rows::{RowError, ScoredChunk, ScoredRow};
use super::companies;
use super::predictions::{Quarter, ratio_names, table};
use super::{
    AccessLevel, Caller, DomainError, JobId, OrganizationId, Page, Role, UserId, offset_limit,
    parse_column,
};
use crate::scoring::ModelKind;

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobStatus {
    Queued,
    Processing,
    Completed,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub const ALL: [JobStatus; 5] = [
        Self::Queued,
        Self::Processing,
        Self::Completed,
        Self::Failed,
        Self::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Processing => "processing",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Whether the job can still change.
    pub fn is_running(self) -> bool {
        matches!(self, Self::Queued | Self::Processing)
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobStatus {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == text)
            .ok_or_else(|| {
                format!("expected queued, processing, completed, failed or cancelled, got {text:?}")
            })
    }
}

/// A job as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: JobId,
    pub kind: ModelKind,
    pub status: JobStatus,
    pub created_by: UserId,
    pub access_level: AccessLevel,
    pub organization_id: Option<OrganizationId>,
    pub file_name: String,
    /// The upload as CSV in the uploads bucket.
    pub object_key: String,
    /// The stored header (see [`rows::Columns::from_header`]).
    pub columns: Vec<String>,
    pub total_rows: i32,
    pub chunk_rows: i32,
    /// Where each chunk starts in the object, then the object's end.
    pub chunk_offsets: Vec<i64>,
    pub chunks_done: i32,
    pub processed_rows: i32,
    pub succeeded_rows: i32,
    pub failed_rows: i32,
    pub warned_rows: i32,
    pub model_id: String,
    pub model_version: String,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

const JOB_COLUMNS: &str = "id, kind, status, created_by, access_level, organization_id, file_name, \
     object_key, columns, total_rows, chunk_rows, chunk_offsets, chunks_done, processed_rows, \
     succeeded_rows, failed_rows, warned_rows, model_id, model_version, error, created_at, \
     started_at, finished_at";

impl Job {
    fn from_row(row: &PgRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: row.try_get("id")?,
            kind: parse_column(row, "kind")?,
            status: parse_column(row, "status")?,
            created_by: row.try_get("created_by")?,
            access_level: parse_column(row, "access_level")?,
            organization_id: row.try_get("organization_id")?,
            file_name: row.try_get("file_name")?,
            object_key: row.try_get("object_key")?,
            columns: row.try_get("columns")?,
            total_rows: row.try_get("total_rows")?,
            chunk_rows: row.try_get("chunk_rows")?,
            chunk_offsets: row.try_get("chunk_offsets")?,
            chunks_done: row.try_get("chunks_done")?,
            processed_rows: row.try_get("processed_rows")?,
            succeeded_rows: row.try_get("succeeded_rows")?,
            failed_rows: row.try_get("failed_rows")?,
            warned_rows: row.try_get("warned_rows")?,
            model_id: row.try_get("model_id")?,
            model_version: row.try_get("model_version")?,
            error: row.try_get("error")?,
            created_at: row.try_get("created_at")?,
            started_at: row.try_get("started_at")?,
            finished_at: row.try_get("finished_at")?,
        })
    }

    pub fn chunk_count(&self) -> usize {
        self.chunk_offsets.len().saturating_sub(1)
    }

    /// The byte range `[start, end)` of chunk `chunk` in the object, and the
    /// data row number of its first row.
    pub fn chunk_range(&self, chunk: usize) -> Option<(u64, u64, i32)> {
        let start = *self.chunk_offsets.get(chunk)?;
        let end = *self.chunk_offsets.get(chunk + 1)?;
        let first_row = i32::try_from(chunk).ok()? * self.chunk_rows + 1;
        Some((
            u64::try_from(start).ok()?,
            u64::try_from(end).ok()?,
            first_row,
        ))
    }
}

/// What an accepted upload becomes.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub id: JobId,
    pub kind: ModelKind,
    pub file_name: String,
    pub object_key: String,
    pub columns: Vec<String>,
    pub total_rows: i32,
    pub chunk_rows: i32,
    pub chunk_offsets: Vec<i64>,
    pub model_id: String,
    pub model_version: String,
    pub idempotency_key: Option<String>,
    /// Rows that repeat an earlier valid row's company and period: (row, the
    /// earlier row), found when the file was accepted.
    pub repeats: Vec<(i32, i32)>,
}

/// The caller's job accepted earlier with this idempotency key, if any.
pub async fn find_by_idempotency_key(
    pool: &PgPool,
    caller: &Caller,
    key: &str,
) -> Result<Option<Job>, DomainError> {
    let row = sqlx::query(&format!(
        "SELECT {JOB_COLUMNS} FROM bulk_jobs WHERE created_by = $1 AND idempotency_key = $2"
    ))
    .bind(caller.user_id)
    .bind(key)
    .fetch_optional(pool)
    .await?;
    Ok(row.as_ref().map(Job::from_row).transpose()?)
}

/// Records a job in the caller's write scope, queued. With an idempotency key
/// the caller used before, the earlier job is returned instead (`false`).
pub async fn create(
    pool: &PgPool,
    caller: &Caller,
    job: &NewJob,
) -> Result<(Job, bool), DomainError> {
    let scope = caller.write_scope();
    let mut tx = pool.begin().await?;
    let row = sqlx::query(&format!(
        "INSERT INTO bulk_jobs (id, kind, created_by, access_level, organization_id, file_name, \
         object_key, columns, total_rows, chunk_rows, chunk_offsets, model_id, model_version, \
         idempotency_key) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
         ON CONFLICT (created_by, idempotency_key) DO NOTHING RETURNING {JOB_COLUMNS}"
    ))
    .bind(job.id)
    .bind(job.kind.as_str())
    .bind(caller.user_id)
    .bind(scope.access_level.as_str())
    .bind(scope.organization_id)
    .bind(&job.file_name)
    .bind(&job.object_key)
    .bind(&job.columns)
    .bind(job.total_rows)
    .bind(job.chunk_rows)
    .bind(&job.chunk_offsets)
    .bind(&job.model_id)
    .bind(&job.model_version)
    .bind(&job.idempotency_key)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        tx.rollback().await?;
        let key = job.idempotency_key.as_deref().unwrap_or_default();
        let existing = find_by_idempotency_key(pool, caller, key)
            .await?
            .ok_or(DomainError::NotFound { what: "job" })?;
        return Ok((existing, false));
    };
    if !job.repeats.is_empty() {
        let (rows, firsts): (Vec<i32>, Vec<i32>) = job.repeats.iter().copied().unzip();
        sqlx::query(
            "INSERT INTO bulk_job_repeats (job_id, row_number, first_row) \
             SELECT $1, * FROM unnest($2::int[], $3::int[])",
        )
        .bind(job.id)
        .bind(&rows)
        .bind(&firsts)
        .execute(&mut *tx)
        .await?;
    }
    let created = Job::from_row(&row)?;
    tx.commit().await?;
    Ok((created, true))
}

/// How many running jobs were accepted before this one: its place in the queue.
pub async fn queue_position(pool: &PgPool, job: &Job) -> Result<i64, DomainError> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM bulk_jobs WHERE status IN ('queued', 'processing') \
         AND (created_at, id) < ($1, $2)",
    )
    .bind(job.created_at)
    .bind(job.id)
    .fetch_one(pool)
    .await?)
}

/// Records that the job's chunks are on the queue.
pub async fn mark_enqueued(pool: &PgPool, id: JobId) -> Result<(), DomainError> {
    sqlx::query("UPDATE bulk_jobs SET enqueued_at = now() WHERE id = $1 AND enqueued_at IS NULL")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}

/// Jobs accepted more than `older_than_secs` ago whose chunks never reached the
/// queue (the API stopped between the insert and the queue).
pub async fn unqueued(pool: &PgPool, older_than_secs: i64) -> Result<Vec<Job>, DomainError> {
    let rows = sqlx::query(&format!(
        "SELECT {JOB_COLUMNS} FROM bulk_jobs WHERE enqueued_at IS NULL \
         AND created_at < now() - make_interval(secs => $1) AND status = 'queued' LIMIT 100"
    ))
    .bind(older_than_secs as f64)
    .fetch_all(pool)
    .await?;
    Ok(rows.iter().map(Job::from_row).collect::<Result<_, _>>()?)
}

/// A job the caller may see.
pub async fn get(pool: &PgPool, caller: &Caller, id: JobId) -> Result<Job, DomainError> {
    let job = find(pool, id)
        .await?
        .ok_or(DomainError::NotFound { what: "job" })?;
    if caller.may_modify(job.access_level, job.organization_id, Some(job.created_by)) {
        Ok(job)
    } else {
        Err(DomainError::NotFound { what: "job" })
    }
}

/// A job by id, for the worker (no caller: it acts for the job's uploader).
pub async fn find(pool: &PgPool, id: JobId) -> Result<Option<Job>, DomainError> {
    let row = sqlx::query(&format!(
        "SELECT {JOB_COLUMNS} FROM bulk_jobs WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    Ok(row.as_ref().map(Job::from_row).transpose()?)
}

/// Filters of the job list.
#[derive(Debug, Clone, Default)]
pub struct JobQuery {
    pub page: u32,
    pub limit: u32,
    pub status: Option<JobStatus>,
    pub kind: Option<ModelKind>,
}

/// The caller's own jobs, newest first.
pub async fn list(
    pool: &PgPool,
    caller: &Caller,
    query: &JobQuery,
) -> Result<Page<Job>, DomainError> {
    let (offset, limit) = offset_limit(query.page, query.limit);
    let filter = "created_by = $1 AND ($2::text IS NULL OR status = $2) \
                  AND ($3::text IS NULL OR kind = $3)";
    let status = query.status.map(JobStatus::as_str);
    let kind = query.kind.map(ModelKind::as_str);
    let rows = sqlx::query(&format!(
        "SELECT {JOB_COLUMNS} FROM bulk_jobs WHERE {filter} \
         ORDER BY created_at DESC, id DESC OFFSET $4 LIMIT $5"
    ))
    .bind(caller.user_id)
    .bind(status)
    .bind(kind)
    .bind(offset)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    let total: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM bulk_jobs WHERE {filter}"))
        .bind(caller.user_id)
        .bind(status)
        .bind(kind)
        .fetch_one(pool)
        .await?;
    Ok(Page {
        items: rows.iter().map(Job::from_row).collect::<Result<_, _>>()?,
        total,
        total_exact: true,
        page: Some(query.page.max(1)),
        limit: query.limit,
        next_cursor: None,
    })
}

/// Cancels a running job the caller may see: no chunk commits after this.
/// Cancelling a finished job is a conflict naming its status.
pub async fn cancel(pool: &PgPool, caller: &Caller, id: JobId) -> Result<Job, DomainError> {
    let job = get(pool, caller, id).await?;
    let row = sqlx::query(&format!(
        "UPDATE bulk_jobs SET status = 'cancelled', finished_at = now(), \
         error = 'cancelled by ' || $2 \
         WHERE id = $1 AND status IN ('queued', 'processing') RETURNING {JOB_COLUMNS}"
    ))
    .bind(job.id)
    .bind(&caller.email)
    .fetch_optional(pool)
    .await?;
    match row {
        Some(row) => Ok(Job::from_row(&row)?),
        None => {
            let now = find(pool, id)
                .await?
                .ok_or(DomainError::NotFound { what: "job" })?;
            Err(DomainError::Conflict(format!(
                "the job is {} already; only a queued or processing job can be cancelled",
                now.status
            )))
        }
    }
}

/// Marks a queued job as processing (its first chunk is being scored).
pub async fn start(pool: &PgPool, id: JobId) -> Result<(), DomainError> {
    sqlx::query(
        "UPDATE bulk_jobs SET status = 'processing', started_at = coalesce(started_at, now()) \
         WHERE id = $1 AND status = 'queued'",
    )
    .bind(id)
    .execute(pool)
    .await?;
    Ok(())
}

/// Fails a running job with `reason` (its chunk was dead-lettered).
pub async fn fail(pool: &PgPool, id: JobId, reason: &str) -> Result<(), DomainError> {
    sqlx::query(
        "UPDATE bulk_jobs SET status = 'failed', finished_at = now(), error = $2 \
         WHERE id = $1 AND status IN ('queued', 'processing')",
    )
    .bind(id)
    .bind(reason)
    .execute(pool)
    .await?;
    Ok(())
}

/// What committing a chunk did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkCommit {
    Committed {
        succeeded: i32,
        failed: i32,
    },
    /// An earlier delivery committed it; nothing was written.
    AlreadyDone,
    /// The job is no longer running; nothing was written.
    JobStopped(JobStatus),
}

/// Timings recorded with a chunk.
#[derive(Debug, Clone)]
pub struct ChunkTiming {
    pub worker_id: String,
    pub queued_ms: i64,
    pub duration_ms: i64,
}

/// Writes a scored chunk: its companies and predictions in the job's scope,
/// its row errors (a row that collides with an existing prediction becomes a
/// `duplicate` error), the chunk's row and the job's counters, in one
/// transaction (see the module's invariants).
pub async fn commit_chunk(
    pool: &PgPool,
    job: &Job,
    chunk: i32,
    scored: &ScoredChunk,
    component_names: &[String],
    timing: &ChunkTiming,
) -> Result<ChunkCommit, DomainError> {
    let mut tx = pool.begin().await?;
    // First: a concurrent delivery of the same chunk waits here on the key,
    // then finds it taken and writes nothing.
    let claimed = sqlx::query(
        "INSERT INTO bulk_job_chunks (job_id, chunk, rows, succeeded, failed, worker_id, \
         queued_ms, duration_ms) VALUES ($1, $2, 0, 0, 0, $3, $4, $5) ON CONFLICT DO NOTHING",
    )
    .bind(job.id)
    .bind(chunk)
    .bind(&timing.worker_id)
    .bind(timing.queued_ms)
    .bind(timing.duration_ms)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if claimed == 0 {
        return Ok(ChunkCommit::AlreadyDone);
    }
    let repeats = repeats_between(&mut tx, job, scored).await?;
    let mut errors: Vec<(i32, RowError, &'static str)> = scored
        .errors
        .iter()
        .map(|(row, error)| (*row, error.clone(), "invalid"))
        .collect();
    let (repeated, fresh): (Vec<&ScoredRow>, Vec<&ScoredRow>) = scored
        .scored
        .iter()
        .partition(|row| repeats.contains_key(&row.row_number));
    for row in repeated {
        let first = repeats[&row.row_number];
        errors.push((
            row.row_number,
            repeat_error(job.kind, row, first),
            "duplicate",
        ));
    }
    upsert_companies(&mut tx, job, &fresh).await?;
    let inserted = insert_predictions(&mut tx, job, &fresh, component_names).await?;
    let mut succeeded = 0;
    let mut warned = 0;
    for row in fresh {
        if inserted.contains(&row.row_number) {
            succeeded += 1;
            warned += i32::from(!row.warnings.is_empty());
        } else {
            errors.push((row.row_number, duplicate_error(job.kind, row), "duplicate"));
        }
    }
    errors.sort_by_key(|(row, _, _)| *row);
    insert_errors(&mut tx, job.id, &errors).await?;
    let failed = i32::try_from(errors.len()).unwrap_or(i32::MAX);
    sqlx::query("UPDATE bulk_job_chunks SET rows = $3, succeeded = $4, failed = $5 WHERE job_id = $1 AND chunk = $2")
        .bind(job.id)
        .bind(chunk)
        .bind(succeeded + failed)
        .bind(succeeded)
        .bind(failed)
        .execute(&mut *tx)
        .await?;
    // Last, under the job's row lock: a cancel that got here first wins.
    let status: Option<String> = sqlx::query_scalar(
        "UPDATE bulk_jobs SET processed_rows = processed_rows + $2 + $3, \
         succeeded_rows = succeeded_rows + $2, failed_rows = failed_rows + $3, \
         warned_rows = warned_rows + $4, chunks_done = chunks_done + 1, \
         started_at = coalesce(started_at, now()), \
         status = CASE WHEN chunks_done + 1 = chunk_count THEN 'completed' ELSE 'processing' END, \
         finished_at = CASE WHEN chunks_done + 1 = chunk_count THEN now() END \
         WHERE id = $1 AND status IN ('queued', 'processing') RETURNING status",
    )
    .bind(job.id)
    .bind(succeeded)
    .bind(failed)
    .bind(warned)
    .fetch_optional(&mut *tx)
    .await?;
    if status.is_none() {
        let now: String = sqlx::query_scalar("SELECT status FROM bulk_jobs WHERE id = $1")
            .bind(job.id)
            .fetch_one(&mut *tx)
            .await?;
        tx.rollback().await?;
        return Ok(ChunkCommit::JobStopped(
            now.parse()
                .map_err(|problem: String| sqlx::Error::Decode(problem.into()))?,
        ));
    }
    tx.commit().await?;
    Ok(ChunkCommit::Committed { succeeded, failed })
}

fn period(kind: ModelKind, row: &ScoredRow) -> String {
    let input = &row.input;
    format!(
        "a {} prediction for {} {}{}",
        kind.as_str(),
        input.company.symbol,
        input.reporting_year,
        input
            .reporting_quarter
            .map(|quarter| format!(" {quarter}"))
            .unwrap_or_default()
    )
}

fn duplicate_error(kind: ModelKind, row: &ScoredRow) -> RowError {
    RowError {
        column: None,
        value: None,
        message: format!(
            "duplicate: {} already exists in this scope",
            period(kind, row)
        ),
    }
}

fn repeat_error(kind: ModelKind, row: &ScoredRow, first: i32) -> RowError {
    RowError {
        column: None,
        value: None,
        message: format!(
            "duplicate: row {first} of the file is {} too",
            period(kind, row)
        ),
    }
}

/// The chunk's rows that repeat an earlier row of the file, with that row.
async fn repeats_between(
    tx: &mut Transaction<'_, Postgres>,
    job: &Job,
    scored: &ScoredChunk,
) -> Result<HashMap<i32, i32>, DomainError> {
    let rows = scored
        .scored
        .iter()
        .map(|row| row.row_number)
        .chain(scored.errors.iter().map(|(row, _)| *row));
    let (Some(first), Some(last)) = (rows.clone().min(), rows.max()) else {
        return Ok(HashMap::new());
    };
    let found = sqlx::query(
        "SELECT row_number, first_row FROM bulk_job_repeats \
         WHERE job_id = $1 AND row_number BETWEEN $2 AND $3",
    )
    .bind(job.id)
    .bind(first)
    .bind(last)
    .fetch_all(&mut **tx)
    .await?;
    found
        .iter()
        .map(|row| Ok((row.try_get("row_number")?, row.try_get("first_row")?)))
        .collect::<Result<_, sqlx::Error>>()
        .map_err(Into::into)
}

/// Creates the chunk's companies in the job's scope, or fills a missing market
/// cap or sector of existing ones the uploader may modify, as single
/// predictions do: the first row of a symbol names it, the first row with a
/// value gives each optional field.
/// Every company of the chunk stays locked until the chunk commits (`ON
/// CONFLICT DO UPDATE` locks a conflicting row even when its `WHERE` is
/// false): a change of its sector waits, then rewrites the copy the chunk's
/// predictions take (`company_sector`).
async fn upsert_companies(
    tx: &mut Transaction<'_, Postgres>,
    job: &Job,
    rows: &[&ScoredRow],
) -> Result<(), DomainError> {
    let mut order: Vec<&str> = Vec::new();
    let mut companies: HashMap<&str, (&str, Option<f64>, Option<&str>)> = HashMap::new();
    for row in rows {
        let company = &row.input.company;
        let entry = companies.entry(company.symbol.as_str()).or_insert_with(|| {
            order.push(&company.symbol);
            (&company.name, None, None)
        });
        entry.1 = entry.1.or(company.market_cap);
        entry.2 = entry.2.or(company.sector.as_deref());
    }
    if order.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = order.iter().map(|symbol| companies[symbol].0).collect();
    let caps: Vec<Option<f64>> = order.iter().map(|symbol| companies[symbol].1).collect();
    let sectors: Vec<Option<&str>> = order.iter().map(|symbol| companies[symbol].2).collect();
    let uploader: Option<(String, Option<OrganizationId>)> =
        sqlx::query_as("SELECT role, organization_id FROM users WHERE id = $1 AND is_active")
            .bind(job.created_by)
            .fetch_optional(&mut **tx)
            .await?;
    // As the uploader is now: one demoted or removed since the upload no
    // longer fills blanks of others' companies.
    let administers = match uploader {
        Some((role, member_of)) => role
            .parse::<Role>()
            .map_err(|problem| sqlx::Error::Decode(problem.into()))?
            .administers(member_of, job.access_level, job.organization_id),
        None => false,
    };
    sqlx::query(&format!(
        "INSERT INTO companies (symbol, name, market_cap, sector, access_level, organization_id, created_by) \
         SELECT symbol, name, market_cap, sector, $5, $6, $7 \
         FROM unnest($1::text[], $2::text[], $3::float8[], $4::text[]) AS t(symbol, name, market_cap, sector) \
         ORDER BY symbol {}",
        companies::fill_blanks_on_conflict(administers)
    ))
    .bind(&order)
    .bind(&names)
    .bind(&caps)
    .bind(&sectors)
    .bind(job.access_level.as_str())
    .bind(job.organization_id)
    .bind(job.created_by)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Inserts the chunk's predictions, skipping rows that collide with an
/// existing prediction; returns the row numbers written. Rows go in by
/// company and period (then row number, so the earlier of two equal rows
/// wins): every chunk takes its index locks in one order, and chunks of
/// overlapping companies committed at once never deadlock.
async fn insert_predictions(
    tx: &mut Transaction<'_, Postgres>,
    job: &Job,
    rows: &[&ScoredRow],
    component_names: &[String],
) -> Result<HashSet<i32>, DomainError> {
    if rows.is_empty() {
        return Ok(HashSet::new());
    }
    let ratio_columns = ratio_names(job.kind);
    let row_numbers: Vec<i32> = rows.iter().map(|row| row.row_number).collect();
    let symbols: Vec<&str> = rows
        .iter()
        .map(|row| row.input.company.symbol.as_str())
        .collect();
    let years: Vec<i32> = rows.iter().map(|row| row.input.reporting_year).collect();
    let quarters: Vec<Option<&str>> = rows
        .iter()
        .map(|row| row.input.reporting_quarter.map(Quarter::as_str))
        .collect();
    let probabilities: Vec<f64> = rows.iter().map(|row| row.score.probability).collect();
    let risk_levels: Vec<&str> = rows
        .iter()
        .map(|row| row.score.risk_level.as_str())
        .collect();
    let confidences: Vec<f64> = rows.iter().map(|row| row.score.confidence).collect();
    let components: Vec<String> = rows
        .iter()
        .map(|row| {
            let map: serde_json::Map<String, serde_json::Value> = component_names
                .iter()
                .cloned()
                .zip(row.components.iter().map(|p| serde_json::Value::from(*p)))
                .collect();
            serde_json::Value::Object(map).to_string()
        })
        .collect();
    // One text per row, warnings separated by a newline (none holds one).
    let warnings: Vec<String> = rows.iter().map(|row| row.warnings.join("\n")).collect();
    let ratio_arrays: Vec<Vec<Option<f64>>> = (0..ratio_columns.len())
        .map(|index| rows.iter().map(|row| row.input.ratios[index]).collect())
        .collect();
    let ratio_params = (0..ratio_columns.len())
        .map(|index| format!("${}::float8[]", index + 13))
        .collect::<Vec<_>>()
        .join(", ");
    let ratio_list = ratio_columns.join(", ");
    let ratio_selected = ratio_columns
        .iter()
        .map(|name| format!("t.{name}"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "INSERT INTO {table} (company_id, reporting_year, reporting_quarter, probability, risk_level, \
         confidence, component_probabilities, model_id, model_version, access_level, organization_id, \
         created_by, warnings, bulk_job_id, bulk_row, company_sector, {ratio_list}) \
         SELECT c.id, t.reporting_year, t.reporting_quarter, t.probability, t.risk_level, t.confidence, \
                t.components::jsonb, $9, $10, $11, $12, $13_user, \
                CASE WHEN t.warnings = '' THEN '{{}}'::text[] ELSE string_to_array(t.warnings, E'\\n') END, \
                $14_job, t.row_number, lower(c.sector), {ratio_selected} \
         FROM unnest($1::int[], $2::text[], $3::int[], $4::text[], $5::float8[], $6::text[], \
                     $7::float8[], $8::text[], $X_warnings::text[], {ratio_params}) \
              AS t(row_number, symbol, reporting_year, reporting_quarter, probability, risk_level, \
                   confidence, components, warnings, {ratio_list}) \
         JOIN companies c ON c.scope_key = $S_scope AND c.symbol = t.symbol \
         ORDER BY t.symbol, t.reporting_year, t.reporting_quarter, t.row_number \
         ON CONFLICT DO NOTHING RETURNING bulk_row",
        table = table(job.kind),
    );
    // Parameters after the ratio arrays, numbered once their count is known.
    let after = 13 + ratio_columns.len();
    let sql = sql
        .replace("$13_user", &format!("${after}"))
        .replace("$14_job", &format!("${}", after + 1))
        .replace("$X_warnings", &format!("${}", after + 2))
        .replace("$S_scope", &format!("${}", after + 3));
    let mut query = sqlx::query(&sql)
        .bind(&row_numbers)
        .bind(&symbols)
        .bind(&years)
        .bind(&quarters)
        .bind(&probabilities)
        .bind(&risk_levels)
        .bind(&confidences)
        .bind(&components)
        .bind(&job.model_id)
        .bind(&job.model_version)
        .bind(job.access_level.as_str())
        .bind(job.organization_id);
    for ratios in &ratio_arrays {
        query = query.bind(ratios);
    }
    let scope = super::scope_key(job.access_level, job.organization_id, Some(job.created_by));
    let written = query
        .bind(job.created_by)
        .bind(job.id)
        .bind(&warnings)
        .bind(scope)
        .fetch_all(&mut **tx)
        .await?;
    written
        .iter()
        .map(|row| row.try_get::<i32, _>("bulk_row"))
        .collect::<Result<_, sqlx::Error>>()
        .map_err(Into::into)
}

async fn insert_errors(
    tx: &mut Transaction<'_, Postgres>,
    job: JobId,
    errors: &[(i32, RowError, &'static str)],
) -> Result<(), DomainError> {
    if errors.is_empty() {
        return Ok(());
    }
    let rows: Vec<i32> = errors.iter().map(|(row, _, _)| *row).collect();
    let columns: Vec<Option<&str>> = errors.iter().map(|(_, e, _)| e.column.as_deref()).collect();
    let values: Vec<Option<&str>> = errors.iter().map(|(_, e, _)| e.value.as_deref()).collect();
    let codes: Vec<&str> = errors.iter().map(|(_, _, code)| *code).collect();
    let messages: Vec<&str> = errors.iter().map(|(_, e, _)| e.message.as_str()).collect();
    sqlx::query(
        "INSERT INTO bulk_job_errors (job_id, row_number, column_name, value, code, message) \
         SELECT $1, * FROM unnest($2::int[], $3::text[], $4::text[], $5::text[], $6::text[])",
    )
    .bind(job)
    .bind(&rows)
    .bind(&columns)
    .bind(&values)
    .bind(&codes)
    .bind(&messages)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// One row error as listed.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRowError {
    pub row_number: i32,
    pub column: Option<String>,
    pub value: Option<String>,
    pub code: String,
    pub message: String,
}

/// A job's row errors, in row order, paged.
pub async fn errors(
    pool: &PgPool,
    caller: &Caller,
    id: JobId,
    page: u32,
    limit: u32,
) -> Result<Page<StoredRowError>, DomainError> {
    let job = get(pool, caller, id).await?;
    let (offset, limit_rows) = offset_limit(page, limit);
    let rows = sqlx::query(
        "SELECT row_number, column_name, value, code, message FROM bulk_job_errors \
         WHERE job_id = $1 ORDER BY row_number OFFSET $2 LIMIT $3",
    )
    .bind(job.id)
    .bind(offset)
    .bind(limit_rows)
    .fetch_all(pool)
    .await?;
    Ok(Page {
        items: rows
            .iter()
            .map(|row| {
                Ok(StoredRowError {
                    row_number: row.try_get("row_number")?,
                    column: row.try_get("column_name")?,
                    value: row.try_get("value")?,
                    code: row.try_get("code")?,
                    message: row.try_get("message")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()?,
        total: i64::from(job.failed_rows),
        total_exact: true,
        page: Some(page.max(1)),
        limit,
        next_cursor: None,
    })
}

/// What became of one row, for the results file.
#[derive(Debug, Clone, PartialEq)]
pub enum RowOutcome {
    Scored {
        probability: f64,
        risk_level: String,
        confidence: f64,
        /// By component name.
        components: std::collections::BTreeMap<String, f64>,
        model_id: String,
        model_version: String,
        warnings: Vec<String>,
    },
    Failed {
        message: String,
    },
}

/// The outcomes of rows `first..=last` of a job, by row number (rows not yet
/// processed are absent).
pub async fn outcomes(
    pool: &PgPool,
    job: &Job,
    first: i32,
    last: i32,
) -> Result<HashMap<i32, RowOutcome>, DomainError> {
    let mut outcomes = HashMap::new();
    let scored = sqlx::query(&format!(
        "SELECT bulk_row, probability, risk_level, confidence, component_probabilities, \
         model_id, model_version, warnings FROM {} \
         WHERE bulk_job_id = $1 AND bulk_row BETWEEN $2 AND $3",
        table(job.kind)
    ))
    .bind(job.id)
    .bind(first)
    .bind(last)
    .fetch_all(pool)
    .await?;
    for row in &scored {
        let components: sqlx::types::Json<std::collections::BTreeMap<String, f64>> =
            row.try_get("component_probabilities")?;
        outcomes.insert(
            row.try_get("bulk_row")?,
            RowOutcome::Scored {
                probability: row.try_get("probability")?,
                risk_level: row.try_get("risk_level")?,
                confidence: row.try_get("confidence")?,
                components: components.0,
                model_id: row.try_get("model_id")?,
                model_version: row.try_get("model_version")?,
                warnings: row.try_get("warnings")?,
            },
        );
    }
    let failed = sqlx::query(
        "SELECT row_number, message FROM bulk_job_errors \
         WHERE job_id = $1 AND row_number BETWEEN $2 AND $3",
    )
    .bind(job.id)
    .bind(first)
    .bind(last)
    .fetch_all(pool)
    .await?;
    for row in &failed {
        outcomes.insert(
            row.try_get("row_number")?,
            RowOutcome::Failed {
                message: row.try_get("message")?,
            },
        );
    }
    Ok(outcomes)
}

/// The component names of the job's predictions (from one of them), for the
/// results file's columns.
pub async fn component_names(pool: &PgPool, job: &Job) -> Result<Vec<String>, DomainError> {
    let components: Option<sqlx::types::Json<std::collections::BTreeMap<String, f64>>> =
        sqlx::query_scalar(&format!(
            "SELECT component_probabilities FROM {} WHERE bulk_job_id = $1 LIMIT 1",
            table(job.kind)
        ))
        .bind(job.id)
        .fetch_optional(pool)
        .await?;
    Ok(components
        .map(|components| components.0.into_keys().collect())
        .unwrap_or_default())
}
