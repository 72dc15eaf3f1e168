-- The recorded outcomes of chunks that were already applied.
SELECT l.action_id::text AS action_id, l.chunk_no, l.codes, l.reasons, l.processed_at
FROM chunk_ledger l
JOIN unnest($1::uuid[], $2::int[]) AS k (action_id, chunk_no)
  ON l.action_id = k.action_id AND l.chunk_no = k.chunk_no
