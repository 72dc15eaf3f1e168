-- Chunks waiting in the backlog per account, for the bulkflow_backlog_chunks gauge.
SELECT account_id, count(*)::int AS chunks
FROM chunk_backlog
GROUP BY account_id
