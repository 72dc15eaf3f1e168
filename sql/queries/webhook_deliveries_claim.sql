-- Up to $1 due deliveries, claimed for $2 seconds: their next_attempt_at moves
-- ahead, so no other process takes them meanwhile, and a process that dies
-- mid-send leaves them due again. SKIP LOCKED: API replicas share the work.
UPDATE webhook_deliveries d
SET next_attempt_at = now() + make_interval(secs => $2),
    attempted_at    = now()
FROM (
    SELECT id FROM webhook_deliveries
    WHERE status = 'pending' AND next_attempt_at <= now()
    ORDER BY next_attempt_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED
) due, bulk_actions a, accounts acc
WHERE d.id = due.id AND a.id = d.action_id AND acc.id = a.account_id
RETURNING d.id, d.action_id, d.attempt, a.account_id, a.callback_url, acc.webhook_secret
