-- A new webhook secret for account $1 (the old one stops signing at once).
UPDATE accounts SET webhook_secret = $2 WHERE id = $1 RETURNING id
