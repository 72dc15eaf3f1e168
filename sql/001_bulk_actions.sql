-- Bulk actions and the ledger that makes chunk processing effectively once.

CREATE TABLE bulk_actions (
    id             uuid PRIMARY KEY,
    account_id     text NOT NULL,
    entity         text NOT NULL,
    action         text NOT NULL CHECK (action IN ('create', 'update', 'upsert', 'delete')),
    status         text NOT NULL DEFAULT 'queued'
                   CHECK (status IN ('queued', 'running', 'completed', 'failed')),
    source         text NOT NULL CHECK (source IN ('json', 'csv')),
    options        jsonb NOT NULL DEFAULT '{}',
    -- NULL while a CSV upload is still being read: completion needs the total.
    total_rows     integer CHECK (total_rows >= 0),
    processed_rows integer NOT NULL DEFAULT 0,
    succeeded      integer NOT NULL DEFAULT 0,
    failed         integer NOT NULL DEFAULT 0,
    skipped        integer NOT NULL DEFAULT 0,
    error          jsonb,
    created_at     timestamptz NOT NULL DEFAULT now(),
    started_at     timestamptz,
    finished_at    timestamptz
);

CREATE INDEX bulk_actions_account_created ON bulk_actions (account_id, created_at DESC, id DESC);

-- One row per processed chunk, written in the same transaction as the chunk's
-- effects. A redelivered chunk finds its row here and replays the recorded
-- outcomes instead of applying the rows again (Kafka delivers at least once).
CREATE TABLE chunk_ledger (
    action_id    uuid NOT NULL REFERENCES bulk_actions (id) ON DELETE CASCADE,
    chunk_no     integer NOT NULL,
    -- One outcome code per row of the chunk, in row order (see stream_agents.outcomes).
    codes        text NOT NULL,
    -- {"<index in chunk>": [reason, message, related row_no]} for rows that did not succeed.
    reasons      jsonb NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (action_id, chunk_no)
);
