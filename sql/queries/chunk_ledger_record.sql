-- Records applied chunks in the transaction that applied them. A primary key
-- violation here means another consumer applied the chunk first: the caller
-- rolls back and retries, and then replays that consumer's outcomes.
INSERT INTO chunk_ledger (action_id, chunk_no, codes, reasons, processed_at, dead_lettered)
SELECT * FROM unnest($1::uuid[], $2::int[], $3::text[], $4::jsonb[], $5::timestamptz[], $6::bool[])
