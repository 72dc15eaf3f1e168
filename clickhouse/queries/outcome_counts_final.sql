-- The fault suite's check: one action's outcomes by kind, duplicates collapsed (FINAL).
SELECT toString(outcome) AS outcome, count() AS rows
FROM bulkflow.row_outcomes FINAL
WHERE account_id = {account_id:String} AND action_id = {action_id:UUID}
GROUP BY outcome
