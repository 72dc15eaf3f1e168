-- Shows actions as throttled (unless paused, cancelled or done), until the
-- given time when a bucket refused them, else until the time already shown.
UPDATE bulk_actions a
SET status = 'throttled', resumes_at = coalesce(t.resumes_at, a.resumes_at)
FROM unnest($1::uuid[], $2::timestamptz[]) AS t (action_id, resumes_at)
WHERE a.id = t.action_id AND a.status IN ('queued', 'running', 'throttled')
