-- Actions whose stored chunks should go to Kafka now: scheduled ones that are
-- due, cancelled ones (their rows are then skipped), and ones a crashed
-- scheduler left half published (publishing again is safe: the ledger).
SELECT a.id
FROM (SELECT DISTINCT action_id FROM scheduled_chunks) s
JOIN bulk_actions a ON a.id = s.action_id
WHERE a.status <> 'scheduled' OR a.scheduled_for <= now()
ORDER BY a.scheduled_for
LIMIT $1
