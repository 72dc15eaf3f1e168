-- The upload broke off: rows already published are still processed and
-- counted; the total is what was published. An action cancelled meanwhile
-- stays cancelled: the caller's cancel is what ended it, not the upload.
-- A failed action's Idempotency-Key is released, so that retrying the
-- request with it uploads again instead of replaying the failure.
WITH ended AS (
    UPDATE bulk_actions
    SET status      = CASE WHEN status = 'cancelled' THEN status ELSE 'failed' END,
        error       = CASE WHEN status = 'cancelled' THEN error ELSE $2 END,
        total_rows  = $3,
        finished_at = now()
    WHERE id = $1
    RETURNING id, status
)
DELETE FROM idempotency_keys k
USING ended e
WHERE k.action_id = e.id AND e.status = 'failed'
