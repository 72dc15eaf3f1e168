-- What the agents need to know of a batch's actions; an unknown action is absent.
-- total_rows: NULL while an upload streams. held_after: see 007_reliability.sql.
SELECT id::text AS id, status, total_rows, held_after
FROM bulk_actions
WHERE id = ANY($1::uuid[])
