-- A due scheduled action becomes an ordinary queued one as its chunks go out.
UPDATE bulk_actions SET status = 'queued' WHERE id = $1 AND status = 'scheduled'
