-- Claims a key for a new action; returns nothing if the key was claimed before.
INSERT INTO idempotency_keys (account_id, key, request_hash, action_id)
VALUES ($1, $2, $3, $4)
ON CONFLICT DO NOTHING
RETURNING action_id
