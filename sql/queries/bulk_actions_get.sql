-- Scoped by account: another account's action is indistinguishable from none.
SELECT * FROM bulk_actions WHERE id = $1 AND account_id = $2
