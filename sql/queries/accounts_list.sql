SELECT a.id, a.name, a.rows_per_minute, a.created_at, count(k.key_hash) AS active_keys
FROM accounts a
LEFT JOIN api_keys k ON k.account_id = a.id AND k.revoked_at IS NULL
GROUP BY a.id
ORDER BY a.created_at
