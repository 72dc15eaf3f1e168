-- Takes a dead-lettered chunk back out of the ledger so that it can be applied
-- again; returns its recorded codes, whose counts the caller takes off the
-- action. Nothing if the chunk was applied meanwhile (its batch was redelivered
-- after the dead letter was sent): then there is nothing to replay.
DELETE FROM chunk_ledger
WHERE action_id = $1 AND chunk_no = $2 AND dead_lettered
RETURNING codes
