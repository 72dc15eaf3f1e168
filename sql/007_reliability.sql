-- Reliability: an upload holds a lease while it streams, an upload that broke
-- off ends behind the chunks it published, and a dead-lettered chunk holds
-- its action's later chunks so that a replay applies them in file order.

-- While set, a process is streaming the action's rows and renews this; once
-- it lapses (the process died) a reaper in any process ends the upload.
ALTER TABLE bulk_actions ADD COLUMN upload_lease_until timestamptz;
CREATE INDEX bulk_actions_upload_lease ON bulk_actions (upload_lease_until)
    WHERE upload_lease_until IS NOT NULL;

-- The chunk_no of the action's first dead-lettered chunk: its later chunks
-- fail (held_for_replay) and are dead-lettered behind it, so that a replay
-- applies the rows in file order and the first occurrence of a key wins.
-- Cleared when that chunk is applied again.
ALTER TABLE bulk_actions ADD COLUMN held_after integer;

-- The chunk's failure went to the dead-letter topic: only such a ledger row
-- is taken back out by a replay (a chunk applied meanwhile is left alone).
ALTER TABLE chunk_ledger ADD COLUMN dead_lettered boolean NOT NULL DEFAULT false;
