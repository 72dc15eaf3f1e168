-- Uploads whose lease has lapsed, as the reaper sees them now: it ends one only
-- if the lease is still the same a whole lease period later (see
-- bulk_actions_reap_uploads), so an upload whose renewals were only held up by
-- a Postgres outage renews in time and goes on.
SELECT id, upload_lease_until
FROM bulk_actions
WHERE upload_lease_until < now()
ORDER BY upload_lease_until
LIMIT $1
