-- Sets (or, with NULL, removes) an account's row allowance override.
UPDATE accounts SET rows_per_minute = $2 WHERE id = $1 RETURNING id, rows_per_minute
