INSERT INTO bulk_actions (
    id, account_id, entity, action, source, options, total_rows, columns, status, scheduled_for
)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
RETURNING *
