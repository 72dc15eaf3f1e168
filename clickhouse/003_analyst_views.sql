-- Views for analysts: outcomes de-duplicated, without writing FINAL.
--
-- row_outcomes may hold a row's outcome more than once until ClickHouse merges
-- its parts (a redelivered chunk inserts identical rows: 232,000 rows for
-- 200,000 after a sink restart). Those copies are identical, sorting key
-- included, so FINAL is exactly right: it keeps one row per
-- (account_id, action_id, row_no), whichever parts hold it. argMax over
-- processed_at would give the same answer, at the cost of a GROUP BY over
-- every column; FINAL reads the parts in key order and stays parallel.
--
-- Every view below reads bulkflow.outcomes, so each counts every input row once.

CREATE VIEW IF NOT EXISTS bulkflow.outcomes
AS
SELECT
    account_id, action_id, row_no, entity, action, outcome, operation,
    reason, message, related_row, entity_key, row_data, processed_at
FROM bulkflow.row_outcomes FINAL;

-- Rows per account, hour (of processing, UTC) and outcome.
CREATE VIEW IF NOT EXISTS bulkflow.outcomes_by_account_hour
AS
SELECT
    account_id,
    toStartOfHour(processed_at) AS hour,
    outcome,
    count() AS rows
FROM bulkflow.outcomes
GROUP BY account_id, hour, outcome;

-- Failed and skipped rows per account, hour and reason.
CREATE VIEW IF NOT EXISTS bulkflow.failure_reasons_by_hour
AS
SELECT
    account_id,
    toStartOfHour(processed_at) AS hour,
    outcome,
    reason,
    count() AS rows
FROM bulkflow.outcomes
WHERE outcome != 'succeeded'
GROUP BY account_id, hour, outcome, reason;

-- One row per action: when its first and last rows were processed, its
-- counts, and its throughput (rows per second between the two; NULL for an
-- action processed within one millisecond).
CREATE VIEW IF NOT EXISTS bulkflow.action_durations
AS
SELECT
    account_id,
    action_id,
    any(entity) AS entity,
    any(action) AS action,
    min(processed_at) AS first_processed_at,
    max(processed_at) AS last_processed_at,
    count() AS rows,
    countIf(outcome = 'succeeded') AS succeeded,
    countIf(outcome = 'failed') AS failed,
    countIf(outcome = 'skipped') AS skipped,
    round(dateDiff('millisecond', first_processed_at, last_processed_at) / 1000, 3) AS seconds,
    if(seconds > 0, round(rows / seconds, 1), NULL) AS rows_per_second
FROM bulkflow.outcomes
GROUP BY account_id, action_id;
