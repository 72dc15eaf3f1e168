-- One entity by its identifier's key (lower case, as the bulk path compares
-- it), scoped by account: the entity a one-row create made. {table} and
-- {identifier} are rendered from the entity registry (see entity_list.sql).
SELECT * FROM {table} WHERE account_id = $1 AND lower({identifier}) = $2
