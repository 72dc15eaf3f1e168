-- The upload broke off: rows already published are still processed and
-- counted; the total is what was published.
UPDATE bulk_actions
SET status = 'failed', error = $2, total_rows = $3, finished_at = now()
WHERE id = $1
