-- The naive importer: one row per statement.
INSERT INTO contacts AS c (account_id, email, first_name, last_name, company)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (account_id, lower(email)) DO UPDATE
SET first_name = excluded.first_name,
    last_name  = excluded.last_name,
    company    = excluded.company,
    updated_at = now()
