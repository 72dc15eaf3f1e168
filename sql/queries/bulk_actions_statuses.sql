SELECT id::text AS id, status FROM bulk_actions WHERE id = ANY($1::uuid[])
