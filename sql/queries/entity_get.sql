-- One entity by id, scoped by account: another account's is indistinguishable
-- from none. {table} is rendered from the entity registry (see entity_list.sql).
SELECT * FROM {table} WHERE id = $1 AND account_id = $2
