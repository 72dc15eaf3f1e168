DELETE FROM chunk_backlog WHERE seq = ANY($1::bigint[])
