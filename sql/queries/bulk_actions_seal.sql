-- The upload ended: the total is known. If the agents already counted every
-- row, the action completes here (whichever of the two updates comes last).
-- Returns nothing if the upload's lease was lost: a reaper ended it already.
UPDATE bulk_actions
SET total_rows         = $2,
    upload_lease_until = NULL,
    status      = CASE WHEN status IN ('queued', 'running', 'throttled', 'paused')
                            AND processed_rows >= $2
                       THEN 'completed' ELSE status END,
    finished_at = CASE WHEN status IN ('queued', 'running', 'throttled', 'paused')
                            AND processed_rows >= $2
                       THEN now() ELSE finished_at END
WHERE id = $1 AND upload_lease_until IS NOT NULL
RETURNING id
