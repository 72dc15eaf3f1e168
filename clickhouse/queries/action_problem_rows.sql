-- One page of the rows of an action with the given outcomes (failed, skipped),
-- with their original input, in row order after a row_no cursor.
SELECT row_no, toString(outcome) AS outcome, reason, message, row_data
FROM bulkflow.row_outcomes FINAL
WHERE account_id = {account_id:String}
  AND action_id = {action_id:UUID}
  AND row_no > {after:UInt32}
  AND has({outcomes:Array(String)}, toString(outcome))
ORDER BY row_no
LIMIT {limit:UInt32}
