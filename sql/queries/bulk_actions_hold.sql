-- Chunks of these actions were dead-lettered: their later chunks wait for the
-- replay behind the first of them ($2: each action's lowest dead-lettered chunk).
UPDATE bulk_actions a
SET held_after = least(a.held_after, h.chunk_no)
FROM unnest($1::uuid[], $2::int[]) AS h (action_id, chunk_no)
WHERE a.id = h.action_id
