-- The fast path of contacts_apply.sql for rows that may create a contact:
-- insert every row no unique index refuses, and return which ones went in.
-- A refused row (its email or external id is taken: an update, an in-file
-- duplicate, a conflict) inserts nothing and goes through contacts_apply.sql,
-- which decides its outcome; an inserted row is exactly what that statement
-- would have inserted, at a fraction of the cost (no probe before the write).
--
-- $1: the rows, a JSON array of arrays [account_id, action_id, row_no, then
-- the written fields in the order of schemas.contact.ContactRow: email ...
-- custom_fields]. Returns the inserted rows' action ids and row numbers as
-- two arrays (one result row instead of one per inserted row).
WITH inserted AS (
    INSERT INTO contacts AS c (
        account_id, email, external_id, first_name, last_name, phone, company, job_title,
        status, lead_score, custom_fields, last_action_id, last_row_no
    )
    SELECT r->>0, r->>3, r->>4, r->>5, r->>6, r->>7, r->>8, r->>9, r->>10, (r->>11)::int,
           coalesce(nullif(r->12, 'null'), '{}'), (r->>1)::uuid, (r->>2)::int
    FROM jsonb_array_elements($1) WITH ORDINALITY AS s (r, seq)
    WHERE r->>3 IS NOT NULL
    ORDER BY s.seq
    ON CONFLICT DO NOTHING
    RETURNING c.last_action_id, c.last_row_no
)
SELECT coalesce(array_agg(last_action_id::text), '{}') AS action_ids,
       coalesce(array_agg(last_row_no), '{}') AS row_nos
FROM inserted
