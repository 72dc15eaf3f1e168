-- The current state of subscribed actions, as the trigger of 009_live_progress
-- publishes it: sent to subscribers after the change stream reconnects.
SELECT id, account_id, event_seq AS seq, status, processed_rows AS processed,
       total_rows AS total, succeeded, failed, skipped
FROM bulk_actions
WHERE id = ANY($1::uuid[])
