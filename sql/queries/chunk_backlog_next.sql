-- An account's oldest waiting chunks, in order, with their action's status.
SELECT b.seq, b.action_id::text AS action_id, b.chunk, a.status
FROM chunk_backlog b
JOIN bulk_actions a ON a.id = b.action_id
WHERE b.account_id = $1
ORDER BY b.seq
LIMIT $2
