-- Rows of an uploaded file that repeat the company and period of an earlier
-- valid row of the same file, found when the file is accepted. The worker
-- records each as a duplicate of that earlier row, so which row wins never
-- depends on the order in which chunks are committed.

CREATE TABLE bulk_job_repeats (
    job_id      uuid NOT NULL REFERENCES bulk_jobs (id) ON DELETE CASCADE,
    row_number  integer NOT NULL,
    -- The earlier row it repeats.
    first_row   integer NOT NULL CHECK (first_row < row_number),
    PRIMARY KEY (job_id, row_number)
);
