-- Cancels an action that has not ended. Rows not yet applied are skipped as
-- 'cancelled' when their chunks come through (so counts still add up to the
-- total); a scheduled action's chunks become due at once to be skipped so.
WITH cancelled AS (
    UPDATE bulk_actions
    SET status = 'cancelled',
        resumes_at = NULL,
        scheduled_for = CASE WHEN status = 'scheduled' THEN now() ELSE scheduled_for END,
        finished_at = CASE WHEN processed_rows >= total_rows THEN now() ELSE finished_at END
    WHERE id = $1 AND account_id = $2
      AND status IN ('scheduled', 'queued', 'running', 'throttled', 'paused')
    RETURNING id, account_id
),
woken AS (
    UPDATE chunk_backlog b SET not_before = now()
    FROM cancelled c WHERE b.account_id = c.account_id
)
SELECT id FROM cancelled
