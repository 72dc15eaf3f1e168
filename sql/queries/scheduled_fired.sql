-- The action's stored chunks up to $2 are on Kafka now. Only those: an upload
-- still streaming stores more meanwhile, and they go out on the next pass.
DELETE FROM scheduled_chunks WHERE action_id = $1 AND chunk_no <= $2
