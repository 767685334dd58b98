-- Bulk scoring: jobs, the chunks that are done, row errors, and predictions
-- that know which job row they came from and which fitted ranges they left.
--
-- A job's file is split into chunks (row ranges). A chunk's predictions, its
-- errors, its `bulk_job_chunks` row and the job's counters are written in one
-- transaction, and the chunk row's primary key makes a second delivery of the
-- same chunk write nothing: rows are keyed by (job, row number).

CREATE TABLE bulk_jobs (
    id               uuid PRIMARY KEY,
    kind             text NOT NULL CHECK (kind IN ('annual', 'quarterly')),
    status           text NOT NULL DEFAULT 'queued'
                     CHECK (status IN ('queued', 'processing', 'completed', 'failed', 'cancelled')),
    -- The uploader, and the scope the job's companies and predictions go to.
    created_by       uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    access_level     text NOT NULL CHECK (access_level IN ('personal', 'organization', 'system')),
    organization_id  uuid REFERENCES organizations (id) ON DELETE CASCADE,
    scope_key        text NOT NULL GENERATED ALWAYS AS (scope_key(access_level, organization_id, created_by)) STORED,
    file_name        text NOT NULL CHECK (length(file_name) <= 255),
    -- The upload as CSV (XLSX converted), in the uploads bucket.
    object_key       text NOT NULL,
    columns          text[] NOT NULL,
    total_rows       integer NOT NULL CHECK (total_rows > 0),
    chunk_rows       integer NOT NULL CHECK (chunk_rows > 0),
    -- Byte offset in the object where each chunk starts, then the end: chunk i
    -- is bytes [chunk_offsets[i+1], chunk_offsets[i+2]) (1-based arrays).
    chunk_offsets    bigint[] NOT NULL,
    chunk_count      integer NOT NULL GENERATED ALWAYS AS (cardinality(chunk_offsets) - 1) STORED,
    chunks_done      integer NOT NULL DEFAULT 0,
    processed_rows   integer NOT NULL DEFAULT 0,
    succeeded_rows   integer NOT NULL DEFAULT 0,
    failed_rows      integer NOT NULL DEFAULT 0,
    -- Rows with at least one fitted-range warning (scored, counted as succeeded).
    warned_rows      integer NOT NULL DEFAULT 0,
    model_id         text NOT NULL,
    model_version    text NOT NULL,
    idempotency_key  text CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    -- Why the job failed, or what cancelled it.
    error            text,
    -- When its chunks were put on the queue; NULL until then (a crash between
    -- the insert and the queue is repaired by the workers' sweep).
    enqueued_at      timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz,
    CHECK (succeeded_rows + failed_rows = processed_rows),
    CHECK (processed_rows <= total_rows),
    CHECK (chunks_done <= chunk_count),
    CHECK (access_level <> 'organization' OR organization_id IS NOT NULL),
    UNIQUE (created_by, idempotency_key)
);
CREATE INDEX bulk_jobs_created_by_idx ON bulk_jobs (created_by, created_at DESC, id DESC);
CREATE INDEX bulk_jobs_scope_idx ON bulk_jobs (scope_key, created_at DESC, id DESC);
CREATE INDEX bulk_jobs_unqueued_idx ON bulk_jobs (created_at) WHERE enqueued_at IS NULL;

CREATE TABLE bulk_job_chunks (
    job_id       uuid NOT NULL REFERENCES bulk_jobs (id) ON DELETE CASCADE,
    chunk        integer NOT NULL,
    rows         integer NOT NULL,
    succeeded    integer NOT NULL,
    failed       integer NOT NULL,
    worker_id    text NOT NULL,
    -- From the chunk's first delivery to its commit.
    queued_ms    bigint NOT NULL,
    duration_ms  bigint NOT NULL,
    finished_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, chunk)
);

CREATE TABLE bulk_job_errors (
    job_id       uuid NOT NULL REFERENCES bulk_jobs (id) ON DELETE CASCADE,
    -- Data row number, 1 for the first row after the header.
    row_number   integer NOT NULL,
    column_name  text,
    value        text,
    code         text NOT NULL CHECK (code IN ('invalid', 'duplicate')),
    message      text NOT NULL,
    PRIMARY KEY (job_id, row_number)
);

-- Predictions carry the fitted-range warnings they were scored with, and the
-- job row they came from (no foreign key: a million checks per job, and a job
-- is never deleted before its predictions).
ALTER TABLE annual_predictions
    ADD COLUMN warnings text[] NOT NULL DEFAULT '{}',
    ADD COLUMN bulk_job_id uuid,
    ADD COLUMN bulk_row integer;
CREATE UNIQUE INDEX annual_predictions_bulk_row_idx
    ON annual_predictions (bulk_job_id, bulk_row) WHERE bulk_job_id IS NOT NULL;

ALTER TABLE quarterly_predictions
    ADD COLUMN warnings text[] NOT NULL DEFAULT '{}',
    ADD COLUMN bulk_job_id uuid,
    ADD COLUMN bulk_row integer;
CREATE UNIQUE INDEX quarterly_predictions_bulk_row_idx
    ON quarterly_predictions (bulk_job_id, bulk_row) WHERE bulk_job_id IS NOT NULL;
