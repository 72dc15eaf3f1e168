-- Outcome counts of one action; FINAL collapses redelivered duplicates.
SELECT toString(outcome) AS outcome, operation, reason, count() AS rows
FROM bulkflow.row_outcomes FINAL
WHERE account_id = {account_id:String} AND action_id = {action_id:UUID}
GROUP BY outcome, operation, reason
