-- Takes a chunk back out of the ledger so that it can be applied again;
-- returns its recorded codes, whose counts the caller takes off the action.
DELETE FROM chunk_ledger WHERE action_id = $1 AND chunk_no = $2 RETURNING codes
