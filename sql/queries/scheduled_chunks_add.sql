INSERT INTO scheduled_chunks (action_id, chunk_no, chunk)
SELECT * FROM unnest($1::uuid[], $2::int[], $3::bytea[])
ON CONFLICT DO NOTHING
