-- A new action; its upload holds a lease until it ends ($11 seconds, renewed
-- by the uploading process: see bulkflow/uploads.py).
INSERT INTO bulk_actions (
    id, account_id, entity, action, source, options, total_rows, columns, status, scheduled_for,
    upload_lease_until, callback_url
)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, now() + make_interval(secs => $11), $12)
RETURNING *
