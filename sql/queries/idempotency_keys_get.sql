SELECT request_hash, action_id FROM idempotency_keys WHERE account_id = $1 AND key = $2
