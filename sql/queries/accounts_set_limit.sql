-- Sets (or, with NULL, removes) an account's row allowance override, and lets
-- its waiting chunks try again now: the new limit applies without a restart.
WITH updated AS (
    UPDATE accounts SET rows_per_minute = $2 WHERE id = $1 RETURNING id, rows_per_minute
),
woken AS (
    UPDATE chunk_backlog SET not_before = now()
    WHERE account_id = $1 AND EXISTS (SELECT 1 FROM updated)
)
SELECT id, rows_per_minute FROM updated
