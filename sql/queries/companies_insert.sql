-- The fast path of companies_apply.sql for rows that may create a company;
-- the same contract as contacts_insert.sql (read that file's header), with
-- the company's fields: $1 rows [account_id, action_id, row_no, domain,
-- external_id, name, industry, employee_count, custom_fields].
WITH inserted AS (
    INSERT INTO companies AS c (
        account_id, domain, external_id, name, industry, employee_count, custom_fields,
        last_action_id, last_row_no
    )
    SELECT r->>0, r->>3, r->>4, r->>5, r->>6, (r->>7)::int,
           coalesce(nullif(r->8, 'null'), '{}'), (r->>1)::uuid, (r->>2)::int
    FROM jsonb_array_elements($1) WITH ORDINALITY AS s (r, seq)
    WHERE r->>3 IS NOT NULL
    ORDER BY s.seq
    ON CONFLICT DO NOTHING
    RETURNING c.last_action_id, c.last_row_no
)
SELECT coalesce(array_agg(last_action_id::text), '{}') AS action_ids,
       coalesce(array_agg(last_row_no), '{}') AS row_nos
FROM inserted
