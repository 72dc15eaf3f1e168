SELECT id::text AS id FROM bulk_actions WHERE id = ANY($1::uuid[])
