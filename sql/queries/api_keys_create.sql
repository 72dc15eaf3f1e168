INSERT INTO api_keys (key_hash, account_id, prefix) VALUES ($1, $2, $3)
