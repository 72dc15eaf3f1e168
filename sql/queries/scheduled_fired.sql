-- Every stored chunk of the action is on Kafka now.
DELETE FROM scheduled_chunks WHERE action_id = $1
