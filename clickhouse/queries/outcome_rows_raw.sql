-- The fault suite's check: rows of one action with an outcome, on the raw table
-- (no FINAL): redelivered duplicates may be there, a missing row may not.
SELECT count(DISTINCT row_no) AS rows
FROM bulkflow.row_outcomes
WHERE account_id = {account_id:String} AND action_id = {action_id:UUID}
