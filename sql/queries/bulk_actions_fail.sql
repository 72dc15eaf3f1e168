-- The upload broke off (a rejected file, the broker away): the action keeps
-- the error and ends as 'failed' once the rows published before have their
-- outcomes. Which rows those are, only the chunk topic knows: the caller
-- sends an end-of-upload marker behind them (see bulk_actions_end_upload).
-- An action cancelled meanwhile stays cancelled. The Idempotency-Key is
-- released, so that retrying the request with it uploads again instead of
-- replaying the failure. Returns nothing if the upload's lease was lost: a
-- reaper ended it already.
WITH ended AS (
    UPDATE bulk_actions
    SET error              = CASE WHEN status = 'cancelled' THEN error ELSE $2 END,
        upload_lease_until = NULL
    WHERE id = $1 AND upload_lease_until IS NOT NULL
    RETURNING id, account_id, entity, action, options, status
),
released AS (
    DELETE FROM idempotency_keys k USING ended e
    WHERE k.action_id = e.id AND e.status <> 'cancelled'  -- the cancel is the answer
)
SELECT id, account_id, entity, action, options FROM ended
