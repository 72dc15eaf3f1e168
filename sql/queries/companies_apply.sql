-- Applies one round of staged company rows; the same contract as
-- contacts_apply.sql (read that file's header), with the company's fields:
-- $1 rows [seq, account_id, action_id, row_no, op, match_id, mask, then in
-- the order of schemas.company.CompanyRow: domain (normalised), external_id,
-- name, industry, employee_count, custom_fields]; $2 match_on ('domain',
-- 'external_id' or 'id').
WITH staged AS MATERIALIZED (
    SELECT (r->>0)::int AS seq, r->>1 AS account_id, (r->>2)::uuid AS action_id,
           (r->>3)::int AS row_no, r->>4 AS op, (r->>5)::bigint AS match_id,
           (r->>6)::int AS mask,
           r->>7 AS domain, r->>8 AS external_id, r->>9 AS name, r->>10 AS industry,
           (r->>11)::int AS employee_count, nullif(r->12, 'null') AS custom_fields
    FROM jsonb_array_elements($1) AS r
),
matched AS MATERIALIZED (
    SELECT s.*,
           c.id AS company_id,
           coalesce(c.last_action_id = s.action_id AND c.last_row_no < s.row_no, false) AS duplicate,
           c.last_row_no AS first_row_no,
           c.id IS NOT NULL AND (
                  (s.mask & 1 <> 0 AND $2 <> 'domain' AND s.domain IS DISTINCT FROM c.domain)
               OR (s.mask & 2 <> 0 AND s.external_id IS DISTINCT FROM c.external_id)
               OR (s.mask & 4 <> 0 AND s.name IS DISTINCT FROM c.name)
               OR (s.mask & 8 <> 0 AND s.industry IS DISTINCT FROM c.industry)
               OR (s.mask & 16 <> 0 AND s.employee_count IS DISTINCT FROM c.employee_count)
               OR (s.mask & 32 <> 0
                   AND coalesce(c.custom_fields || s.custom_fields, '{}') IS DISTINCT FROM c.custom_fields)
           ) AS changes,
           CASE
               WHEN $2 <> 'domain' AND s.domain IS NOT NULL AND (c.id IS NULL OR s.mask & 1 <> 0)
                    AND EXISTS (SELECT 1 FROM companies o
                                WHERE o.account_id = s.account_id
                                  AND o.domain = s.domain
                                  AND o.id IS DISTINCT FROM c.id)
                   THEN 'domain_taken'
               WHEN $2 <> 'external_id' AND s.external_id IS NOT NULL
                    AND (c.id IS NULL OR s.mask & 2 <> 0)
                    AND EXISTS (SELECT 1 FROM companies o
                                WHERE o.account_id = s.account_id
                                  AND o.external_id = s.external_id
                                  AND o.id IS DISTINCT FROM c.id)
                   THEN 'external_id_taken'
           END AS conflict
    FROM staged s
    -- One index probe per staged row, whatever the table size: a UNION ALL
    -- branch per match field, each on its own index; the branches whose
    -- $2 test is false are skipped as one-time filters. (An OR of the three
    -- tests makes generic plans scan the whole table.)
    LEFT JOIN LATERAL (
        SELECT c.* FROM companies c
        WHERE $2 = 'domain' AND c.account_id = s.account_id AND c.domain = s.domain
        UNION ALL
        SELECT c.* FROM companies c
        WHERE $2 = 'external_id' AND c.account_id = s.account_id AND c.external_id = s.external_id
        UNION ALL
        SELECT c.* FROM companies c
        WHERE $2 = 'id' AND c.account_id = s.account_id AND c.id = s.match_id
    ) c ON true
),
updated AS (
    UPDATE companies c
    SET domain         = CASE WHEN m.mask & 1 <> 0 AND $2 <> 'domain' THEN m.domain ELSE c.domain END,
        external_id    = CASE WHEN m.mask & 2 <> 0 THEN m.external_id ELSE c.external_id END,
        name           = CASE WHEN m.mask & 4 <> 0 THEN m.name ELSE c.name END,
        industry       = CASE WHEN m.mask & 8 <> 0 THEN m.industry ELSE c.industry END,
        employee_count = CASE WHEN m.mask & 16 <> 0 THEN m.employee_count ELSE c.employee_count END,
        custom_fields  = CASE WHEN m.mask & 32 <> 0
                              THEN coalesce(c.custom_fields || m.custom_fields, '{}')
                              ELSE c.custom_fields END,
        updated_at     = CASE WHEN m.changes THEN now() ELSE c.updated_at END,
        last_action_id = m.action_id,
        last_row_no    = m.row_no
    FROM matched m
    WHERE c.id = m.company_id
      AND m.op IN ('update', 'upsert')
      AND NOT m.duplicate
      AND m.conflict IS NULL
    RETURNING m.seq
),
deleted AS (
    DELETE FROM companies c
    USING matched m
    WHERE c.id = m.company_id AND m.op = 'delete' AND NOT m.duplicate
    RETURNING m.seq
),
inserted AS (
    INSERT INTO companies AS c (
        account_id, domain, external_id, name, industry, employee_count, custom_fields,
        last_action_id, last_row_no
    )
    SELECT m.account_id, m.domain, m.external_id, m.name, m.industry, m.employee_count,
           coalesce(m.custom_fields, '{}'), m.action_id, m.row_no
    FROM matched m
    WHERE m.company_id IS NULL
      AND m.op IN ('create', 'upsert')
      AND $2 <> 'id'
      AND m.domain IS NOT NULL
      AND m.conflict IS NULL
    ORDER BY m.seq
    ON CONFLICT DO NOTHING
    -- (action_id, row_no) names the staged row: it joins back without a
    -- condition on $2, which generic plans could only evaluate row by row.
    RETURNING c.last_action_id AS action_id, c.last_row_no AS row_no
)
SELECT m.seq,
       CASE
           WHEN m.duplicate THEN 's'
           WHEN m.op = 'delete' THEN CASE WHEN d.seq IS NULL THEN 's' ELSE 'd' END
           WHEN m.company_id IS NULL AND (m.op = 'update' OR $2 = 'id') THEN 'f'
           WHEN m.company_id IS NOT NULL AND m.op = 'create' THEN 's'
           WHEN m.conflict IS NOT NULL THEN 'f'
           WHEN m.company_id IS NULL AND m.domain IS NULL THEN 'f'
           WHEN m.company_id IS NULL THEN CASE WHEN i.row_no IS NULL THEN 'r' ELSE 'c' END
           WHEN u.seq IS NULL THEN 'r'
           WHEN m.changes THEN 'u'
           ELSE 'n'
       END AS code,
       CASE
           WHEN m.duplicate THEN 'duplicate'
           WHEN m.op = 'delete' THEN CASE WHEN d.seq IS NULL THEN 'not_found' ELSE '' END
           WHEN m.company_id IS NULL AND (m.op = 'update' OR $2 = 'id') THEN 'not_found'
           WHEN m.company_id IS NOT NULL AND m.op = 'create' THEN 'already_exists'
           WHEN m.conflict IS NOT NULL THEN m.conflict
           WHEN m.company_id IS NULL AND m.domain IS NULL THEN 'missing_domain'
           ELSE ''
       END AS reason,
       CASE WHEN m.duplicate THEN m.first_row_no ELSE 0 END AS related_row
FROM matched m
LEFT JOIN updated u ON u.seq = m.seq
LEFT JOIN deleted d ON d.seq = m.seq
LEFT JOIN inserted i ON i.action_id = m.action_id AND i.row_no = m.row_no
ORDER BY m.seq
