-- An upload that broke off ends here: its end-of-upload marker came through
-- the chunk topic behind every chunk the upload published, so the ledger now
-- holds each of them and their rows are the action's total. The action ends
-- with the error the upload recorded (or stays cancelled).
UPDATE bulk_actions a
SET total_rows  = l.rows,
    status      = CASE
                      WHEN a.status IN ('queued', 'running', 'throttled', 'paused')
                       AND a.processed_rows >= l.rows
                          THEN CASE WHEN a.error IS NULL THEN 'completed' ELSE 'failed' END
                      ELSE a.status
                  END,
    resumes_at  = NULL,
    finished_at = CASE
                      WHEN a.processed_rows >= l.rows AND a.finished_at IS NULL
                          THEN clock_timestamp()
                      ELSE a.finished_at
                  END
FROM (
    SELECT e.action_id, coalesce(sum(length(c.codes)), 0)::int AS rows
    FROM unnest($1::uuid[]) AS e (action_id)
    LEFT JOIN chunk_ledger c ON c.action_id = e.action_id
    GROUP BY e.action_id
) l
WHERE a.id = l.action_id
