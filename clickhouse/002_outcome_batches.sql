-- The sink's entry point: one row per chunk's outcomes (up to 500 input rows),
-- inserted as the messages' own JSON lines (FORMAT JSONEachRow; a message holds
-- the lines of an account's chunks of one batch). The
-- Null engine stores nothing; the view below expands every line into one
-- row_outcomes row per input row, in ClickHouse rather than in Python: the
-- sink does no per-row work at all (9 -> 3 us of CPU per row, embedded engine).
-- The columns are the keys of OutcomeBatch.to_bytes (schemas/messages.py).
CREATE TABLE IF NOT EXISTS bulkflow.outcome_batches
(
    account_id   String,
    action_id    UUID,
    entity       String,
    action       String,
    chunk_no     UInt32,
    first_row_no UInt32,
    codes        String,                   -- one code per row: c u n d (succeeded) f (failed) s (skipped)
    keys         Array(String),            -- each row's identifier as given
    -- rows coded f or s: (index in the chunk, reason, message, related_row, input row as JSON)
    problems     Array(Tuple(UInt32, String, String, UInt32, String)),
    processed_at Float64                   -- seconds since the epoch
)
ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS bulkflow.row_outcomes_from_batches
TO bulkflow.row_outcomes
AS
WITH
    substring(codes, i, 1) AS code,
    -- 0 when the row has no problem: problems[0] is the empty tuple
    indexOf(arrayMap(p -> p.1, problems), i - 1) AS problem
SELECT
    account_id,
    action_id,
    toUInt32(first_row_no + i - 1) AS row_no,
    entity,
    action,
    CAST(multiIf(code = 'f', 'failed', code = 's', 'skipped', 'succeeded')
         AS Enum8('succeeded' = 1, 'failed' = 2, 'skipped' = 3)) AS outcome,
    transform(code, ['c', 'u', 'n', 'd'], ['created', 'updated', 'unchanged', 'deleted'], '') AS operation,
    problems[problem].2 AS reason,
    problems[problem].3 AS message,
    problems[problem].4 AS related_row,
    entity_key,
    problems[problem].5 AS row_data,
    toDateTime64(processed_at, 3, 'UTC') AS processed_at
FROM bulkflow.outcome_batches
ARRAY JOIN keys AS entity_key, arrayEnumerate(keys) AS i;
