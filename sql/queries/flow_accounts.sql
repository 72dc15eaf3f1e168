-- For the accounts of a batch: the row allowance override, and whether chunks
-- of theirs already wait in the backlog (then new ones must queue behind them).
SELECT a.account_id,
       acc.rows_per_minute,
       EXISTS (SELECT 1 FROM chunk_backlog b WHERE b.account_id = a.account_id) AS backlogged
FROM unnest($1::text[]) AS a (account_id)
LEFT JOIN accounts acc ON acc.id = a.account_id
