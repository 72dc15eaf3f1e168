-- A page of one account's entities, by id, with optional filters. A template
-- for every entity's table: {table} and {identifier} are rendered once, quoted,
-- from the entity registry (ingest_api/entities.py), never from a request.
--
-- $1 account_id; $2 the identifier's key (lower case, as the bulk path
-- compares it) or NULL; $3 external_id or NULL; $4 updated after or NULL;
-- $5, $6 custom fields the entity must contain, with the values as strings
-- and as JSON scalars (either matches), or NULL; $7 the last id of the
-- previous page (0 for the first); $8 the page size.
SELECT *
FROM {table}
WHERE account_id = $1
  AND ($2::text IS NULL OR lower({identifier}) = $2)
  AND ($3::text IS NULL OR external_id = $3)
  AND ($4::timestamptz IS NULL OR updated_at > $4)
  AND ($5::jsonb IS NULL OR custom_fields @> $5 OR custom_fields @> $6)
  AND id > $7
ORDER BY id
LIMIT $8
