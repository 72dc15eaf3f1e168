-- The bench's check of what the pipeline stored for one account.
SELECT count(*) FROM contacts WHERE account_id = $1
