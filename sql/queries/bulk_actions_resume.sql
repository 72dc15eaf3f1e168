-- Resumes a paused action; its waiting chunks may go at once.
WITH resumed AS (
    UPDATE bulk_actions SET status = 'running'
    WHERE id = $1 AND account_id = $2 AND status = 'paused'
    RETURNING id, account_id
),
woken AS (
    UPDATE chunk_backlog b SET not_before = now()
    FROM resumed r WHERE b.account_id = r.account_id
)
SELECT id FROM resumed
