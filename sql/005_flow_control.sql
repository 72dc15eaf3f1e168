-- Flow control: throttled, paused, scheduled and cancelled actions, and the
-- backlog where an account's chunks wait (in order) while it is throttled.

ALTER TABLE bulk_actions DROP CONSTRAINT bulk_actions_status_check;
ALTER TABLE bulk_actions ADD CONSTRAINT bulk_actions_status_check CHECK (
    status IN ('scheduled', 'queued', 'running', 'throttled', 'paused',
               'completed', 'cancelled', 'failed')
);
ALTER TABLE bulk_actions ADD COLUMN resumes_at timestamptz;  -- while throttled
ALTER TABLE bulk_actions ADD COLUMN scheduled_for timestamptz;

-- Chunks taken off Kafka that may not be applied yet. Once an account has a
-- chunk here, its later chunks queue behind it (per-account order), while
-- other accounts' chunks keep flowing through Kafka.
CREATE TABLE chunk_backlog (
    seq        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id text NOT NULL,
    action_id  uuid NOT NULL REFERENCES bulk_actions (id) ON DELETE CASCADE,
    chunk_no   integer NOT NULL,
    chunk      bytea NOT NULL,         -- the Kafka message as received
    not_before timestamptz NOT NULL,   -- when tokens are expected back
    UNIQUE (action_id, chunk_no)       -- a redelivered chunk is deferred once
);

CREATE INDEX chunk_backlog_account ON chunk_backlog (account_id, seq);
