-- The fast path of companies_apply.sql for rows that may create a company;
-- the same contract as contacts_insert.sql (read that file's header), with
-- the company's fields: $4 domain ... $9 custom_fields.
INSERT INTO companies AS c (
    account_id, domain, external_id, name, industry, employee_count, custom_fields,
    last_action_id, last_row_no
)
SELECT s.account_id, s.domain, s.external_id, s.name, s.industry, s.employee_count,
       coalesce(s.custom_fields, '{}'), s.action_id, s.row_no
FROM unnest(
    $1::text[], $2::uuid[], $3::int[], $4::text[], $5::text[], $6::text[], $7::text[],
    $8::int[], $9::jsonb[]
) WITH ORDINALITY AS s (account_id, action_id, row_no, domain, external_id, name, industry,
                        employee_count, custom_fields, seq)
WHERE s.domain IS NOT NULL
ORDER BY s.seq
ON CONFLICT DO NOTHING
RETURNING c.last_action_id AS action_id, c.last_row_no AS row_no
