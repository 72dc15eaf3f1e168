-- One row per input row of every bulk action: what happened to it and why.
-- Redelivered outcomes are identical rows (the ledger keeps the first processing
-- time) with the same sorting key, which the
-- ReplacingMergeTree collapses: readers use FINAL (or count distinct row_no).
CREATE DATABASE IF NOT EXISTS bulkflow;

CREATE TABLE IF NOT EXISTS bulkflow.row_outcomes
(
    account_id   LowCardinality(String),
    action_id    UUID,
    row_no       UInt32,
    entity       LowCardinality(String),
    action       LowCardinality(String),
    outcome      Enum8('succeeded' = 1, 'failed' = 2, 'skipped' = 3),
    operation    LowCardinality(String),   -- created, updated, unchanged, deleted; '' unless succeeded
    reason       LowCardinality(String),   -- machine-readable code; '' when succeeded
    message      String,                   -- human-readable detail, naming the field
    related_row  UInt32,                   -- e.g. the first occurrence of a duplicate; 0 if none
    entity_key   String,                   -- the row's identifier as given (e.g. the email)
    row_data     String,                   -- the input row as JSON, kept for failed and skipped rows
    processed_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY (account_id, action_id, row_no);
