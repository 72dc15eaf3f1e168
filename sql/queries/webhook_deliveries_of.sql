-- An action's delivery attempts, in order (the caller checked the account).
SELECT attempt, status, attempted_at, response_status, error, next_attempt_at, delivered_at
FROM webhook_deliveries
WHERE action_id = $1
ORDER BY attempt
