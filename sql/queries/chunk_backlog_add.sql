-- Defers chunks; a chunk deferred before (redelivered) keeps its place.
INSERT INTO chunk_backlog (account_id, action_id, chunk_no, chunk, not_before)
SELECT * FROM unnest($1::text[], $2::uuid[], $3::int[], $4::bytea[], $5::timestamptz[])
ON CONFLICT (action_id, chunk_no) DO NOTHING
