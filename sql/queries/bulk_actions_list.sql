-- One page of an account's actions, newest first, keyset-paginated on (created_at, id).
-- Each filter is skipped when its parameter is NULL.
SELECT *
FROM bulk_actions
WHERE account_id = $1
  AND ($2::text IS NULL OR status = $2)
  AND ($3::text IS NULL OR entity = $3)
  AND ($4::text IS NULL OR action = $4)
  AND ($5::timestamptz IS NULL OR created_at >= $5)
  AND ($6::timestamptz IS NULL OR created_at < $6)
  AND ($7::timestamptz IS NULL OR (created_at, id) < ($7, $8::uuid))
ORDER BY created_at DESC, id DESC
LIMIT $9
