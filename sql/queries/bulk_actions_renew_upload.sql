-- The uploading process is alive: its lease runs $2 seconds more. Nothing
-- returned means a reaper ended the upload (the lease had lapsed): the
-- process must stop publishing.
UPDATE bulk_actions
SET upload_lease_until = now() + make_interval(secs => $2)
WHERE id = $1 AND upload_lease_until IS NOT NULL
RETURNING id
