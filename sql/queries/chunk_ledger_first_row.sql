-- The recorded outcome of an action's first row: its code (schemas.messages.CODES)
-- and, if it did not succeed, [reason, message, related row_no].
SELECT substr(codes, 1, 1) AS code, reasons -> '0' AS problem
FROM chunk_ledger
WHERE action_id = $1 AND chunk_no = 0
