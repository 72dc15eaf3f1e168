-- A session-level advisory lock on ($1: a key, $2: its space), if free; whether taken.
SELECT pg_try_advisory_lock(hashtextextended($1, $2))
