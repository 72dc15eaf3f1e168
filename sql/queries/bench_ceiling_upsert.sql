-- The ceiling: every staged row into contacts in one set-based statement.
INSERT INTO contacts AS c (account_id, email, first_name, last_name, company)
SELECT DISTINCT ON (account_id, lower(email)) account_id, email, first_name, last_name, company
FROM bench_staging
ORDER BY account_id, lower(email)
ON CONFLICT (account_id, lower(email)) DO UPDATE
SET first_name = excluded.first_name,
    last_name  = excluded.last_name,
    company    = excluded.company,
    updated_at = now()
