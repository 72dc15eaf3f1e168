-- The fast path of contacts_apply.sql for rows that may create a contact:
-- insert every row no unique index refuses, and return which ones went in.
-- A refused row (its email or external id is taken: an update, an in-file
-- duplicate, a conflict) inserts nothing and goes through contacts_apply.sql,
-- which decides its outcome; an inserted row is exactly what that statement
-- would have inserted, at a fraction of the cost (no probe before the write).
--
-- $1 account_id, $2 action_id, $3 row_no, then the written fields in the
-- order of schemas.contact.ContactRow: $4 email ... $13 custom_fields.
INSERT INTO contacts AS c (
    account_id, email, external_id, first_name, last_name, phone, company, job_title,
    status, lead_score, custom_fields, last_action_id, last_row_no
)
SELECT s.account_id, s.email, s.external_id, s.first_name, s.last_name, s.phone, s.company,
       s.job_title, s.status, s.lead_score, coalesce(s.custom_fields, '{}'), s.action_id,
       s.row_no
FROM unnest(
    $1::text[], $2::uuid[], $3::int[], $4::text[], $5::text[], $6::text[], $7::text[],
    $8::text[], $9::text[], $10::text[], $11::text[], $12::int[], $13::jsonb[]
) WITH ORDINALITY AS s (account_id, action_id, row_no, email, external_id, first_name,
                        last_name, phone, company, job_title, status, lead_score,
                        custom_fields, seq)
WHERE s.email IS NOT NULL
ORDER BY s.seq
ON CONFLICT DO NOTHING
RETURNING c.last_action_id AS action_id, c.last_row_no AS row_no
