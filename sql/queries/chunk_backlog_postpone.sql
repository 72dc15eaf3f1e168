-- The account's head chunk waits for tokens until $2.
UPDATE chunk_backlog SET not_before = $2 WHERE seq = $1
