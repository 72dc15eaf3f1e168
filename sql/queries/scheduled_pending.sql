SELECT EXISTS (SELECT 1 FROM scheduled_chunks WHERE action_id = $1)
