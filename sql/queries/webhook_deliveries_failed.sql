-- Attempt $1 (of action $2) failed (HTTP status $3, or NULL; error $4). The next
-- attempt is due in $5 seconds, unless that is later than $6 seconds after the
-- action's first attempt: then this one is the last, 'given_up'.
WITH first AS (
    SELECT min(attempted_at) AS at FROM webhook_deliveries WHERE action_id = $2
), ended AS (
    UPDATE webhook_deliveries d
    SET status = CASE WHEN now() + make_interval(secs => $5) > first.at + make_interval(secs => $6)
                      THEN 'given_up' ELSE 'failed' END,
        response_status = $3,
        error = $4,
        next_attempt_at = NULL
    FROM first
    WHERE d.id = $1 AND d.status = 'pending'
    RETURNING d.action_id, d.attempt, d.status
), next AS (
    INSERT INTO webhook_deliveries (action_id, attempt, next_attempt_at)
    SELECT action_id, attempt + 1, now() + make_interval(secs => $5)
    FROM ended WHERE status = 'failed'
)
SELECT status FROM ended
