CREATE TEMP TABLE bench_staging (
    account_id text, email text, first_name text, last_name text, company text
) ON COMMIT DROP
