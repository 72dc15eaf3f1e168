-- An account's oldest waiting chunks, in order.
SELECT seq, action_id::text AS action_id, chunk FROM chunk_backlog
WHERE account_id = $1
ORDER BY seq
LIMIT $2
