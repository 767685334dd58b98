-- How many single predictions each user has created and still has, for
-- MAX_PREDICTIONS_PER_USER: one row checked and bumped, instead of two counts
-- of every prediction under a per-user lock. A create takes its place in one
-- statement of its own before its transaction (so the row lock ends with that
-- statement and one user's concurrent creates do not queue behind each other)
-- and gives it back if its insert fails; deleting a single prediction
-- (directly, or with its company or its organisation) gives the place back
-- through the triggers below. Bulk predictions (bulk_job_id set) never count:
-- BULK_MAX_ROWS bounds a job.

CREATE TABLE prediction_usage (
    user_id            uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    single_predictions bigint NOT NULL DEFAULT 0 CHECK (single_predictions >= 0)
);

INSERT INTO prediction_usage (user_id, single_predictions)
SELECT created_by, count(*)
FROM (
    SELECT created_by FROM annual_predictions WHERE bulk_job_id IS NULL AND created_by IS NOT NULL
    UNION ALL
    SELECT created_by FROM quarterly_predictions WHERE bulk_job_id IS NULL AND created_by IS NOT NULL
) AS single
GROUP BY created_by;

CREATE FUNCTION release_prediction_usage() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.bulk_job_id IS NULL AND OLD.created_by IS NOT NULL THEN
        UPDATE prediction_usage SET single_predictions = single_predictions - 1
        WHERE user_id = OLD.created_by AND single_predictions > 0;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER annual_predictions_release_usage AFTER DELETE ON annual_predictions
    FOR EACH ROW EXECUTE FUNCTION release_prediction_usage();
CREATE TRIGGER quarterly_predictions_release_usage AFTER DELETE ON quarterly_predictions
    FOR EACH ROW EXECUTE FUNCTION release_prediction_usage();
