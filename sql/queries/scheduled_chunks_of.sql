SELECT chunk FROM scheduled_chunks WHERE action_id = $1 AND chunk_no > $2 ORDER BY chunk_no LIMIT $3
