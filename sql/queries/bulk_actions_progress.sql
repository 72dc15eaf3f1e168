-- Adds one batch's outcomes to the counts of its actions and moves their status:
-- queued -> running on the first rows, -> completed (paused ones too) once
-- every row is counted, or failed if the upload recorded an error (a CSV's
-- total is known only when its upload ends: see bulk_actions_seal and
-- bulk_actions_end_upload). A terminal status thus always has every outcome.
-- started_at is the first batch's transaction start (now()), finished_at the
-- wall clock at the end of the last one, so even a one-batch action has a duration.
-- The clock is read once per batch: actions completed by the same batch share
-- one finished_at, so finished_at orders actions the way their rows were applied.
WITH batch AS MATERIALIZED (SELECT clock_timestamp() AS ended)
UPDATE bulk_actions a
SET processed_rows = a.processed_rows + p.processed,
    succeeded      = a.succeeded + p.succeeded,
    failed         = a.failed + p.failed,
    skipped        = a.skipped + p.skipped,
    started_at     = coalesce(a.started_at, now()),
    resumes_at     = NULL,
    -- A pause that came while the last rows were on their way has nothing
    -- left to hold: the action completes (resuming it would never end it).
    status         = CASE
                         WHEN a.status NOT IN ('queued', 'running', 'throttled', 'paused')
                             THEN a.status
                         WHEN a.processed_rows + p.processed >= a.total_rows
                             THEN CASE WHEN a.error IS NULL THEN 'completed' ELSE 'failed' END
                         WHEN a.status = 'paused' THEN 'paused'
                         ELSE 'running'
                     END,
    finished_at    = CASE
                         WHEN a.processed_rows + p.processed >= a.total_rows
                          AND a.finished_at IS NULL THEN batch.ended
                         ELSE a.finished_at
                     END
FROM unnest($1::uuid[], $2::int[], $3::int[], $4::int[], $5::int[])
     AS p (action_id, processed, succeeded, failed, skipped),
     batch
WHERE a.id = p.action_id
