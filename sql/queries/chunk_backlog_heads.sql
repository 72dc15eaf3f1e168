-- Accounts whose oldest waiting chunk is due, with their allowance override.
SELECT h.account_id, acc.rows_per_minute
FROM (
    SELECT DISTINCT ON (account_id) account_id, not_before
    FROM chunk_backlog
    ORDER BY account_id, seq
) h
LEFT JOIN accounts acc ON acc.id = h.account_id
WHERE h.not_before <= now()
