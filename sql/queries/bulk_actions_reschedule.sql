-- Moves a scheduled action that has not started; a time in the past means now.
UPDATE bulk_actions SET scheduled_for = greatest($3, now())
WHERE id = $1 AND account_id = $2 AND status = 'scheduled'
RETURNING id
