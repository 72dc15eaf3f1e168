-- The chunk the action was held behind is applied again (replayed): its later
-- chunks, replayed behind it, are applied as they come.
UPDATE bulk_actions a
SET held_after = NULL
FROM unnest($1::uuid[], $2::int[]) AS r (action_id, chunk_no)
WHERE a.id = r.action_id AND a.held_after = r.chunk_no
