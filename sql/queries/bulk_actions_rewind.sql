-- Takes a rewound chunk's rows off the action's counts; a completed action
-- runs again until they are counted anew.
UPDATE bulk_actions
SET processed_rows = processed_rows - $2,
    succeeded      = succeeded - $3,
    failed         = failed - $4,
    skipped        = skipped - $5,
    status         = CASE WHEN status = 'completed' THEN 'running' ELSE status END,
    finished_at    = CASE WHEN status = 'completed' THEN NULL ELSE finished_at END
WHERE id = $1
