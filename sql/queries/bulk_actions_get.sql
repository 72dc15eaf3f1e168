-- Scoped by account: another account's action is indistinguishable from none.
SELECT b.*, acc.rows_per_minute AS account_rows_per_minute
FROM bulk_actions b
LEFT JOIN accounts acc ON acc.id = b.account_id
WHERE b.id = $1 AND b.account_id = $2
