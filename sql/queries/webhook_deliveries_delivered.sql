-- The receiver accepted attempt $1 with HTTP status $2.
UPDATE webhook_deliveries
SET status = 'delivered', response_status = $2, delivered_at = now(), next_attempt_at = NULL
WHERE id = $1 AND status = 'pending'
RETURNING id
