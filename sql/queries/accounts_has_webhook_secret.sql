SELECT webhook_secret IS NOT NULL FROM accounts WHERE id = $1
