-- Pauses an action that is waiting or running: its chunks wait in the backlog.
UPDATE bulk_actions SET status = 'paused', resumes_at = NULL
WHERE id = $1 AND account_id = $2 AND status IN ('queued', 'running', 'throttled')
RETURNING id
