-- One page of an action's per-row outcomes in row order, after a row_no cursor.
-- Empty outcome / reason parameters mean "any".
SELECT row_no, toString(outcome) AS outcome, operation, reason, message, related_row,
       entity_key, processed_at
FROM bulkflow.row_outcomes FINAL
WHERE account_id = {account_id:String}
  AND action_id = {action_id:UUID}
  AND row_no > {after:UInt32}
  AND row_no <= {row_to:UInt32}
  AND ({outcome:String} = '' OR toString(outcome) = {outcome:String})
  AND ({reason:String} = '' OR reason = {reason:String})
ORDER BY row_no
LIMIT {limit:UInt32}
