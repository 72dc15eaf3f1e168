-- The account an API key acts for; revoked keys act for none.
SELECT account_id FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL
