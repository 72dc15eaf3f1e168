-- One page of an account's actions, newest first, keyset-paginated on (created_at, id).
-- Each filter is skipped when its parameter is NULL.
SELECT b.*, acc.rows_per_minute AS account_rows_per_minute
FROM bulk_actions b
LEFT JOIN accounts acc ON acc.id = b.account_id
WHERE b.account_id = $1
  AND ($2::text IS NULL OR b.status = $2)
  AND ($3::text IS NULL OR b.entity = $3)
  AND ($4::text IS NULL OR b.action = $4)
  AND ($5::timestamptz IS NULL OR b.created_at >= $5)
  AND ($6::timestamptz IS NULL OR b.created_at < $6)
  AND ($7::timestamptz IS NULL OR (b.created_at, b.id) < ($7, $8::uuid))
ORDER BY b.created_at DESC, b.id DESC
LIMIT $9
