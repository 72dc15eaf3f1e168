-- Ends uploads whose process stopped renewing their lease (it died): each of
-- $2 (ids) still holds the lapsed lease $3 the reaper saw a lease period ago.
-- They end as failed ('upload_interrupted') once the rows they published have
-- outcomes, like any upload that broke off (bulk_actions_fail). SKIP LOCKED:
-- reapers in several processes share the work, each action ended once.
WITH lapsed AS (
    SELECT a.id
    FROM bulk_actions a
    JOIN unnest($2::uuid[], $3::timestamptz[]) AS seen (id, lease) ON seen.id = a.id
    WHERE a.upload_lease_until = seen.lease
    FOR UPDATE OF a SKIP LOCKED
),
ended AS (
    UPDATE bulk_actions a
    SET error              = CASE WHEN a.status = 'cancelled' THEN a.error ELSE $1 END,
        upload_lease_until = NULL
    FROM lapsed l
    WHERE a.id = l.id
    RETURNING a.id, a.account_id, a.entity, a.action, a.options, a.status
),
released AS (
    DELETE FROM idempotency_keys k USING ended e
    WHERE k.action_id = e.id AND e.status <> 'cancelled'  -- the cancel is the answer
)
SELECT id, account_id, entity, action, options FROM ended
