-- Takes a rewound chunk's rows off the action's counts; an action that had
-- ended runs again until they are counted anew (and then ends as before).
UPDATE bulk_actions
SET processed_rows = processed_rows - $2,
    succeeded      = succeeded - $3,
    failed         = failed - $4,
    skipped        = skipped - $5,
    status         = CASE WHEN status IN ('completed', 'failed') THEN 'running' ELSE status END,
    finished_at    = CASE WHEN status IN ('completed', 'failed') THEN NULL ELSE finished_at END
WHERE id = $1
